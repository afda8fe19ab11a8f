"""The search parameters the sandbox knows, per resource type, and how each matches a resource.

https://hl7.org/fhir/R4/search.html: string (starts-with, case- and accent-insensitive;
``:exact``, ``:contains``), token (``system|code``; ``:not``), reference (``Patient/<id>`` or a
bare id), date (prefixes). Comma-separated values are alternatives (OR); repeated parameters all
apply (AND).

These tables are the one truth about search: the search code, the CapabilityStatement
(:mod:`.capabilities`) and the table in ``docs/sandbox.md`` (checked by a test) are all read
from :func:`search_params`. Every parameter of a type is also a ``_sort`` key (:func:`sort_values`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ehrbridge.fhir.mapping.resource_types import R4_RESOURCE_TYPES
from ehrbridge.sandbox import dates
from ehrbridge.sandbox.outcome import OperationFailed

Resource = dict[str, Any]
#: Parameter kinds.
STRING, TOKEN, REFERENCE, DATE, PHONE = "string", "token", "reference", "date", "phone"
#: The modifiers each kind takes ("" is none).
MODIFIERS = {
    STRING: ("", "exact", "contains"), TOKEN: ("", "not"), REFERENCE: ("",), DATE: ("",),
    PHONE: ("",),
}  # fmt: skip
#: The FHIR search parameter type of each kind (CapabilityStatement ``searchParam.type``):
#: ``phone`` is a token to FHIR, matched on its last ten digits here.
FHIR_TYPES = {
    STRING: "string",
    TOKEN: "token",
    REFERENCE: "reference",
    DATE: "date",
    PHONE: "token",
}


@dataclass(frozen=True)
class Param:
    """A search parameter: its kind and the values it reads from a resource."""

    #: string, token, reference, date or phone
    kind: str
    #: the values of a resource this parameter searches (strings, codings, references, dates)
    values: Callable[[Resource], Iterator[Any]]
    #: for a reference parameter, the type a bare id refers to
    target: str | None = None
    #: what it searches, in the CapabilityStatement and docs/sandbox.md
    doc: str = ""


def _list(value: object) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _names(part: str | None) -> Callable[[Resource], Iterator[Any]]:
    def values(resource: Resource) -> Iterator[Any]:
        for name in _list(resource.get("name")):
            if not isinstance(name, dict):
                continue
            keys = (part,) if part else ("family", "given", "text", "prefix", "suffix")
            for key in keys:
                yield from _list(name.get(key))

    return values


def _field(*path: str) -> Callable[[Resource], Iterator[Any]]:
    def values(resource: Resource) -> Iterator[Any]:
        nodes: list[Any] = [resource]
        for key in path:
            nodes = [v for n in nodes if isinstance(n, dict) for v in _list(n.get(key))]
        yield from nodes

    return values


def _telecom(system: str | None) -> Callable[[Resource], Iterator[Any]]:
    def values(resource: Resource) -> Iterator[Any]:
        for contact in _list(resource.get("telecom")):
            if isinstance(contact, dict) and (system is None or contact.get("system") == system):
                yield contact.get("value")

    return values


def _period(*names: str) -> Callable[[Resource], Iterator[Any]]:
    """Dates of elements that are a date, or a Period (start..end)."""

    def values(resource: Resource) -> Iterator[Any]:
        for name in names:
            value = resource.get(name)
            if isinstance(value, str):
                yield value
            elif isinstance(value, dict):
                yield (value.get("start"), value.get("end"))

    return values


def _status(resource: Resource) -> Iterator[Any]:
    yield resource.get("status")


_COMMON: dict[str, Param] = {
    "status": Param(TOKEN, _status, doc="status"),
    "subject": Param(REFERENCE, _field("subject"), doc="subject"),
    "patient": Param(REFERENCE, _field("subject"), "Patient", doc="subject, a Patient"),
    "identifier": Param(TOKEN, _field("identifier"), doc="identifier"),
    "code": Param(TOKEN, _field("code"), doc="code"),
    "encounter": Param(REFERENCE, _field("encounter"), "Encounter", doc="encounter"),
}
_PERSON: dict[str, Param] = {
    "name": Param(STRING, _names(None), doc="name: family, given, text, prefix, suffix"),
    "family": Param(STRING, _names("family"), doc="name.family"),
    "given": Param(STRING, _names("given"), doc="name.given"),
    "birthdate": Param(DATE, _period("birthDate"), doc="birthDate"),
    "gender": Param(TOKEN, _field("gender"), doc="gender"),
    "phone": Param(PHONE, _telecom("phone"), doc="telecom (phone), last 10 digits"),
    "email": Param(TOKEN, _telecom("email"), doc="telecom (email)"),
    "telecom": Param(PHONE, _telecom(None), doc="telecom, last 10 digits"),
    "address-postalcode": Param(STRING, _field("address", "postalCode"), doc="address.postalCode"),
    "address-city": Param(STRING, _field("address", "city"), doc="address.city"),
}
#: Per resource type, the parameters beyond the common ones.
PARAMS: dict[str, dict[str, Param]] = {
    "Patient": _PERSON,
    "Practitioner": _PERSON,
    "Encounter": {"date": Param(DATE, _period("period"), doc="period")},
    "Appointment": {
        "date": Param(DATE, _period("start"), doc="start"),
        "patient": Param(
            REFERENCE, _field("participant", "actor"), "Patient", doc="participant.actor, a Patient"
        ),
        "actor": Param(REFERENCE, _field("participant", "actor"), doc="participant.actor"),
        "practitioner": Param(
            REFERENCE,
            _field("participant", "actor"),
            "Practitioner",
            doc="participant.actor, a Practitioner",
        ),
    },
    "Observation": {
        "date": Param(DATE, _period("effectiveDateTime", "effectivePeriod"), doc="effective[x]")
    },
    "MedicationRequest": {"authoredon": Param(DATE, _period("authoredOn"), doc="authoredOn")},
    "Coverage": {
        "patient": Param(REFERENCE, _field("beneficiary"), "Patient", doc="beneficiary"),
        "beneficiary": Param(REFERENCE, _field("beneficiary"), "Patient", doc="beneficiary"),
    },
    "AllergyIntolerance": {
        "patient": Param(REFERENCE, _field("patient"), "Patient", doc="patient")
    },
    "Immunization": {"patient": Param(REFERENCE, _field("patient"), "Patient", doc="patient")},
}


#: The resource types the sandbox serves: every R4 type (others answer 404).
TYPES: tuple[str, ...] = tuple(sorted(R4_RESOURCE_TYPES))


def search_params(resource_type: str) -> dict[str, Param]:
    """Every search parameter of a type beyond ``_id`` and ``_lastUpdated``, by name, sorted:
    the common ones and the type's own.

    >>> list(search_params("Encounter"))
    ['code', 'date', 'encounter', 'identifier', 'patient', 'status', 'subject']
    """
    merged = {**_COMMON, **PARAMS.get(resource_type, {})}
    return dict(sorted(merged.items()))


def lookup(resource_type: str, name: str) -> Param:
    """The parameter ``name`` of a type; 400 if the sandbox does not know it."""
    param = search_params(resource_type).get(name)
    if param is None:
        raise OperationFailed(400, f"unknown search parameter {name!r} for {resource_type}")
    return param


def sort_values(param: Param, resource: Resource) -> list[str]:
    """A resource's values of ``param`` as strings that sort as the parameter's values do:
    folded text, UTC instants (a period by its start), codes, references, digits.

    >>> sort_values(search_params("Patient")["family"], {"name": [{"family": "Núñez"}]})
    ['nunez']
    >>> sort_values(search_params("Patient")["birthdate"], {"birthDate": "1984-03"})
    ['1984-03-01T00:00:00.000000Z']
    """
    out: list[str] = []
    for value in param.values(resource):
        if param.kind == DATE:
            for part in value if isinstance(value, tuple) else (value,):
                found = dates.date_range(part) if isinstance(part, str) else None
                if found is not None:
                    out.append(found[0].strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
                    break
        elif param.kind == STRING and isinstance(value, str):
            out.append(fold(value))
        elif param.kind == PHONE and isinstance(value, str):
            out.append(_digits(value)[-10:])
        elif param.kind == REFERENCE and isinstance(value, dict):
            if isinstance(value.get("reference"), str):
                out.append(value["reference"])
        else:
            out.extend(_codes(value))
    return out


def _codes(value: Any) -> Iterator[str]:
    if isinstance(value, bool):
        yield "true" if value else "false"
    elif isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in _list(value.get("coding")):
                yield from _codes(coding)
        elif isinstance(value.get("value"), str):
            yield value["value"]
        elif isinstance(value.get("code"), str):
            yield value["code"]


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a string.

    >>> fold("Ágata  Núñez")
    'agata nunez'
    """
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _token_matches(wanted: str, value: Any) -> bool:
    """A token search value against a code, Coding, CodeableConcept or Identifier."""
    system, _, code = wanted.rpartition("|") if "|" in wanted else (None, "", wanted)
    if isinstance(value, bool):
        value = "true" if value else "false"
    if isinstance(value, str):
        return not system and code == value
    if not isinstance(value, dict):
        return False
    if "coding" in value:
        return any(_token_matches(wanted, c) for c in _list(value.get("coding")))
    key = "value" if "value" in value else "code"
    if system is not None and system != "" and value.get("system") != system:
        return False
    if system == "" and value.get("system"):
        return False
    return code == "" or value.get(key) == code


