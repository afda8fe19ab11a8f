"""The entity type registry and validate_fields."""

from __future__ import annotations

import dataclasses
import re

import pytest

from ehrbridge.fhir.mapping import R4_RESOURCE_TYPES
from ehrbridge.worldmodel.entities import (
    ENTITY_TYPES,
    EntityTypeSpec,
    FieldSpec,
    spec_for,
    validate_fields,
)

# One (entity type, path) per kind, with values that must pass and values that must be refused.
ACCEPTED: list[tuple[str, str, object]] = [
    ("Patient", "name.family", "Santos"),
    ("Patient", "name.family", "O'Brien-Núñez"),
    ("Patient", "birth_date", "1984-03-12"),
    ("Patient", "birth_date", "1984-03"),
    ("Patient", "birth_date", "1984"),
    ("Patient", "birth_date", "2024-02-29"),
    ("Appointment", "start", "2026-12-03T14:30:00-05:00"),
    ("Appointment", "start", "2026-12-03T19:30:00Z"),
    ("Appointment", "start", "2026-12-03T19:30Z"),
    ("Appointment", "start", "2026-12-03T19:30:00.125+00:00"),
    ("Patient", "gender", "female"),
    ("Encounter", "class", "AMB"),
    ("Encounter", "class", "SOMETHING-LOCAL"),
    ("LabResult", "code", "http://loinc.org|4548-4"),
    ("LabResult", "value.quantity", 6.1),
    ("LabResult", "value.quantity", 0),
    ("LabResult", "value.quantity", -3),
    ("Patient", "deceased", False),
    ("Patient", "name.given", ["Maria", "Luisa"]),
    ("Patient", "name.given", []),
    ("Patient", "name.given", ("Maria",)),
    ("Appointment", "patient", "Patient/pat-1001"),
    ("Appointment", "patient", "Patient/0193a7c2f1e4b8d2c6a9e0f1d3"),
    ("Appointment", "patient", "Patient/urn:x.y_z-1"),
    ("Encounter", "practitioners", ["Practitioner/prac-1", "Practitioner/prac-2"]),
    ("Encounter", "practitioners", []),
    ("Patient", "phone.mobile", "+16175550142"),
    ("Patient", "phone.mobile", "+4930123456"),
    ("Patient", "email", "maria.santos@example.org"),
    ("Location", "hours", {"mon": [["08:00", "17:00"]], "sun": []}),
    ("Location", "hours", "Mon-Fri 8-5"),
    ("Location", "hours", [1, 2.5, True, None]),
]

