"""The benchmark itself: load patients through ``append``, then time the two reads a call needs.

1. **Append.** Every patient's history is written round by round (one EHR snapshot, EHR
   snapshots with changes, voice facts), in batches of 500 submissions through
   ``store.append``. Each batch's events are then inserted again, as rows, by the raw driver into
   a scratch ``events`` table of the same shape; both are timed, so the ratio compares the world
   model (validation, dedup, projection, lookup keys, several tables, one transaction) with the
   cheapest way to put the same event rows on disk.
2. **Caller identification.** ``store.find(workspace, "phone:+1...")`` for random existing
   mobile numbers, against the bare ``entity_keys`` lookup.
3. **State read.** ``store.get_state`` of random patients, against the bare ``SELECT state``.

Reads are timed one at a time, in process, after a short warm-up.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.backends import Backend
from bench.patients import WORKSPACE, batches, ehr_rounds, make_patient, submission
from bench.report import Metric, percentile, progress
from ehrbridge.storage.rows import event_row


@dataclass(frozen=True, kw_only=True)
class Size:
    """How much to load and how much to measure."""

    patients: int
    events_per_patient: int = 10  #: submissions per patient; each writes one event
    batch: int = 500  #: submissions per ``append``
    lookups: int = 2_000  #: timed reads per read metric
    warmup: int = 200  #: untimed reads first
    seed: int = 42


FULL = Size(patients=100_000)
#: 10,000 patients; five events each keeps it under a minute at today's append speed (see docs).
QUICK = Size(patients=10_000, events_per_patient=5)


@dataclass(kw_only=True)
class Loaded:
    """What the load left behind for the read benchmarks."""

    entity_ids: list[str]  #: per patient index
    events: int
    append_seconds: float
    raw_seconds: float


async def load(backend: Backend, size: Size) -> Loaded:
    """Write every patient's history through the store, timing it against the raw insert."""
    patients = [make_patient(i, size.seed) for i in range(size.patients)]
    entity_ids: list[str | None] = [None] * size.patients
    rng = random.Random(size.seed)
    events = 0
    append_seconds = raw_seconds = 0.0
    ehr = ehr_rounds(size.events_per_patient)
    for round_no in range(size.events_per_patient):
        kind = "EHR snapshot" if round_no < ehr else "voice fact"
        order = list(range(size.patients))
        rng.shuffle(order)  # batches touch patients all over the tables, as real traffic does
        started = time.perf_counter()
        for chunk in batches(order, size.batch):
            items = [submission(patients[i], round_no, entity_ids[i], ehr) for i in chunk]
            before = time.perf_counter()
            results = await backend.store.append(WORKSPACE, items)
            append_seconds += time.perf_counter() - before
            rows = [event_row(event) for result in results for event in result.events]
            raw_seconds += await backend.raw_insert(rows)
            events += len(rows)
            for i, result in zip(chunk, results, strict=True):
                entity_ids[i] = result.entity_id
        progress(
            f"{backend.name}: round {round_no + 1}/{size.events_per_patient} ({kind}) "
            f"{time.perf_counter() - started:.1f}s, {events:,} events so far"
        )
    return Loaded(
        entity_ids=[e for e in entity_ids if e is not None],
        events=events,
        append_seconds=append_seconds,
        raw_seconds=raw_seconds,
    )


async def _latencies(
    call: Callable[[int], Awaitable[Any]], picks: list[int], warmup: int
) -> list[float]:
    """Milliseconds per call, one call at a time; the first ``warmup`` calls are not kept."""
    for index in picks[:warmup]:
        await call(index)
    samples = []
    for index in picks[warmup:]:
        before = time.perf_counter_ns()
        await call(index)
        samples.append((time.perf_counter_ns() - before) / 1e6)
    return samples


async def measure(backend: Backend, size: Size) -> AsyncIterator[Metric]:
    """Load, then measure; yields each metric as soon as it is known."""
    loaded = await load(backend, size)
    name = backend.name
    yield Metric(
        metric="events_loaded", value=loaded.events, unit="events", baseline=None, backend=name
    )
    yield Metric(
        metric="append_throughput",
        value=loaded.events / loaded.append_seconds,
        unit="events/s",
        baseline=loaded.events / loaded.raw_seconds,
        backend=name,
    )
    rng = random.Random(size.seed + 1)
    picks = [rng.randrange(size.patients) for _ in range(size.warmup + size.lookups)]
    phones = [make_patient(i, size.seed).mobile for i in range(size.patients)]
    ids = loaded.entity_ids

    async def find(i: int) -> None:
        found = await backend.store.find(WORKSPACE, f"phone:{phones[i]}")
        if len(found) != 1 or found[0].entity_id != ids[i]:
            raise AssertionError(f"find by phone returned {len(found)} entities, expected one")

    async def raw_find(i: int) -> None:
        if len(await backend.raw_lookup(WORKSPACE, f"phone:{phones[i]}")) != 1:
            raise AssertionError("raw lookup by phone did not find exactly one entity")

    async def state(i: int) -> None:
        if await backend.store.get_state(WORKSPACE, "Patient", ids[i]) is None:
            raise AssertionError("get_state found no state for a loaded patient")

    async def raw_state(i: int) -> None:
        if await backend.raw_state(WORKSPACE, "Patient", ids[i]) is None:
            raise AssertionError("raw state read found no row for a loaded patient")

    for metric, store_call, raw_call in (
        ("caller_id", find, raw_find),
        ("state_read", state, raw_state),
    ):
        mine = await _latencies(store_call, picks, size.warmup)
        raw = await _latencies(raw_call, picks, size.warmup)
        for pct in (50, 99):
            yield Metric(
                metric=f"{metric}_p{pct}",
                value=percentile(mine, pct),
                unit="ms",
                baseline=percentile(raw, pct),
                backend=name,
            )
