"""The sandbox's SQLite store: versions, server-set meta, ordering, savepoints, persistence."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ehrbridge.sandbox.store import ResourceStore

FIXED = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_versions_count_up_and_meta_is_set_by_the_server() -> None:
    store = ResourceStore(now=lambda: FIXED)
    first = store.put("Patient", "p1", {"resourceType": "Patient", "meta": {"versionId": "9"}})
    second = store.put("Patient", "p1", {"resourceType": "Patient", "gender": "male"})
    third = store.delete("Patient", "p1")

    assert [first.version, second.version, third.version] == [1, 2, 3]
    assert first.resource is not None and first.resource["meta"]["versionId"] == "1"
    assert first.resource["meta"]["lastUpdated"] == "2026-11-20T08:00:00.000000Z"
    # the clock stood still, yet every write is later than the one before
    assert first.last_updated < second.last_updated < third.last_updated
    current = store.current("Patient", "p1")
    assert current is not None and current.deleted and current.resource is None
    assert [v.version for v in store.history("Patient", "p1")] == [3, 2, 1]
    old = store.version("Patient", "p1", 2)
    assert old is not None and old.resource is not None and old.resource["gender"] == "male"


def test_atomic_rolls_back_nested_writes() -> None:
    store = ResourceStore()
    store.put("Patient", "kept", {"resourceType": "Patient"})

    def abort() -> None:
        with store.atomic():
            store.put("Patient", "lost", {"resourceType": "Patient"})
            with store.atomic():
                store.put("Patient", "kept", {"resourceType": "Patient", "active": True})
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        abort()
    assert store.current("Patient", "lost") is None
    kept = store.current("Patient", "kept")
    assert kept is not None and kept.version == 1


def test_scan_orders_by_last_updated_then_id_and_skips_deleted() -> None:
    store = ResourceStore(now=lambda: FIXED)
    for id in ("b", "a", "c"):
        store.put("Patient", id, {"resourceType": "Patient"})
    store.put("Patient", "b", {"resourceType": "Patient", "active": True})  # b moves last
    store.delete("Patient", "c")
    assert [v.id for v in store.scan("Patient")] == ["a", "b"]
    a = store.current("Patient", "a")
    assert a is not None
    assert [v.id for v in store.scan("Patient", after=(a.last_updated, "a"))] == ["b"]
    assert [v.id for v in store.scan("Patient", ids=("a", "zz"))] == ["a"]
    assert [v.id for v in store.scan("Patient", where=((">=", a.last_updated),))] == ["a", "b"]
    assert list(store.scan("Observation")) == []
    assert [v.id for v in store.scan("Patient", limit=1)] == ["a"]
    assert store.count("Patient") == 2
    assert store.count("Patient", ids=("a", "c")) == 1  # c is deleted


def test_a_file_keeps_its_resources_and_clock(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.db"
    store = ResourceStore(path, now=lambda: FIXED)
    written = store.put("Patient", "p1", {"resourceType": "Patient"})
    store.close()

    reopened = ResourceStore(path, now=lambda: FIXED)
    again = reopened.put("Patient", "p1", {"resourceType": "Patient", "active": True})
    assert again.version == 2
    assert again.last_updated > written.last_updated
    reopened.clear()
    assert reopened.current("Patient", "p1") is None
    reopened.close()