REFUSED: list[tuple[str, str, object]] = [
    ("Patient", "name.family", 42),
    ("Patient", "name.family", ["Santos"]),
    ("Patient", "name.family", ""),
    ("Patient", "name.family", "   "),
    ("Patient", "birth_date", "12/03/1984"),
    ("Patient", "birth_date", "1984-13-01"),
    ("Patient", "birth_date", "1984-13"),
    ("Patient", "birth_date", "2023-02-29"),
    ("Patient", "birth_date", "1984-03-12T00:00:00Z"),
    ("Patient", "birth_date", "84-03-12"),
    ("Patient", "birth_date", "١٩٨٤"),
    ("Patient", "birth_date", 1984),
    ("Appointment", "start", "2026-12-03T14:30:00"),
    ("Appointment", "start", "2026-12-03"),
    ("Appointment", "start", "2026-12-03 14:30:00+00:00"),
    ("Appointment", "start", "2026-12-32T14:30:00+00:00"),
    ("Appointment", "start", "2026-12-03T25:30:00+00:00"),
    ("Appointment", "start", "2026-12-03T14:30:00+00:00\n"),
    ("Appointment", "start", 1_764_000_000),
    ("Patient", "gender", "F"),
    ("Patient", "gender", "Female"),
    ("Patient", "gender", True),
    ("Appointment", "status", "canceled"),
    ("LabResult", "value.quantity", "6.1"),
    ("LabResult", "value.quantity", True),
    ("LabResult", "value.quantity", float("nan")),
    ("LabResult", "value.quantity", float("inf")),
    ("Patient", "deceased", "false"),
    ("Patient", "deceased", 0),
    ("Patient", "name.given", "Maria"),
    ("Patient", "name.given", ["Maria", 1]),
    ("Patient", "name.given", ["Maria", ""]),
    ("Appointment", "patient", "pat-1001"),
    ("Appointment", "patient", "Practitioner/prac-1"),
    ("Appointment", "patient", "Patient/"),
    ("Appointment", "patient", "patient/pat-1001"),
    ("Appointment", "patient", "Patient/pat 1001"),
    ("Appointment", "patient", "Patient/pat-1001/_history/2"),
    ("Appointment", "patient", ["Patient/pat-1001"]),
    ("Encounter", "practitioners", "Practitioner/prac-1"),
    ("Encounter", "practitioners", ["Practitioner/prac-1", "Patient/pat-1"]),
    ("Encounter", "practitioners", ["prac-1"]),
    ("Patient", "phone.mobile", "617-555-0142"),
    ("Patient", "phone.mobile", "16175550142"),
    ("Patient", "phone.mobile", "+1 617 555 0142"),
    ("Patient", "phone.mobile", "+1617555"),
    ("Patient", "phone.mobile", "+1234567890123456"),
    ("Patient", "phone.mobile", "+06175550142"),
    ("Patient", "phone.mobile", "+16175550142\n"),
    ("Patient", "phone.mobile", 16175550142),
    ("Patient", "email", "maria.santos.example.org"),
    ("Patient", "email", "maria@santos@example.org"),
    ("Patient", "email", "@example.org"),
    ("Patient", "email", "maria@"),
    ("Patient", "email", "maria santos@example.org"),
    ("Location", "hours", {"mon": float("nan")}),
    ("Location", "hours", {1: "x"}),
    ("Location", "hours", object()),
]

KINDS = {
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
}


def _kind(entity_type: str, path: str) -> str:
    spec = spec_for(entity_type)
    assert spec is not None
    field = spec.field(path)
    assert field is not None
    return field.kind


def test_cases_cover_every_kind() -> None:
    assert {_kind(t, p) for t, p, _ in ACCEPTED} == KINDS
    assert {_kind(t, p) for t, p, _ in REFUSED} == KINDS


@pytest.mark.parametrize(("entity_type", "path", "value"), ACCEPTED)
def test_accepts_a_value_of_the_right_kind(entity_type: str, path: str, value: object) -> None:
    validate_fields(entity_type, {path: value})


@pytest.mark.parametrize(("entity_type", "path", "value"), REFUSED)
def test_refuses_a_value_of_the_wrong_kind_naming_the_field(
    entity_type: str, path: str, value: object
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(f'{entity_type}.{path}: ')}"):
        validate_fields(entity_type, {path: value})


def test_error_message_does_not_carry_the_value() -> None:
    with pytest.raises(ValueError, match=r"^Patient\.phone\.mobile: ") as info:
        validate_fields("Patient", {"phone.mobile": "617-555-0142"})
    assert "555" not in str(info.value)


def test_reports_the_first_wrong_field_among_good_ones() -> None:
    data = {"name.family": "Santos", "birth_date": "12/03/1984", "gender": "female"}
    with pytest.raises(ValueError, match=r"^Patient\.birth_date: "):
        validate_fields("Patient", data)


def test_code_error_lists_the_allowed_codes() -> None:
    with pytest.raises(ValueError, match="male, female, other, unknown"):
        validate_fields("Patient", {"gender": "F"})


def test_reference_error_names_the_target_type() -> None:
    with pytest.raises(ValueError, match="Practitioner/<id>"):
        validate_fields("Appointment", {"practitioner": "Patient/pat-1001"})


