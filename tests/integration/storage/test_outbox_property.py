"""The outbox's claims, settles and leases, as a property: whatever the sequence of enqueues,
claims, settles, sends, releases, renewals, operator actions, read-back confirmations, reopens
and clock moves, the store claims exactly the items a plain model of the rules says are ready
(lane heads, in position order), answers every fenced write as the model does (a stale epoch
changes nothing), and leaves every item where the model has it."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrbridge.errors import OutboxConflict
from ehrbridge.outbound.outbox import (
    FINAL,
    PARKED,
    Attempt,
    ItemStatus,
    NewItem,
    Outbox,
    Settle,
    item_key,
)
from ehrbridge.storage import Backend, open_backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.testing import FakeClock
from tests.conftest import BACKENDS, POSTGRES_DSN, new_schema

WS = "clinic"
SINK = "ehr"
LEASE = timedelta(minutes=1)
ENDINGS = [ItemStatus.SYNCED, ItemStatus.PENDING, ItemStatus.DEAD, ItemStatus.CONFLICT]

#: one step: what to do and its arguments (indexes wrap around what exists)
step = st.one_of(
    st.tuples(st.just("enqueue"), st.integers(0, 1), st.integers(1, 2)),
    st.tuples(st.just("claim"), st.integers(0, 1), st.integers(1, 3)),
    st.tuples(st.just("settle"), st.integers(0, 5), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("mark_sent"), st.integers(0, 5)),
    st.tuples(st.just("release"), st.integers(0, 5)),
    st.tuples(st.just("renew"), st.integers(0, 5)),
    st.tuples(st.just("advance"), st.sampled_from([20, 45, 70])),
    st.tuples(st.just("retry"), st.integers(0, 5)),
    st.tuples(st.just("skip"), st.integers(0, 5)),
    st.tuples(st.just("reopen"), st.integers(0, 5)),
    st.tuples(st.just("confirm"), st.integers(0, 5)),
)
#: two lanes of two items to start from, then claims and clock moves among the other steps
steps = st.lists(
    st.one_of(step, st.tuples(st.just("claim"), st.integers(0, 1), st.integers(1, 3))),
    min_size=5,
    max_size=40,
).map(lambda plan: [("enqueue", 0, 2), ("enqueue", 1, 2), *plan])


@dataclass(kw_only=True)
class Model:
    """An item as the rules say it stands."""

    id: str
    lane: str
    order: int
    #: not claimed before this
    due: datetime
    status: ItemStatus = ItemStatus.PENDING
    epoch: int = 0
    holder: str | None = None
    lease_until: datetime | None = None
    in_doubt: bool = False
    confirmed: bool = False


def ready(models: list[Model], now: datetime, limit: int) -> list[Model]:
    """The lane heads the rules let a claim take, in queue order."""
    heads = []
    for lane in {m.lane for m in models}:
        open_ = sorted(
            (m for m in models if m.lane == lane and m.status not in FINAL), key=lambda m: m.order
        )
        if not open_:
            continue
        head = open_[0]
        held = any(
            m.status is ItemStatus.PROCESSING and m.lease_until is not None and m.lease_until > now
            for m in open_
            if m is not head
        )
        due = (head.status is ItemStatus.PENDING and head.due <= now) or (
            head.status is ItemStatus.PROCESSING
            and head.lease_until is not None
            and head.lease_until <= now
        )
        if due and not held:
            heads.append(head)
    return sorted(heads, key=lambda m: m.order)[:limit]


def fenced(model: Model, epoch: int) -> bool:
    return model.epoch == epoch and model.status is ItemStatus.PROCESSING


async def run(outbox: Outbox, clock: FakeClock, plan: list[tuple[Any, ...]]) -> None:
    models: list[Model] = []
    claims: list[tuple[str, int, str]] = []  # every claim ever made: (id, epoch, holder)
    queued = 0
    for step in plan:
        kind, *args = step
        now = clock()
        if kind == "enqueue":
            lane, count = args
            news = [
                NewItem(
                    sink=SINK,
                    key=item_key(SINK, f"e{queued + k}"),
                    lane=f"Patient/p{lane}",
                    entity_type="Patient",
                    entity_id=f"p{lane}",
                    event_id=f"e{queued + k}",
                    operation="upsert",
                    payload={"n": queued + k},
                )
                for k in range(count)
            ]
            for item in await outbox.enqueue(WS, news):
                models.append(Model(id=item.id, lane=item.lane, order=item.position, due=now))
            queued += count
        elif kind == "claim":
            holder, limit = f"w{args[0]}", args[1]
            expected = ready(models, now, limit)
            got = await outbox.claim(WS, SINK, holder, limit=limit, lease=LEASE)
            assert [c.item.id for c in got] == [m.id for m in expected], step
            for c, m in zip(got, expected, strict=True):
                m.status, m.epoch, m.holder = ItemStatus.PROCESSING, m.epoch + 1, holder
                m.lease_until = now + LEASE
                assert c.epoch == m.epoch and c.in_doubt == m.in_doubt
                claims.append((m.id, m.epoch, holder))
        elif kind in ("settle", "mark_sent", "release", "renew") and claims:
            item_id, epoch, holder = claims[args[0] % len(claims)]
            m = next(m for m in models if m.id == item_id)
            allowed = fenced(m, epoch)
            if kind == "settle":
                status = ENDINGS[args[1]]
                later = now + timedelta(seconds=90) if args[2] else now
                attempt = Attempt(
                    item_id=item_id, epoch=epoch, started_at=now, finished_at=now, outcome="x"
                )
                done = Settle(status=status, attempt=attempt, next_attempt_at=later)
                assert await outbox.settle(WS, item_id, epoch, done) == allowed, step
                if allowed:
                    m.status, m.holder, m.lease_until, m.in_doubt = status, None, None, False
                    m.confirmed = False
                    if status is ItemStatus.PENDING:
                        m.due = later
            elif kind == "mark_sent":
                assert await outbox.mark_sent(WS, item_id, epoch) == allowed, step
                m.in_doubt = m.in_doubt or allowed
            elif kind == "release":
                assert await outbox.release(WS, item_id, epoch) == allowed, step
                if allowed:
                    m.status, m.holder, m.lease_until = ItemStatus.PENDING, None, None
            else:
                allowed = allowed and m.holder == holder
                renewed = await outbox.renew(WS, [(item_id, epoch)], holder, LEASE)
                assert renewed == ({item_id} if allowed else set()), step
                if allowed:
                    m.lease_until = now + LEASE
        elif kind == "advance":
            clock.advance(timedelta(seconds=args[0]))
        elif kind in ("retry", "skip") and models:
            m = models[args[0] % len(models)]
            parked = m.status in PARKED
            try:
                if kind == "retry":
                    await outbox.retry(WS, m.id, "op")
                else:
                    await outbox.skip(WS, m.id, "op", "gave up")
            except OutboxConflict:
                assert not parked, step
            else:
                assert parked, step
                m.status = ItemStatus.PENDING if kind == "retry" else ItemStatus.SKIPPED
                m.due = now
        elif kind in ("reopen", "confirm") and models:
            m = models[args[0] % len(models)]
            allowed = m.status is ItemStatus.SYNCED and not m.confirmed
            if kind == "reopen":
                assert await outbox.reopen(WS, m.id, "not at the sink") == allowed, step
                if allowed:
                    m.status, m.due = ItemStatus.PENDING, now
            else:
                assert await outbox.confirm(WS, m.id) == allowed, step
                m.confirmed = m.confirmed or allowed
        for m in models:  # every item where the model has it
            stored = await outbox.item(WS, m.id)
            assert stored is not None
            assert (stored.status, stored.epoch, stored.in_doubt, stored.holder) == (
                m.status,
                m.epoch,
                m.in_doubt,
                m.holder if m.status is ItemStatus.PROCESSING else None,
            ), step


async def opened(backend: str, folder: Path, clock: FakeClock) -> Backend:
    if backend == "sqlite":
        return await open_backend(f"sqlite:///{folder / 'outbox.db'}", clock=clock)
    return await open_backend(POSTGRES_DSN, schema=new_schema(), clock=clock)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_claims_and_settles_follow_the_rules(backend: str, plan: list[tuple[Any, ...]]) -> None:
    async def check() -> None:
        clock = FakeClock()
        with tempfile.TemporaryDirectory() as tmp:
            ports = await opened(backend, Path(tmp), clock)
            try:
                await run(ports.outbox, clock, plan)
            finally:
                if isinstance(ports.worldmodel, PostgresStore):
                    await ports.worldmodel.drop_schema()
                await ports.close()

    asyncio.run(check())
