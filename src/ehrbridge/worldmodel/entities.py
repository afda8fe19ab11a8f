"""The first-class entity types (docs/design.md §5.6) and their internal representation.

An entity's state is a flat mapping ``{field_path: json_value}``: keys are dotted paths such as
``name.family`` and values are JSON values (string, number, boolean, list of strings, or an object
for ``json`` fields); ``None`` means the field was removed. References to other entities are
strings ``EntityType/entity_id``, phone numbers are E.164. A list is one value: it is asserted,
compared and replaced as a whole, never merged item by item.

The eight types below have a documented schema (rendered in ``docs/entities.md``); any other entity
type is open-schema: its fields are accepted as they come, so a new resource type needs no
migration. A known type also accepts paths it does not list, for the same reason.

>>> validate_fields("Patient", {"phone.mobile": "+16175550142", "gender": None})
>>> validate_fields("Patient", {"phone.mobile": "617-555-0142"})
Traceback (most recent call last):
...
ValueError: Patient.phone.mobile: not an E.164 phone number (+ then 8-15 digits)
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType
from typing import Literal

FieldKind = Literal[
    "string",
    "date",
    "datetime",
    "code",
    "number",
    "boolean",
    "string_list",
    "reference",
    "reference_list",
    "phone",
    "email",
    "json",
]

# All patterns are used with fullmatch (``$`` would accept a trailing newline) and are ASCII-only
# (``\d`` would accept other scripts' digits).
_PATH = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", re.ASCII)
_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", re.ASCII)
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})", re.ASCII
)
_PHONE = re.compile(r"\+[1-9]\d{7,14}", re.ASCII)
# Same alphabets as the event store's entity types and ids, so every valid entity can be referenced.
_REFERENCE = re.compile(r"([A-Z][A-Za-z0-9]{0,63})/[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)


@dataclass(frozen=True, kw_only=True)
class FieldSpec:
    """One documented field of an entity type."""

    path: str  #: dotted flat path, e.g. ``name.family``
    kind: FieldKind  #: what values the field holds; ``None`` (removed) is always allowed
    meaning: str  #: one line for the docs: what the field is and where it comes from in FHIR
    codes: tuple[str, ...] = ()  #: for ``code`` fields, the allowed codes; empty = any code
    #: for ``reference``/``reference_list`` fields, the entity types it may point to; empty = any
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EntityTypeSpec:
    """A first-class entity type: its FHIR R4 counterpart and its documented fields."""

    name: str  #: entity type name, e.g. ``Patient``
    fhir: str  #: the FHIR R4 resource(s) it maps to
    description: str  #: one sentence for the docs
    fields: tuple[FieldSpec, ...]  #: documented fields, in documentation order
    _by_path: Mapping[str, FieldSpec] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_path: dict[str, FieldSpec] = {}
        for spec in self.fields:
            if not _PATH.fullmatch(spec.path):
                raise ValueError(f"{self.name}.{spec.path}: not a field path like 'name.family'")
            if spec.path in by_path:
                raise ValueError(f"{self.name}.{spec.path}: documented twice")
            by_path[spec.path] = spec
        object.__setattr__(self, "_by_path", MappingProxyType(by_path))

    def field(self, path: str) -> FieldSpec | None:
        """The spec of ``path``, or None when this type does not document it."""
        return self._by_path.get(path)


def _f(path: str, kind: FieldKind, meaning: str, *, codes: str = "", to: str = "") -> FieldSpec:
    """Shorthand for the tables below: ``codes`` and ``to`` (targets) are space-separated."""
    return FieldSpec(
        path=path, kind=kind, meaning=meaning, codes=tuple(codes.split()), targets=tuple(to.split())
    )


def _address(what: str) -> tuple[FieldSpec, ...]:
    return (
        _f("address.line", "string_list", f"Street lines of the {what} address (`address.line`)"),
        _f("address.city", "string", f"City of the {what} address"),
        _f("address.state", "string", f"State or province of the {what} address, e.g. MA"),
        _f("address.postal_code", "string", f"Postal or ZIP code of the {what} address"),
        _f(
            "address.country",
            "string",
            f"Country of the {what} address, ISO 3166-1 alpha-2, e.g. US",
        ),
    )


_GENDERS = "male female other unknown"
_APPOINTMENT_STATUSES = (
    "proposed pending booked arrived fulfilled cancelled noshow entered-in-error checked-in"
    " waitlist"
)
_ENCOUNTER_STATUSES = (
    "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown"
)
_IDENTIFIERS = "Other identifiers, each `system|value`"

PATIENT = EntityTypeSpec(
    name="Patient",
    fhir="Patient",
    description="A person receiving care: demographics, identifiers, contact details, language.",
    fields=(
        _f("name.family", "string", "Family name (official `name.family`)"),
        _f("name.given", "string_list", "Given names, first name first (`name.given`)"),
        _f("name.prefix", "string", "Name prefix such as Mr, Ms, Dr"),
        _f("name.suffix", "string", "Name suffix such as Jr, III"),
        _f("birth_date", "date", "Date of birth (`birthDate`)"),
        _f("gender", "code", "Administrative gender", codes=_GENDERS),
        _f("phone.mobile", "phone", "Mobile phone (`telecom` system=phone, use=mobile)"),
        _f("phone.home", "phone", "Home phone (`telecom` system=phone, use=home)"),
        _f("phone.work", "phone", "Work phone (`telecom` system=phone, use=work)"),
        _f("email", "email", "Email address (`telecom` system=email)"),
        *_address("home"),
        _f("language", "code", "Preferred language, BCP 47 (`communication.language`), e.g. `es`"),
        _f("mrn", "string", "Medical record number at the EHR (`identifier` type MR)"),
        _f("mrn_system", "string", "System of the MR identifier (`identifier.system`)"),
        _f("identifiers", "string_list", _IDENTIFIERS),
        _f(
            "marital_status",
            "code",
            "Marital status, HL7 v3 MaritalStatus code (`maritalStatus`)",
            codes="A D I L M P S T U W UNK",
        ),
        _f("deceased", "boolean", "Whether the patient has died (`deceasedBoolean`)"),
        _f("deceased_at", "datetime", "When the patient died (`deceasedDateTime`)"),
        _f(
            "general_practitioner",
            "reference",
            "Primary care practitioner (`generalPractitioner`)",
            to="Practitioner",
        ),
        _f("managing_organization", "string", "Name of the organization that keeps the record"),
    ),
)

PRACTITIONER = EntityTypeSpec(
    name="Practitioner",
    fhir="Practitioner (+ PractitionerRole)",
    description="A clinician or other person who provides care.",
    fields=(
        _f("name.family", "string", "Family name"),
        _f("name.given", "string_list", "Given names, first name first"),
        _f("name.prefix", "string", "Name prefix such as Dr"),
        _f("name.suffix", "string", "Name suffix such as Jr"),
        _f("npi", "string", "US National Provider Identifier, 10 digits (`identifier` us-npi)"),
        _f("identifiers", "string_list", _IDENTIFIERS),
        _f("qualification", "string_list", "Credentials such as MD, NP, RN (`qualification`)"),
        _f("specialty", "string_list", "Specialties (`PractitionerRole.specialty`)"),
        _f("phone.work", "phone", "Work phone"),
        _f("phone.mobile", "phone", "Mobile phone"),
        _f("email", "email", "Work email"),
        _f("gender", "code", "Administrative gender", codes=_GENDERS),
        _f("languages", "string_list", "Languages spoken, BCP 47 (`communication`)"),
        _f(
            "locations",
            "reference_list",
            "Where the practitioner sees patients (`PractitionerRole.location`)",
            to="Location",
        ),
        _f("active", "boolean", "Whether the practitioner record is in active use"),
        *_address("work"),
    ),
)

LOCATION = EntityTypeSpec(
    name="Location",
    fhir="Location",
    description="A place where care is given: a clinic, a site, a room.",
    fields=(
        _f("name", "string", "Name of the location"),
        _f("alias", "string_list", "Other names the location is known by"),
        _f("description", "string", "Free-text description, e.g. directions"),
        _f("status", "code", "Whether the location is in use", codes="active suspended inactive"),
        _f("type", "string", "Kind of location, e.g. outpatient clinic"),
        _f("type_code", "code", "Kind of location as `system|code`"),
        *_address("location"),
        _f("phone", "phone", "Main phone number"),
        _f("email", "email", "Main email address"),
        _f("timezone", "string", "IANA time zone, e.g. America/New_York (`timezone` extension)"),
        _f(
            "hours",
            "json",
            'Opening hours: `{"mon": [["08:00", "17:00"]], ...}`, local time (`hoursOfOperation`)',
        ),
        _f("position.latitude", "number", "Latitude, WGS84 degrees"),
        _f("position.longitude", "number", "Longitude, WGS84 degrees"),
        _f("managing_organization", "string", "Name of the organization that runs the location"),
    ),
)

APPOINTMENT = EntityTypeSpec(
    name="Appointment",
    fhir="Appointment (+ Slot/Schedule for availability)",
    description="A booking of a patient with a practitioner at a location for a period of time.",
    fields=(
        _f("status", "code", "Appointment status", codes=_APPOINTMENT_STATUSES),
        _f("start", "datetime", "When the appointment starts"),
        _f("end", "datetime", "When the appointment ends"),
        _f("minutes_duration", "number", "Length in minutes (`minutesDuration`)"),
        _f(
            "appointment_type",
            "code",
            "Kind of appointment, HL7 v2 table 0276 lowercased (`appointmentType`)",
            codes="routine walkin checkup followup emergency",
        ),
        _f("service_type", "string", "Service to be performed, e.g. General practice"),
        _f("reason", "string", "Why the appointment was booked (`reasonCode` text)"),
        _f("description", "string", "Short description shown in schedules"),
        _f("patient", "reference", "The patient (`participant` actor)", to="Patient"),
        _f(
            "practitioner",
            "reference",
            "The practitioner seen (`participant` actor)",
            to="Practitioner",
        ),
        _f("location", "reference", "Where (`participant` actor)", to="Location"),
        _f("comment", "string", "Additional comments"),
        _f("patient_instruction", "string", "Instructions for the patient, e.g. arrive fasting"),
        _f("cancelation_reason", "string", "Why it was cancelled (`cancelationReason`)"),
        _f("created", "datetime", "When the appointment was booked"),
        _f("created_date", "date", "Booking date, when the source gives no time (`created`)"),
    ),
)

ENCOUNTER = EntityTypeSpec(
    name="Encounter",
    fhir="Encounter",
    description="An interaction between a patient and care providers: a visit, a stay, a call.",
    fields=(
        _f("status", "code", "Encounter status", codes=_ENCOUNTER_STATUSES),
        # Not restricted: R4 binds Encounter.class extensibly to v3 ActEncounterCode.
        _f("class", "code", "Encounter class, v3 ActEncounterCode: AMB, EMER, IMP, VR, HH, ..."),
        _f("type", "string", "Kind of encounter, as text, e.g. Office visit"),
        _f("type_code", "code", "Kind of encounter as `system|code`"),
        _f("period.start", "datetime", "When the encounter started"),
        _f("period.end", "datetime", "When the encounter ended"),
        _f("period.start_date", "date", "Start date, when the source gives no time"),
        _f("period.end_date", "date", "End date, when the source gives no time"),
        _f("patient", "reference", "The patient (`subject`)", to="Patient"),
        _f(
            "practitioners",
            "reference_list",
            "Practitioners involved (`participant.individual`)",
            to="Practitioner",
        ),
        _f("location", "reference", "Where it took place", to="Location"),
        _f("appointment", "reference", "The appointment that led to it", to="Appointment"),
        _f("reason", "string", "Why the encounter took place (`reasonCode` text)"),
        _f("diagnoses", "string_list", "Diagnoses as `system|code` (`diagnosis.condition`)"),
        _f("service_provider", "string", "Name of the organization responsible"),
    ),
)

MEDICATION_ORDER = EntityTypeSpec(
    name="MedicationOrder",
    fhir="MedicationRequest",
    description="A prescription or other order for a medication for a patient.",
    fields=(
        _f(
            "status",
            "code",
            "Order status",
            codes="active on-hold cancelled completed entered-in-error stopped draft unknown",
        ),
        _f(
            "intent",
            "code",
            "Order intent",
            codes="proposal plan order original-order reflex-order filler-order instance-order"
            " option",
        ),
        _f("medication.code", "code", "Medication as `system|code`, usually RxNorm"),
        _f("medication.display", "string", "Medication name as shown, e.g. amoxicillin 500 MG"),
        _f(
            "medication.reference",
            "reference",
            "The Medication resource ordered (`medicationReference`), when not a code",
            to="Medication",
        ),
        _f("dosage.text", "string", "Dosage instructions as written (`dosageInstruction.text`)"),
        _f("dosage.dose_value", "number", "Amount per dose (`doseAndRate.doseQuantity.value`)"),
        _f("dosage.dose_unit", "string", "Unit of the dose, e.g. mg, tablet"),
        _f("dosage.frequency", "number", "Doses per period (`timing.repeat.frequency`)"),
        _f("dosage.period", "number", "Length of the period (`timing.repeat.period`)"),
        _f(
            "dosage.period_unit",
            "code",
            "Unit of the period, UCUM (`timing.repeat.periodUnit`)",
            codes="s min h d wk mo a",
        ),
        _f("dosage.as_needed", "boolean", "Taken only as needed (`asNeededBoolean`)"),
        _f("dosage.route", "string", "Route, e.g. oral"),
        _f("refills", "number", "Refills allowed (`dispenseRequest.numberOfRepeatsAllowed`)"),
        _f("authored_on", "datetime", "When the order was written (`authoredOn`)"),
        _f("authored_on_date", "date", "Date written, when the source gives no time"),
        _f("patient", "reference", "The patient (`subject`)", to="Patient"),
        _f("prescriber", "reference", "Who ordered it (`requester`)", to="Practitioner"),
        _f("reason", "string", "Why it was ordered (`reasonCode` text)"),
        _f("encounter", "reference", "Encounter it was ordered in", to="Encounter"),
        _f("note", "string", "Free-text note"),
    ),
)

LAB_RESULT = EntityTypeSpec(
    name="LabResult",
    fhir="Observation (category laboratory) + DiagnosticReport",
    description="One laboratory result value; results of one report share `report`.",
    fields=(
        _f(
            "status",
            "code",
            "Result status",
            codes="registered preliminary final amended corrected cancelled entered-in-error"
            " unknown",
        ),
        _f("category", "code", "Observation category, normally `laboratory`"),
        _f("code", "code", "What was measured, `system|code`, usually LOINC"),
        _f("display", "string", "Name of the test as shown, e.g. Hemoglobin A1c"),
        _f("value.quantity", "number", "Numeric result (`valueQuantity.value`)"),
        _f("value.unit", "string", "Unit of the numeric result, UCUM preferred, e.g. mg/dL"),
        _f("value.string", "string", "Text result (`valueString`)"),
        _f("value.code", "code", "Coded result as `system|code` (`valueCodeableConcept`)"),
        _f("reference_range.low", "number", "Low end of the normal range, in `value.unit`"),
        _f("reference_range.high", "number", "High end of the normal range, in `value.unit`"),
        _f("reference_range.text", "string", "Normal range as text, e.g. <5.7 %"),
        # Not restricted: R4 binds interpretation extensibly to v3 ObservationInterpretation.
        _f("interpretation", "code", "v3 ObservationInterpretation: N, A, H, L, HH, LL, ..."),
        _f("effective", "datetime", "When the specimen was taken (`effectiveDateTime`)"),
        _f("effective_date", "date", "Date the specimen was taken, when no time is given"),
        _f("issued", "datetime", "When the result was released"),
        _f("patient", "reference", "The patient (`subject`)", to="Patient"),
        _f("encounter", "reference", "Encounter it was ordered in", to="Encounter"),
        _f("report", "string", "Id of the DiagnosticReport the result belongs to"),
        _f("note", "string", "Free-text comment from the lab"),
    ),
)

INSURANCE_PLAN = EntityTypeSpec(
    name="InsurancePlan",
    fhir="Coverage",
    description="A patient's insurance coverage with a payer.",
    fields=(
        _f("status", "code", "Coverage status", codes="active cancelled draft entered-in-error"),
        _f("type", "string", "Kind of coverage, e.g. PPO, HMO, Medicare, Medicaid"),
        _f("type_code", "code", "Kind of coverage as `system|code`"),
        _f("payer", "string", "Name of the insurer (`payor`)"),
        _f("payer_id", "string", "The payer's electronic id for claims"),
        _f(
            "payer_reference",
            "reference",
            "The payer's Organization resource (`payor`)",
            to="Organization",
        ),
        _f("plan_name", "string", "Name of the plan (`class` type plan)"),
        _f("plan_id", "string", "Plan identifier (`class` type plan, `value`)"),
        _f("member_id", "string", "Member id on the insurance card"),
        _f("group_number", "string", "Group number (`class` type group)"),
        _f("group_name", "string", "Group name, usually the employer"),
        _f("subscriber_id", "string", "Subscriber id (`subscriberId`)"),
        _f("subscriber", "reference", "The policy holder", to="Patient"),
        _f(
            "relationship",
            "code",
            "Beneficiary's relationship to the subscriber",
            codes="self spouse child parent common other injured",
        ),
        _f("beneficiary", "reference", "The patient covered", to="Patient"),
        _f("order", "number", "Order of coverage: 1 primary, 2 secondary, ..."),
        _f("period.start", "date", "First day of coverage"),
        _f("period.end", "date", "Last day of coverage"),
    ),
)

#: The first-class entity types by name. Any other type is open-schema.
ENTITY_TYPES: Mapping[str, EntityTypeSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            PATIENT,
            PRACTITIONER,
            LOCATION,
            APPOINTMENT,
            ENCOUNTER,
            MEDICATION_ORDER,
            LAB_RESULT,
            INSURANCE_PLAN,
        )
    }
)


def spec_for(entity_type: str) -> EntityTypeSpec | None:
    """The spec of ``entity_type``, or None for an open-schema type (which is allowed)."""
    return ENTITY_TYPES.get(entity_type)


# --- validation ----------------------------------------------------------------------------------
# Each checker returns None when the value is right, else what is wrong. Messages never include the
# value itself: they end up in errors and logs, and values are PHI.


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or not (m := _DATE.fullmatch(value)):
        return False
    _, month, day = m.groups()
    if day is not None:
        try:
            date.fromisoformat(value)
        except ValueError:
            return False
        return True
    return month is None or 1 <= int(month) <= 12


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str) or not _DATETIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_reference(value: object, targets: tuple[str, ...]) -> bool:
    if not isinstance(value, str) or not (m := _REFERENCE.fullmatch(value)):
        return False
    return not targets or m.group(1) in targets


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_json(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _is_email(value: object) -> bool:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    local, _, domain = value.partition("@")
    return bool(local and domain) and "@" not in domain


def _targets(spec: FieldSpec) -> str:
    return " or ".join(spec.targets) if spec.targets else "EntityType"


def _check_string(spec: FieldSpec, value: object) -> str | None:
    return None if isinstance(value, str) else "expected a string"


def _check_date(spec: FieldSpec, value: object) -> str | None:
    return None if _is_date(value) else "expected a date YYYY-MM-DD (or YYYY, YYYY-MM)"


def _check_datetime(spec: FieldSpec, value: object) -> str | None:
    return None if _is_datetime(value) else "expected an ISO 8601 date-time with an offset"


def _check_code(spec: FieldSpec, value: object) -> str | None:
    if not isinstance(value, str):
        return "expected a code (a string)"
    if spec.codes and value not in spec.codes:
        return "not one of the codes " + ", ".join(spec.codes)
    return None


def _check_number(spec: FieldSpec, value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "expected a finite number"
    return None


def _check_boolean(spec: FieldSpec, value: object) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _check_string_list(spec: FieldSpec, value: object) -> str | None:
    if isinstance(value, list | tuple) and all(isinstance(i, str) and i.strip() for i in value):
        return None
    return "expected a list of non-empty strings"


def _check_reference(spec: FieldSpec, value: object) -> str | None:
    if _is_reference(value, spec.targets):
        return None
    return f"expected a reference '{_targets(spec)}/<id>'"


def _check_reference_list(spec: FieldSpec, value: object) -> str | None:
    if isinstance(value, list | tuple) and all(_is_reference(i, spec.targets) for i in value):
        return None
    return f"expected a list of references '{_targets(spec)}/<id>'"


def _check_phone(spec: FieldSpec, value: object) -> str | None:
    if isinstance(value, str) and _PHONE.fullmatch(value):
        return None
    return "not an E.164 phone number (+ then 8-15 digits)"


def _check_email(spec: FieldSpec, value: object) -> str | None:
    return None if _is_email(value) else "not an email address (one '@', no spaces)"


def _check_json(spec: FieldSpec, value: object) -> str | None:
    return None if _is_json(value) else "not a JSON value"


_CHECKS: Mapping[FieldKind, Callable[[FieldSpec, object], str | None]] = {
    "string": _check_string,
    "date": _check_date,
    "datetime": _check_datetime,
    "code": _check_code,
    "number": _check_number,
    "boolean": _check_boolean,
    "string_list": _check_string_list,
    "reference": _check_reference,
    "reference_list": _check_reference_list,
    "phone": _check_phone,
    "email": _check_email,
    "json": _check_json,
}


def _problem(spec: FieldSpec, value: object) -> str | None:
    """What is wrong with ``value`` (not None) for ``spec``, or None if it is right."""
    # "" and None would both mean "nothing here"; keep one spelling so projections compare cleanly.
    if isinstance(value, str) and spec.kind != "json" and not value.strip():
        return "empty string; use None to remove the field"
    return _CHECKS[spec.kind](spec, value)


def validate_fields(entity_type: str, data: Mapping[str, object]) -> None:
    """Raise ``ValueError("<Type>.<path>: <what is wrong>")`` for the first wrong field of ``data``.

    Every path must be a dotted lower-case path. For a documented field of a first-class type the
    value must be of the field's kind; ``None`` (removal) is always allowed. Undocumented fields and
    open-schema types are accepted as they are.
    """
    spec = ENTITY_TYPES.get(entity_type)
    for path, value in data.items():
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            raise ValueError(f"{entity_type}.{path}: not a field path like 'name.family'")
        if value is None or spec is None or (field_spec := spec.field(path)) is None:
            continue
        if (problem := _problem(field_spec, value)) is not None:
            raise ValueError(f"{entity_type}.{path}: {problem}")
