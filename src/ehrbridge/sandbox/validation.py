"""The structural checks the sandbox makes on every write, as a real server refuses bad input.

Not a profile validator: required elements and required-binding codes of the resources the
connector writes, primitive formats of ids, dates and instants. An invalid resource is refused
with 400 and one issue per problem, each naming its element (``Patient.birthDate``), never quoting
the value.
"""

from __future__ import annotations

import re
from typing import Any

from ehrbridge.sandbox.outcome import OperationFailed

_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DATE = re.compile(r"([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?")
_DATETIME = re.compile(
    r"([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)

#: Elements every resource of a type must have.
REQUIRED: dict[str, tuple[str, ...]] = {
    "Observation": ("status", "code"),
    "Encounter": ("status", "class"),
    "Appointment": ("status", "participant"),
    "MedicationRequest": ("status", "intent", "subject"),
    "Coverage": ("status", "beneficiary", "payor"),
    "AllergyIntolerance": ("patient",),
    "Condition": ("subject",),
    "Procedure": ("status", "subject"),
    "DiagnosticReport": ("status", "code"),
    "Immunization": ("status", "vaccineCode", "patient"),
}

_ADMIN_GENDER = ("male", "female", "other", "unknown")
#: Codes of required bindings: (type, element) -> allowed codes.
CODES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Patient", "gender"): _ADMIN_GENDER,
    ("Practitioner", "gender"): _ADMIN_GENDER,
    ("Observation", "status"): (
        "registered", "preliminary", "final", "amended", "corrected", "cancelled",
        "entered-in-error", "unknown",
    ),
    ("Encounter", "status"): (
        "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
        "entered-in-error", "unknown",
    ),
    ("Appointment", "status"): (
        "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
        "entered-in-error", "checked-in", "waitlist",
    ),
    ("MedicationRequest", "status"): (
        "active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft",
        "unknown",
    ),
    ("Coverage", "status"): ("active", "cancelled", "draft", "entered-in-error"),
}  # fmt: skip

#: Date and dateTime elements: (type, element) -> the pattern their values must match.
FORMATS: dict[tuple[str, str], re.Pattern[str]] = {
    ("Patient", "birthDate"): _DATE,
    ("Practitioner", "birthDate"): _DATE,
    ("Patient", "deceasedDateTime"): _DATETIME,
    ("Observation", "effectiveDateTime"): _DATETIME,
    ("Observation", "issued"): _DATETIME,
    ("Appointment", "start"): _DATETIME,
    ("Appointment", "end"): _DATETIME,
    ("MedicationRequest", "authoredOn"): _DATETIME,
}


def is_type(name: str) -> bool:
    """Whether ``name`` looks like a resource type.

    >>> is_type("Patient"), is_type("patient"), is_type("$export")
    (True, False, False)
    """
    return _TYPE.fullmatch(name) is not None


def is_id(value: str) -> bool:
    """Whether ``value`` is a valid FHIR id.

    >>> is_id("pat-1001"), is_id("a/b"), is_id("x" * 65)
    (True, False, False)
    """
    return _ID.fullmatch(value) is not None


def problems(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues of a resource: an empty list when it is valid.

    >>> [i["expression"] for i in problems({"resourceType": "Patient", "gender": "F"})]
    [['Patient.gender']]
    >>> problems({"resourceType": "Patient", "birthDate": "1984-03-12"})
    []
    """
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not is_type(resource_type):
        return [_issue("the body is not a FHIR resource (no valid resourceType)", "resourceType")]
    found = []
    if "id" in resource and not (isinstance(resource["id"], str) and is_id(resource["id"])):
        found.append(_issue("invalid id", f"{resource_type}.id"))
    for element in REQUIRED.get(resource_type, ()):
        if resource.get(element) in (None, "", [], {}):
            found.append(_issue("missing required element", f"{resource_type}.{element}"))
    for (type_, element), codes in CODES.items():
        value = resource.get(element)
        if type_ == resource_type and value is not None and value not in codes:
            found.append(_issue("value not in the required value set", f"{type_}.{element}"))
    for (type_, element), pattern in FORMATS.items():
        value = resource.get(element)
        invalid = not isinstance(value, str) or pattern.fullmatch(value) is None
        if type_ == resource_type and value is not None and invalid:
            found.append(_issue("invalid date format", f"{type_}.{element}"))
    return found


def validate(resource: dict[str, Any]) -> None:
    """Raise OperationFailed (400) with every problem of ``resource``."""
    issues = problems(resource)
    if issues:
        raise OperationFailed(400, "the resource is not valid", issues=issues)


def _issue(text: str, expression: str) -> dict[str, Any]:
    code = "required" if text.startswith("missing") else "invalid"
    return {
        "severity": "error",
        "code": code,
        "details": {"text": text},
        "expression": [expression],
    }
