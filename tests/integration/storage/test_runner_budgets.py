"""The request budgets' pace in the runner's storage, one contract on both backends: a slot at a
time over every connection, a pause holds every taker off, and nothing is booked ahead."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ehrbridge.budget import MAX_PAUSE
from ehrbridge.runner.store import RunnerStore
from ehrbridge.storage import Backend
from ehrbridge.storage.sqlite.runner import SQLiteRunnerStore
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.testing import FakeClock
from tests.conftest import MakeBackend

HOUR = timedelta(hours=1)


async def test_a_slot_then_the_wait_for_the_next(backend: Backend) -> None:
    pace = backend.runner
    assert await pace.take_slot("ws", "source:ehr", HOUR) == timedelta(0)
    wait = await pace.take_slot("ws", "source:ehr", HOUR)
    assert HOUR - timedelta(minutes=1) < wait <= HOUR
    # Waiting took nothing: the next slot is still an hour off, not two.
    again = await pace.take_slot("ws", "source:ehr", HOUR)
    assert HOUR - timedelta(minutes=1) < again <= HOUR
    # Other names and other workspaces have their own pace.
    assert await pace.take_slot("ws", "source:lab", HOUR) == timedelta(0)
    assert await pace.take_slot("other", "source:ehr", HOUR) == timedelta(0)


async def test_a_slot_comes_after_its_interval(backend: Backend) -> None:
    pace = backend.runner
    step = timedelta(milliseconds=50)
    assert await pace.take_slot("ws", "b", step) == timedelta(0)
    await asyncio.sleep(0.2)
    assert await pace.take_slot("ws", "b", step) == timedelta(0)


async def test_a_pause_holds_every_slot_off_and_never_shortens_a_wait(backend: Backend) -> None:
    pace = backend.runner
    pause = timedelta(minutes=5)
    await pace.pause("ws", "source:ehr", pause)
    wait = await pace.take_slot("ws", "source:ehr", timedelta(milliseconds=10))
    assert pause - timedelta(minutes=1) < wait <= pause
    # A shorter pause later does not bring the slot forward.
    await pace.pause("ws", "source:ehr", timedelta(seconds=1))
    assert await pace.take_slot("ws", "source:ehr", timedelta(milliseconds=10)) > wait / 2
    # A pause is cut to MAX_PAUSE (a Retry-After of a week does not stop a source for a week).
    await pace.pause("ws", "source:lab", timedelta(days=7))
    assert await pace.take_slot("ws", "source:lab", timedelta(milliseconds=10)) <= MAX_PAUSE


async def test_racing_takers_on_separate_connections_take_one_slot(
    make_backend: MakeBackend,
) -> None:
    paces: list[RunnerStore] = [(await make_backend()).runner for _ in range(3)]
    for attempt in range(5):
        name = f"race-{attempt}"
        waits = await asyncio.gather(*(p.take_slot("ws", name, HOUR) for p in paces for _ in "ab"))
        assert sum(wait == timedelta(0) for wait in waits) == 1


async def test_a_clock_that_went_back_does_not_stall_a_budget() -> None:
    # SQLite runs on the host's clock (PostgreSQL on the database's, which a test cannot move).
    clock = FakeClock(datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
    store = await SQLiteStore.open(":memory:")
    try:
        pace = SQLiteRunnerStore(store.database, clock=clock)
        assert await pace.take_slot("ws", "b", timedelta(seconds=1)) == timedelta(0)
        clock.advance(-timedelta(days=1))
        assert await pace.take_slot("ws", "b", timedelta(seconds=1)) == timedelta(0)
    finally:
        await store.close()


# --- the pace is a model: next_at, moved by slots and pauses ------------------------------------

_STEPS = st.lists(
    st.tuples(
        st.integers(0, 3000),  # milliseconds the clock moves first
        st.sampled_from(["take", "pause"]),
        st.integers(0, 5000),  # a pause's milliseconds
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(steps=_STEPS, interval_ms=st.integers(1, 2000))
# a slot taken at the instant a pause begins, before it: it stands (found by a CI run)
@example(steps=[(0, "take", 0), (0, "pause", 1)], interval_ms=1)
# a slot due to the microsecond whose float seconds rounded a hair late: it is taken, and a wait
# of zero never comes back without the slot (found by a CI run)
@example(steps=[(2, "take", 0), (2, "take", 0), (0, "take", 0)], interval_ms=2)
def test_the_sqlite_pace_follows_its_model(
    steps: list[tuple[int, str, int]], interval_ms: int
) -> None:
    asyncio.run(_follow_model(steps, timedelta(milliseconds=interval_ms)))


async def _follow_model(steps: list[tuple[int, str, int]], interval: timedelta) -> None:
    clock = FakeClock(datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
    store = await SQLiteStore.open(":memory:")
    try:
        pace = SQLiteRunnerStore(store.database, clock=clock)
        next_at: datetime | None = None
        granted: list[tuple[int, datetime]] = []  # (step, when)
        pauses: list[tuple[int, datetime, datetime]] = []  # (step, from, until)
        for step, (advance, op, pause_ms) in enumerate(steps):
            now = clock.advance(timedelta(milliseconds=advance))
            if op == "pause":
                until = now + timedelta(milliseconds=pause_ms)
                await pace.pause("ws", "b", timedelta(milliseconds=pause_ms))
                next_at = until if next_at is None else max(next_at, until)
                pauses.append((step, now, until))
                continue
            wait = await pace.take_slot("ws", "b", interval)
            if next_at is None or next_at <= now:
                assert wait == timedelta(0)
                next_at = now + interval
                granted.append((step, now))
            else:
                assert wait == pytest.approx(next_at - now, abs=timedelta(milliseconds=1))
        # Slots are an interval apart at least, and none falls inside a pause.
        # (A pause stops the slots taken after it; one taken at the same instant before it
        # stands.)
        times = [when for _, when in granted]
        assert all(b - a >= interval for a, b in pairwise(times))
        assert not any(
            start <= when < end
            for taken, when in granted
            for paused, start, end in pauses
            if taken > paused
        )
    finally:
        await store.close()
