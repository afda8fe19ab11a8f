"""One REST record to canonical fields: ids, versions, defaults, links, and reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ehrbridge.connectors.rest.mapping import MappedRecord, map_record
from ehrbridge.connectors.rest.spec import FieldMap, Incremental, Link, RestResource, Transform
from ehrbridge.connectors.rest.transforms import Context
from ehrbridge.errors import RecordError

RESOURCE = RestResource(
    type="Appointment",
    path="/appointments",
    id="appt_id",
    version="etag",
    incremental=Incremental(param="updated_since", field="meta.updated"),
    fields=(
        FieldMap(name="start", path="start_time", transforms=(Transform(name="datetime"),),
                 required=True),
        FieldMap(name="status", path="state", default="proposed"),
        FieldMap(name="service_type", value="General practice"),
        FieldMap(name="minutes_duration", path="length", transforms=(Transform(name="integer"),)),
        FieldMap(name="patient", path="patient.mrn", link=Link(type="Patient", by="mrn")),
        FieldMap(name="description", path="join(' ', [kind, reason])"),
    ),
)  # fmt: skip
CTX = Context(timezone="America/New_York")


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "appt_id": 1001,
        "etag": 'W/"3"',
        "start_time": "2026-12-03 09:30",
        "state": "booked",
        "length": "30",
        "patient": {"mrn": "M100"},
        "kind": "Visit:",
        "reason": "cough",
        "meta": {"updated": "2026-11-19T10:00:00Z"},
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def test_a_record_in_canonical_form() -> None:
    assert map_record(RESOURCE, record(), CTX) == MappedRecord(
        external_id="1001",
        version='W/"3"',
        updated=datetime(2026, 11, 19, 10, tzinfo=UTC),
        data={
            "start": "2026-12-03T14:30:00Z",
            "status": "booked",
            "service_type": "General practice",
            "minutes_duration": 30,
            "description": "Visit: cough",
        },
        links={"patient": (Link(type="Patient", by="mrn"), "M100")},
    )


def test_missing_values_take_the_default_or_are_left_out() -> None:
    mapped = map_record(RESOURCE, record(state=None, length="", patient=None), CTX)
    assert mapped.data["status"] == "proposed"
    assert "minutes_duration" not in mapped.data and mapped.links == {}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not a record", "the record is not a JSON object"),
        (record(appt_id=None), "id (appt_id): missing, or not a string or number"),
        (record(appt_id=True), "id (appt_id): missing, or not a string or number"),
        (record(start_time=None), "start: missing, and the field is required"),
        (record(start_time="whenever"),
         "start: datetime: not a date or time this transform can read"),
        (record(length="half an hour"), "minutes_duration: number: expected a number"),
        (record(patient={"mrn": {"v": 1}}), "patient: a link needs a string or number to look up"),
        (record(meta={"updated": "yesterday-ish"}),
         "incremental field (meta.updated): not a date or time"),
        (record(kind=5), "description: join(' ', [kind, reason]) cannot be applied to this record"),
    ],
)  # fmt: skip
def test_a_record_that_cannot_be_mapped_says_why_without_its_values(raw: Any, reason: str) -> None:
    with pytest.raises(RecordError) as caught:
        map_record(RESOURCE, raw, CTX)
    assert str(caught.value) == reason