def _reference_matches(wanted: str, target: str | None, value: Any) -> bool:
    reference = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(reference, str):
        return False
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2:
        return False
    ref_type, ref_id = parts[-2], parts[-1]
    if "/" in wanted:
        want_type, _, want_id = wanted.rstrip("/").rpartition("/")
        want_type = want_type.rsplit("/", 1)[-1]
        return (ref_type, ref_id) == (want_type, want_id)
    return ref_id == wanted and (target is None or ref_type == target)


def _date_matches(prefix: str, wanted: dates.Range, value: Any) -> bool:
    if isinstance(value, tuple):
        start = dates.date_range(value[0]) if isinstance(value[0], str) else None
        end = dates.date_range(value[1]) if isinstance(value[1], str) else None
        if start is None and end is None:
            return False
        low = start[0] if start else dates.START_OF_TIME
        high = end[1] if end else dates.END_OF_TIME
        return dates.matches(prefix, wanted, (low, high))
    target = dates.date_range(value) if isinstance(value, str) else None
    return target is not None and dates.matches(prefix, wanted, target)


def matcher(param: Param, modifier: str, raw: str) -> Callable[[Resource], bool]:
    """A predicate for one parameter occurrence (its comma-separated values are OR-ed)."""
    if modifier not in MODIFIERS[param.kind]:
        raise OperationFailed(400, f"unsupported search modifier :{modifier}")
    alternatives = [v.replace("\\,", ",") for v in raw.split(",")] if raw else [""]
    if param.kind == DATE:
        ranges = [dates.parse(v) for v in alternatives]
        return lambda r: any(_date_matches(p, w, v) for v in param.values(r) for p, w in ranges)
    if param.kind == STRING:
        folded = [fold(v) for v in alternatives]

        def string(r: Resource) -> bool:
            for value in param.values(r):
                if not isinstance(value, str):
                    continue
                if modifier == "exact" and value in alternatives:
                    return True
                text = fold(value)
                if modifier == "contains" and any(f in text for f in folded):
                    return True
                if not modifier and any(text.startswith(f) for f in folded):
                    return True
            return False

        return string
    if param.kind == PHONE:
        wanted = [_digits(v) for v in alternatives]
        return lambda r: any(
            isinstance(v, str) and _digits(v)[-10:] in [w[-10:] for w in wanted if w]
            for v in param.values(r)
        )
    if param.kind == REFERENCE:
        return lambda r: any(
            _reference_matches(w, param.target, v) for v in param.values(r) for w in alternatives
        )
    negate = modifier == "not"

    def token(r: Resource) -> bool:
        found = any(_token_matches(w, v) for v in param.values(r) for w in alternatives)
        return found != negate

    return token
