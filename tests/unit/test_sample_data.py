"""The bundled sample clinic (`ehrbridge/sample/clinic.json`, a FHIR transaction Bundle) is
valid, consistent and fictional; read here as the records it maps to."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from ehrbridge.fhir.mapping import to_entity
from ehrbridge.sample import sample_bundle
from ehrbridge.worldmodel.entities import ENTITY_TYPES, spec_for, validate_fields

#: FHIR resource type each entity type is imported from.
RESOURCE_TYPES = {
    "Patient": "Patient",
    "Practitioner": "Practitioner",
    "Location": "Location",
    "Appointment": "Appointment",
    "Encounter": "Encounter",
    "MedicationOrder": "MedicationRequest",
    "LabResult": "Observation",
    "InsurancePlan": "Coverage",
}
# Numbers 555-0100 to 555-0199 are reserved for fiction in North America.
_FICTIONAL_PHONE = re.compile(r"\+1[2-9]\d\d55501\d\d")
_FICTIONAL_EMAIL = re.compile(r"[^@\s]+@([a-z0-9-]+\.)*example\.(com|org|net)")


def _load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(sample_bundle().read_text(encoding="utf-8"))
    return document


SAMPLE = _load()


def _record(entry: dict[str, Any]) -> dict[str, Any]:
    resource = entry["resource"]
    mapped = to_entity(resource, unmapped="refuse")
    return {
        "resource_type": resource["resourceType"],
        "external_id": resource["id"],
        "entity_type": mapped.entity_type,
        "effective_at": resource["meta"]["lastUpdated"],
        "data": mapped.data,
    }


RECORDS: list[dict[str, Any]] = [_record(entry) for entry in SAMPLE["entry"]]


def _by_type(entity_type: str) -> list[dict[str, Any]]:
    return [record for record in RECORDS if record["entity_type"] == entity_type]


def _record_id(record: dict[str, Any]) -> str:
    return f"{record['resource_type']}/{record['external_id']}"


def test_a_transaction_of_idempotent_puts() -> None:
    assert SAMPLE["resourceType"] == "Bundle" and SAMPLE["type"] == "transaction"
    for entry in SAMPLE["entry"]:
        resource = entry["resource"]
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
        }


def test_record_counts() -> None:
    assert Counter(record["entity_type"] for record in RECORDS) == {
        "Patient": 6,
        "Practitioner": 3,
        "Location": 2,
        "Appointment": 6,
        "Encounter": 6,
        "MedicationOrder": 6,
        "LabResult": 6,
        "InsurancePlan": 4,
    }


@pytest.mark.parametrize("record", RECORDS, ids=_record_id)
def test_record_is_well_formed(record: dict[str, Any]) -> None:
    assert spec_for(record["entity_type"]) is not None
    assert record["resource_type"] == RESOURCE_TYPES[record["entity_type"]]
    assert datetime.fromisoformat(record["effective_at"]).utcoffset() is not None
    assert record["data"]


@pytest.mark.parametrize("record", RECORDS, ids=_record_id)
def test_record_data_is_valid(record: dict[str, Any]) -> None:
    validate_fields(record["entity_type"], record["data"])


@pytest.mark.parametrize("record", RECORDS, ids=_record_id)
def test_record_uses_only_documented_fields(record: dict[str, Any]) -> None:
    spec = ENTITY_TYPES[record["entity_type"]]
    assert [path for path in record["data"] if spec.field(path) is None] == []


def test_external_ids_are_unique() -> None:
    keys = Counter((record["resource_type"], record["external_id"]) for record in RECORDS)
    assert [key for key, count in keys.items() if count > 1] == []


def test_every_reference_points_to_a_record_in_the_file() -> None:
    known = {_record_id(record) for record in RECORDS}
    dangling = []
    for record in RECORDS:
        spec = ENTITY_TYPES[record["entity_type"]]
        for path, value in record["data"].items():
            field = spec.field(path)
            if field is None or field.kind not in {"reference", "reference_list"}:
                continue
            targets = value if isinstance(value, list) else [value]
            dangling += [f"{_record_id(record)} {path}" for t in targets if t not in known]
    assert dangling == []


def test_maria_santos_is_findable_by_phone() -> None:
    matches = [p for p in _by_type("Patient") if p["data"].get("phone.mobile") == "+16175550142"]
    assert len(matches) == 1
    data = matches[0]["data"]
    assert (data["name.given"][0], data["name.family"]) == ("Maria", "Santos")
    assert data["birth_date"] == "1984-03-12"
    assert data["mrn"] == "MRN-1001"


def test_two_patients_share_a_birth_date() -> None:
    birth_dates = Counter(p["data"]["birth_date"] for p in _by_type("Patient"))
    assert max(birth_dates.values()) == 2


def test_appointments_are_both_past_and_upcoming_in_december() -> None:
    starts = [datetime.fromisoformat(a["data"]["start"]) for a in _by_type("Appointment")]
    snapshot = max(datetime.fromisoformat(record["effective_at"]) for record in RECORDS)
    assert any(start < snapshot for start in starts)
    assert any(start > snapshot and (start.year, start.month) == (2026, 12) for start in starts)


def test_practitioners_have_valid_npis() -> None:
    for practitioner in _by_type("Practitioner"):
        npi = practitioner["data"]["npi"]
        assert re.fullmatch(r"[12]\d{9}", npi), npi
        # Luhn check digit over the "80840" prefix, as CMS specifies for NPIs.
        digits = [int(d) for d in "80840" + npi]
        total = sum(
            d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2)
            for i, d in enumerate(reversed(digits))
        )
        assert total % 10 == 0, npi


def test_contact_details_are_fictional() -> None:
    for record in RECORDS:
        spec = ENTITY_TYPES[record["entity_type"]]
        for path, value in record["data"].items():
            field = spec.field(path)
            assert field is not None
            if field.kind == "phone":
                assert _FICTIONAL_PHONE.fullmatch(value), f"{_record_id(record)} {path}"
            if field.kind == "email":
                assert _FICTIONAL_EMAIL.fullmatch(value), f"{_record_id(record)} {path}"
