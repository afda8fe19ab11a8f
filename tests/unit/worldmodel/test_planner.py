"""Which entities a batch of observations needs loaded (:func:`planner.observed`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ehrbridge.worldmodel.events import Observation, RecordKey
from ehrbridge.worldmodel.planner import Loaded, RecordRow, canonical_snapshot, observed

WS = "clinic"
AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
KNOWN = RecordKey(data_source="ehr", resource_type="Patient", external_id="1")
NEW = RecordKey(data_source="ehr", resource_type="Patient", external_id="2")


def _obs(record: RecordKey, data: dict[str, Any], entity_id: str = "p9") -> Observation:
    return Observation(
        workspace=WS,
        record=record,
        entity_type="Patient",
        entity_id=entity_id,
        data=data,
        effective_at=AT,
    )


def _loaded(data: dict[str, Any]) -> Loaded:
    snapshot, _, digest = canonical_snapshot(_obs(KNOWN, data))
    row = RecordRow(
        key=KNOWN,
        entity_type="Patient",
        entity_id="p1",
        content_hash=digest,
        snapshot=snapshot,
        last_event_id="e1",
    )
    return Loaded(records={KNOWN: row})


def test_an_unchanged_known_record_needs_no_entity() -> None:
    loaded = _loaded({"phone": "+16175550101"})
    # Volatile metadata does not count as a change.
    same = _obs(KNOWN, {"phone": "+16175550101", "meta.last_updated": "x"})
    assert observed([same], loaded) == set()
    assert loaded.snapshots[id(same)][0] == {"phone": "+16175550101"}


def test_changed_new_repeated_and_invalid_records_need_their_entities() -> None:
    loaded = _loaded({"phone": "+16175550101"})
    changed = _obs(KNOWN, {"phone": "+16175550102"})
    assert observed([changed], loaded) == {("Patient", "p1")}  # the record's, not "p9"
    assert observed([_obs(NEW, {"phone": "x"})], loaded) == {("Patient", "p9")}
    same = {"phone": "+16175550101"}
    # Twice in one batch: the second copy is compared with the first, so load the entity.
    assert observed([_obs(KNOWN, same), _obs(KNOWN, same)], loaded) == {("Patient", "p1")}
    # Not JSON: the planner will name the problem; loading the entity is harmless.
    assert observed([_obs(KNOWN, {"phone": float("nan")})], loaded) == {("Patient", "p1")}
