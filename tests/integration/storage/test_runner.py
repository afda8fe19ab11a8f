"""The runner's storage port, one contract on both backends: leases, cursors, poll outcomes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ehrbridge.connectors.source import PollOutcome
from ehrbridge.runner.store import RunnerStore
from ehrbridge.storage import Backend
from tests.conftest import MakeBackend

MINUTE = timedelta(minutes=1)


async def test_one_holder_at_a_time(backend: Backend) -> None:
    runner = backend.runner
    first = await runner.acquire("ws", "poll:ehr", "a", MINUTE)
    assert first is not None and first.holder == "a"
    assert await runner.acquire("ws", "poll:ehr", "b", MINUTE) is None
    held = await runner.holder("ws", "poll:ehr")
    assert held is not None and held.holder == "a"
    # another name and another workspace are other leases
    assert await runner.acquire("ws", "poll:lab", "b", MINUTE) is not None
    assert await runner.acquire("other", "poll:ehr", "b", MINUTE) is not None


async def test_renewal_extends_and_release_frees(backend: Backend) -> None:
    runner = backend.runner
    first = await runner.acquire("ws", "l", "a", MINUTE)
    renewed = await runner.acquire("ws", "l", "a", 10 * MINUTE)
    assert first is not None and renewed is not None
    assert renewed.expires_at > first.expires_at
    assert not await runner.release("ws", "l", "b")
    assert await runner.acquire("ws", "l", "b", MINUTE) is None
    assert await runner.release("ws", "l", "a")
    assert await runner.holder("ws", "l") is None
    taken = await runner.acquire("ws", "l", "b", MINUTE)
    assert taken is not None and taken.holder == "b"


async def test_an_expired_lease_can_be_taken(backend: Backend) -> None:
    runner = backend.runner
    assert await runner.acquire("ws", "l", "a", timedelta(milliseconds=20)) is not None
    await asyncio.sleep(0.1)
    assert await runner.holder("ws", "l") is None
    taken = await runner.acquire("ws", "l", "b", MINUTE)
    assert taken is not None and taken.holder == "b"
    # the old holder cannot renew what it lost
    assert await runner.acquire("ws", "l", "a", MINUTE) is None


async def test_racing_holders_on_separate_connections_one_wins(make_backend: MakeBackend) -> None:
    runners: list[RunnerStore] = [(await make_backend()).runner for _ in range(3)]
    for attempt in range(5):
        name = f"race-{attempt}"
        results = await asyncio.gather(
            *(r.acquire("ws", name, f"holder-{i}", MINUTE) for i, r in enumerate(runners))
        )
        assert sum(lease is not None for lease in results) == 1


async def test_cursors_are_per_source_and_type(backend: Backend) -> None:
    runner = backend.runner
    assert await runner.get_cursor("ws", "ehr", "Patient") is None
    await runner.set_cursor("ws", "ehr", "Patient", "2026-01-01T00:00:00+00:00")
    await runner.set_cursor("ws", "ehr", "Patient", "2026-01-02T00:00:00+00:00")
    await runner.set_cursor("ws", "ehr", "Encounter", "e")
    assert await runner.get_cursor("ws", "ehr", "Patient") == "2026-01-02T00:00:00+00:00"
    assert await runner.get_cursor("ws", "ehr", "Encounter") == "e"
    assert await runner.get_cursor("other", "ehr", "Patient") is None


def _outcome(source: str, resource_type: str, minute: int, ok: bool = True) -> PollOutcome:
    at = datetime(2026, 11, 20, 8, minute, tzinfo=UTC)
    return PollOutcome(
        workspace="ws",
        source=source,
        resource_type=resource_type,
        started_at=at,
        finished_at=at + timedelta(seconds=2),
        ok=ok,
        error=None if ok else "FhirUnavailable: HTTP 503",
        fetched=minute,
        events=1,
    )


async def test_recent_outcomes_newest_first_per_source_and_type(backend: Backend) -> None:
    runner = backend.runner
    for minute in range(5):
        await runner.record_outcome(_outcome("ehr", "Patient", minute, ok=minute != 4))
        await runner.record_outcome(_outcome("lab", "Observation", minute))
    recent = await runner.recent_outcomes("ws", "ehr", limit=3)
    assert [(o.resource_type, o.fetched) for o in recent] == [("Patient", m) for m in (4, 3, 2)]
    assert recent[0] == _outcome("ehr", "Patient", 4, ok=False)
    everything = await runner.recent_outcomes("ws", limit=2)
    assert [(o.source, o.fetched) for o in everything] == [
        ("ehr", 4),
        ("ehr", 3),
        ("lab", 4),
        ("lab", 3),
    ]


async def test_record_versions_are_per_source_and_type_and_replace(backend: Backend) -> None:
    runner = backend.runner
    assert await runner.known_versions("ws", "ehr", "Patient", ["a", "b"]) == {}
    await runner.remember_versions("ws", "ehr", "Patient", {"a": "1", "b": "sha:x"})
    await runner.remember_versions("ws", "ehr", "Patient", {"a": "2"})
    await runner.remember_versions("ws", "ehr", "Encounter", {"a": "9"})
    await runner.remember_versions("ws", "ehr", "Patient", {})
    assert await runner.known_versions("ws", "ehr", "Patient", ["a", "b", "c"]) == {
        "a": "2",
        "b": "sha:x",
    }
    assert await runner.known_versions("ws", "ehr", "Encounter", ["a", "b"]) == {"a": "9"}
    assert await runner.known_versions("other", "ehr", "Patient", ["a"]) == {}
    assert await runner.known_versions("ws", "lab", "Patient", ["a"]) == {}
    assert await runner.known_versions("ws", "ehr", "Patient", []) == {}


async def test_record_versions_take_a_large_batch(backend: Backend) -> None:
    runner = backend.runner
    tokens = {f"id-{i}": f"v{i}" for i in range(5000)}
    await runner.remember_versions("ws", "ehr", "Observation", tokens)
    assert await runner.known_versions("ws", "ehr", "Observation", list(tokens)) == tokens
