"""The bundled sample clinic (`ehrbridge/sample/clinic.json` and `schedule.json`, FHIR
transaction Bundles) is valid, consistent and fictional; read here as the records it maps to."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ehrbridge.api.slots import read_schedule, read_slot
from ehrbridge.fhir.mapping import to_entity
from ehrbridge.sample import sample_bundle, sample_bundles, schedule_bundle
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


def _load(path: Any = None) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((path or sample_bundle()).read_text(encoding="utf-8"))
    return document


SAMPLE = _load()
SCHEDULE = _load(schedule_bundle())
#: Slots and Schedules have no entity mapping: they are imported as generic entities.
GENERIC = [e["resource"] for e in SCHEDULE["entry"]]
SLOTS = [r for r in GENERIC if r["resourceType"] == "Slot"]
SCHEDULES = {r["id"]: r for r in GENERIC if r["resourceType"] == "Schedule"}


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


@pytest.mark.parametrize("bundle", [SAMPLE, SCHEDULE], ids=["clinic", "schedule"])
def test_a_transaction_of_idempotent_puts(bundle: dict[str, Any]) -> None:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    for entry in bundle["entry"]:
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
    assert Counter(r["resourceType"] for r in GENERIC) == {"Schedule": 3, "Slot": 75}
    assert Counter(s["status"] for s in SLOTS) == {"free": 72, "busy": 3}
    assert [p.name for p in sample_bundles()] == ["clinic.json", "schedule.json"]


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


def _slot_times(slot: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])


def test_every_practitioner_has_a_schedule_at_a_sample_location() -> None:
    known = {_record_id(record) for record in RECORDS}
    practitioners = {_record_id(p) for p in _by_type("Practitioner")}
    seen = set()
    for schedule in SCHEDULES.values():
        actors = [a["reference"] for a in schedule["actor"]]
        assert all(a in known for a in actors), schedule["id"]
        seen |= {a for a in actors if a.startswith("Practitioner/")}
        assert read_schedule(schedule).active
    assert seen == practitioners


def test_slots_are_well_formed_and_within_their_locations_hours() -> None:
    locations = {r["external_id"]: r for r in _by_type("Location")}
    hours = {
        loc["id"]: loc["hoursOfOperation"]
        for loc in (e["resource"] for e in SAMPLE["entry"])
        if loc["resourceType"] == "Location"
    }
    for slot in SLOTS:
        parsed = read_slot(slot["id"], slot, 1.0)
        assert parsed is not None, slot["id"]
        assert slot["schedule"]["reference"].removeprefix("Schedule/") in SCHEDULES
        start, end = _slot_times(slot)
        assert end - start in (timedelta(minutes=20), timedelta(minutes=30)), slot["id"]
        schedule = SCHEDULES[slot["schedule"]["reference"].removeprefix("Schedule/")]
        location = next(a["reference"] for a in schedule["actor"] if "Location/" in a["reference"])
        location_id = location.removeprefix("Location/")
        assert location_id in locations
        local = start.astimezone(ZoneInfo("America/New_York"))
        assert start.utcoffset() == local.utcoffset(), slot["id"]  # the clinic's own offset
        day = local.strftime("%a").lower()
        opening = [h for h in hours[location_id] if day in h["daysOfWeek"]]
        assert opening, slot["id"]
        assert opening[0]["openingTime"] <= local.strftime("%H:%M:%S"), slot["id"]
        assert end.astimezone(local.tzinfo).strftime("%H:%M:%S") <= opening[0]["closingTime"]


def test_the_booked_appointments_hold_busy_slots_and_no_free_slot_overlaps_one() -> None:
    booked = [
        a
        for a in (e["resource"] for e in SAMPLE["entry"])
        if a["resourceType"] == "Appointment" and a["status"] == "booked"
    ]

    def practitioner(resource: dict[str, Any]) -> str:
        if resource["resourceType"] == "Appointment":
            actors = [p["actor"]["reference"] for p in resource["participant"]]
        else:
            schedule = SCHEDULES[resource["schedule"]["reference"].removeprefix("Schedule/")]
            actors = [a["reference"] for a in schedule["actor"]]
        return str(next(a for a in actors if a.startswith("Practitioner/")))

    busy = {(practitioner(s), *_slot_times(s)) for s in SLOTS if s["status"] == "busy"}
    assert busy == {(practitioner(a), *_slot_times(a)) for a in booked}
    for slot in (s for s in SLOTS if s["status"] == "free"):
        start, end = _slot_times(slot)
        for appointment in booked:
            a_start, a_end = _slot_times(appointment)
            same = practitioner(appointment) == practitioner(slot)
            assert not (same and start < a_end and a_start < end), slot["id"]


def test_free_slots_cover_the_four_weeks_after_the_snapshot() -> None:
    """Dates are fixed (the sample is a snapshot): free slots every weekday of the four weeks
    that start on the Monday after it, for every practitioner, and in the week
    docs/agent-api.md searches."""
    snapshot = max(datetime.fromisoformat(record["effective_at"]) for record in RECORDS)
    free = sorted(_slot_times(s)[0] for s in SLOTS if s["status"] == "free")
    assert snapshot < free[0] and free[-1] - snapshot < timedelta(weeks=5)
    weekdays = {start.date() for start in free}
    assert len(weekdays) == 20 and all(day.weekday() < 5 for day in weekdays)
    documented = [
        start
        for start in free
        if datetime(2026, 12, 1, tzinfo=UTC) <= start < datetime(2026, 12, 8, tzinfo=UTC)
    ]
    assert len(documented) >= 10
    for schedule_id in SCHEDULES:
        assert any(
            s["schedule"]["reference"] == f"Schedule/{schedule_id}" and s["status"] == "free"
            for s in SLOTS
        )