@pytest.mark.parametrize(
    ("entity_type", "path"),
    [(name, field.path) for name, spec in ENTITY_TYPES.items() for field in spec.fields],
)
def test_none_removes_any_known_field(entity_type: str, path: str) -> None:
    validate_fields(entity_type, {path: None})


def test_unknown_entity_type_is_open_schema() -> None:
    assert spec_for("Immunization") is None
    validate_fields("Immunization", {"vaccine.code": 123, "status": ["anything"], "x": {"a": 1}})


def test_unknown_field_of_a_known_type_is_open_schema() -> None:
    validate_fields("Patient", {"favourite_colour": 7, "phone.pager": "not a phone"})


@pytest.mark.parametrize(
    "path",
    [
        "",
        "Name.family",
        "name..family",
        "name.",
        ".name",
        "name.Family",
        "1name",
        "name.1st",
        "name-family",
        "name family",
        "name.family\n",
        "náme",
    ],
)
@pytest.mark.parametrize("entity_type", ["Patient", "Immunization"])
def test_refuses_a_bad_path_in_any_type(entity_type: str, path: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(f'{entity_type}.{path}: ')}"):
        validate_fields(entity_type, {path: None})


def test_empty_data_is_valid() -> None:
    validate_fields("Patient", {})


def test_registry_has_the_eight_types_with_their_fhir_resources() -> None:
    assert {name: spec.fhir.split()[0] for name, spec in ENTITY_TYPES.items()} == {
        "Patient": "Patient",
        "Practitioner": "Practitioner",
        "Location": "Location",
        "Appointment": "Appointment",
        "Encounter": "Encounter",
        "MedicationOrder": "MedicationRequest",
        "LabResult": "Observation",
        "InsurancePlan": "Coverage",
    }
    for name, spec in ENTITY_TYPES.items():
        assert spec.name == name
        assert spec_for(name) is spec


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        ENTITY_TYPES["Device"] = ENTITY_TYPES["Patient"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ENTITY_TYPES["Patient"].fields = ()  # type: ignore[misc]


def test_field_looks_up_by_path() -> None:
    spec = ENTITY_TYPES["Patient"]
    field = spec.field("phone.mobile")
    assert field is not None
    assert field.kind == "phone"
    assert spec.field("phone") is None


def test_codes_only_on_code_fields_and_targets_only_on_references() -> None:
    for spec in ENTITY_TYPES.values():
        for field in spec.fields:
            if field.codes:
                assert field.kind == "code", f"{spec.name}.{field.path}"
            if field.targets:
                assert field.kind in {"reference", "reference_list"}, f"{spec.name}.{field.path}"
                # A first-class entity type, or a FHIR resource type kept as a generic entity.
                known = set(ENTITY_TYPES) | R4_RESOURCE_TYPES
                assert set(field.targets) <= known, f"{spec.name}.{field.path}"


def test_matching_keys_rely_on_these_paths() -> None:
    # worldmodel.matching builds its lookup keys from these paths; renaming one breaks matching.
    patient = ENTITY_TYPES["Patient"]
    for path in ("name.family", "name.given", "birth_date", "gender", "mrn", "identifiers"):
        assert patient.field(path) is not None, path
    assert ENTITY_TYPES["Practitioner"].field("npi") is not None


@pytest.mark.parametrize(
    "fields",
    [
        (FieldSpec(path="Bad", kind="string", meaning="x"),),
        (
            FieldSpec(path="a", kind="string", meaning="x"),
            FieldSpec(path="a", kind="number", meaning="y"),
        ),
    ],
)
def test_spec_refuses_bad_or_duplicate_paths(fields: tuple[FieldSpec, ...]) -> None:
    with pytest.raises(ValueError, match=r"^Thing\."):
        EntityTypeSpec(name="Thing", fhir="Basic", description="x", fields=fields)
