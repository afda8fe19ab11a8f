"""The outbox's storage port, one contract on both backends: idempotent queueing, lanes served in
order one item at a time, parked heads that hold their lane only, leases that lapse into in-doubt
claims, fencing epochs that make a stale worker harmless, and concurrent claimers that never share
an item or a lane."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection

from ehrbridge.errors import InvalidInput, NotFound, OutboxConflict
from ehrbridge.outbound.outbox import (
    SINK_STATE_STALE,
    Attempt,
    Claim,
    ItemQuery,
    ItemStatus,
    NewItem,
    Outbox,
    Settle,
    item_key,
)
from ehrbridge.storage import Backend
from ehrbridge.storage.postgres.outbox import lane_lock, lock_lanes
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.store import LogPosition
from tests.conftest import POSTGRES_DSN, MakeBackend
from tests.integration.storage.raw import backend_name

WS = "clinic"
SINK = "ehr"
LEASE = timedelta(minutes=1)
#: how long a test waits for a wake-up before it fails (never a measurement)
WAKE_WAIT = 30


def new(n: int, patient: str = "p1", *, sink: str = SINK, event: str | None = None) -> NewItem:
    return NewItem(
        sink=sink,
        key=item_key(sink, f"e{n}"),
        lane=f"Patient/{patient}",
        entity_type="Patient",
        entity_id=patient,
        event_id=event or f"e{n}",
        operation="upsert",
        payload={"fields": {"phone.mobile": f"+1617555{n:04d}"}, "base": "3"},
    )


def ending(
    claim: Claim,
    clock: FakeClock,
    status: ItemStatus = ItemStatus.SYNCED,
    *,
    http: int = 200,
    detail: str = "",
    next_attempt_at: datetime | None = None,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> Settle:
    """How ``claim``'s attempt ends, as a dispatcher would say it."""
    outcome = {ItemStatus.PENDING: "retry", ItemStatus.DEAD: "dead"}.get(status, status.value)
    attempt = Attempt(
        item_id=claim.item.id,
        epoch=claim.epoch,
        started_at=clock(),
        finished_at=clock(),
        outcome=outcome,
        status=http,
        detail=detail,
    )
    return Settle(
        status=status,
        attempt=attempt,
        next_attempt_at=next_attempt_at,
        result=result,
        error=error,
    )


async def claim(outbox: Outbox, holder: str = "w1", limit: int = 10) -> list[Claim]:
    return await outbox.claim(WS, SINK, holder, limit=limit, lease=LEASE)


def lanes_of(claims: list[Claim]) -> list[tuple[str, int]]:
    return [(c.item.lane, c.item.position) for c in claims]


async def test_enqueue_is_idempotent_on_the_key(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    first = await outbox.enqueue(WS, [new(1), new(2), new(3, "p2")])
    assert [i.key for i in first] == [item_key(SINK, f"e{n}") for n in (1, 2, 3)]
    one = first[0]
    assert one.status is ItemStatus.PENDING and one.epoch == 0 and one.attempts == 0
    assert not one.in_doubt and one.holder is None and one.lease_until is None
    assert one.created_at == one.updated_at == one.next_attempt_at == clock()
    assert one.payload == new(1).payload and one.result is None and one.confirmed_at is None
    assert one.workspace == WS and one.lane == "Patient/p1" and one.event_id == "e1"
    assert first[0].position < first[1].position < first[2].position
    clock.advance()
    changed = NewItem(**{**new(1).__dict__, "payload": {"fields": {"phone.mobile": "other"}}})
    again = await outbox.enqueue(WS, [new(4), changed, new(2), new(4)])
    assert [i.id for i in again[1:3]] == [first[0].id, first[1].id]
    assert again[1] == first[0]  # an existing key is left as it is
    assert again[0].key == item_key(SINK, "e4") and again[0].position > first[2].position
    assert len(await outbox.items(WS, ItemQuery())) == 4
    assert await outbox.item(WS, first[0].id) == first[0]
    assert await outbox.item(WS, "no-such-item") is None
    assert await outbox.enqueue(WS, []) == []


async def test_enqueue_saves_the_feeders_cursor_in_its_transaction(backend: Backend) -> None:
    outbox = backend.outbox
    assert await outbox.cursor(WS, "feeder") is None
    await outbox.enqueue(WS, [new(1)], cursor=("feeder", LogPosition(tx=5, seq=9)))
    assert await outbox.cursor(WS, "feeder") == LogPosition(tx=5, seq=9)
    await outbox.enqueue(WS, [], cursor=("feeder", LogPosition(tx=7, seq=12)))
    assert await outbox.cursor(WS, "feeder") == LogPosition(tx=7, seq=12)
    with pytest.raises(InvalidInput):  # a refused batch saves no cursor either
        await outbox.enqueue(WS, [new(2, "")], cursor=("feeder", LogPosition(tx=8, seq=1)))
    assert await outbox.cursor(WS, "feeder") == LogPosition(tx=7, seq=12)
    assert await outbox.cursor(WS, "other") is None
    assert await outbox.cursor("elsewhere", "feeder") is None


async def test_bad_input_is_refused_by_name(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    with pytest.raises(InvalidInput, match="has no sink"):
        await outbox.enqueue(WS, [NewItem(**{**new(1).__dict__, "sink": ""})])
    with pytest.raises(InvalidInput, match="given twice"):
        await outbox.enqueue(WS, [new(1), NewItem(**{**new(1).__dict__, "operation": "x"})])
    with pytest.raises(InvalidInput, match="payload is not JSON"):
        await outbox.enqueue(WS, [NewItem(**{**new(1).__dict__, "payload": {"x": object()}})])
    with pytest.raises(InvalidInput, match="limit >= 1"):
        await outbox.claim(WS, SINK, "w1", limit=0, lease=LEASE)
    with pytest.raises(InvalidInput, match="lease"):
        await outbox.claim(WS, SINK, "w1", limit=1, lease=timedelta(0))
    with pytest.raises(InvalidInput, match="limit is 1 to"):
        await outbox.items(WS, ItemQuery(limit=0))
    assert await outbox.items(WS, ItemQuery()) == []  # nothing was queued
    await outbox.enqueue(WS, [new(1)])
    (held,) = await claim(outbox)
    with pytest.raises(InvalidInput, match="cannot end in skipped"):
        await outbox.settle(WS, held.item.id, held.epoch, ending(held, clock, ItemStatus.SKIPPED))
    with pytest.raises(InvalidInput, match="not JSON"):
        await outbox.save_sink_state(WS, SINK, "w1", {"x": object()})
    assert (await outbox.item(WS, held.item.id)) == held.item


async def test_an_attempt_may_cancel_its_item_and_free_the_lane(
    backend: Backend, clock: FakeClock
) -> None:
    """The dispatcher asks the gate again before sending: a fact refused now is cancelled."""
    outbox = backend.outbox
    await outbox.enqueue(WS, [new(1), new(2)])
    (held,) = await claim(outbox)
    assert await outbox.settle(
        WS, held.item.id, held.epoch, ending(held, clock, ItemStatus.CANCELLED)
    )
    assert (await outbox.item(WS, held.item.id)).status is ItemStatus.CANCELLED  # type: ignore[union-attr]
    (following,) = await claim(outbox)
    assert following.item.key == new(2).key


async def test_a_retry_may_stay_in_doubt(backend: Backend, clock: FakeClock) -> None:
    """A send cut off after the request went out is retried in doubt: looked up first."""
    outbox = backend.outbox
    await outbox.enqueue(WS, [new(1)])
    (held,) = await claim(outbox)
    assert await outbox.mark_sent(WS, held.item.id, held.epoch)
    cut = replace(ending(held, clock, ItemStatus.PENDING, error="reset"), in_doubt=True)
    assert await outbox.settle(WS, held.item.id, held.epoch, cut)
    (again,) = await claim(outbox)
    assert again.in_doubt and again.item.in_doubt
    plain = ending(again, clock, ItemStatus.PENDING, error="503")
    assert await outbox.settle(WS, again.item.id, again.epoch, plain)
    (third,) = await claim(outbox)
    assert not third.in_doubt  # the sink answered: nothing of it is in doubt any more


async def test_a_lane_goes_in_order_one_item_at_a_time(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    queued = await outbox.enqueue(WS, [new(1), new(2), new(3, "p2"), new(4), new(5, "p3")])
    first = await claim(outbox, limit=2)  # position order: p1's head, then p2's
    assert [c.item.id for c in first] == [queued[0].id, queued[2].id]
    assert all(c.epoch == 1 and not c.in_doubt for c in first)
    assert first[0].item.status is ItemStatus.PROCESSING and first[0].item.holder == "w1"
    assert first[0].item.lease_until == clock() + LEASE
    more = await claim(outbox, "w2")  # p1 and p2 are held: only p3's head is ready
    assert [c.item.id for c in more] == [queued[4].id]
    assert await claim(outbox, "w3") == []
    assert await outbox.settle(WS, first[0].item.id, 1, ending(first[0], clock))
    (second,) = await claim(outbox, "w3")
    assert second.item.id == queued[1].id  # p1's next, never p1's third before it
    assert await outbox.settle(WS, second.item.id, 1, ending(second, clock))
    (third,) = await claim(outbox, "w3")
    assert third.item.id == queued[3].id
    done = await outbox.item(WS, first[0].item.id)
    assert done is not None and done.status is ItemStatus.SYNCED and done.attempts == 1
    assert done.holder is None and done.lease_until is None


async def test_other_sinks_have_lanes_of_their_own(backend: Backend) -> None:
    outbox = backend.outbox
    await outbox.enqueue(WS, [new(1), new(2, sink="crm"), new(3)])
    ehr = await claim(outbox)
    crm = await outbox.claim(WS, "crm", "w1", limit=10, lease=LEASE)
    assert [c.item.event_id for c in ehr] == ["e1"] and [c.item.event_id for c in crm] == ["e2"]


async def test_a_parked_head_holds_its_lane_only(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    q = await outbox.enqueue(WS, [new(1), new(2), new(3, "p2"), new(4, "p2"), new(5, "p3")])
    heads = await claim(outbox)
    assert [c.item.id for c in heads] == [q[0].id, q[2].id, q[4].id]
    dead, conflict, ok = heads
    assert await outbox.settle(
        WS, dead.item.id, dead.epoch, ending(dead, clock, ItemStatus.DEAD, error="422: bad")
    )
    assert await outbox.settle(
        WS, conflict.item.id, conflict.epoch, ending(conflict, clock, ItemStatus.CONFLICT)
    )
    assert await outbox.settle(WS, ok.item.id, ok.epoch, ending(ok, clock))
    clock.advance(timedelta(days=1))
    assert await claim(outbox) == []  # p1 and p2 wait behind their parked heads
    parked = await outbox.item(WS, dead.item.id)
    assert parked is not None and parked.status is ItemStatus.DEAD
    assert parked.last_error == "422: bad" and parked.attempts == 1
    retried = await outbox.retry(WS, dead.item.id, "op-ana")
    assert retried.status is ItemStatus.PENDING and retried.attempts == 0
    assert retried.next_attempt_at == clock()
    skipped = await outbox.skip(WS, conflict.item.id, "op-ana", "changed at the front desk")
    assert (
        skipped.status is ItemStatus.SKIPPED and skipped.last_error == "changed at the front desk"
    )
    again = await claim(outbox)  # the retried head, and p2's next now that its head is skipped
    assert [c.item.id for c in again] == [q[0].id, q[3].id]
    assert again[0].epoch == 2
    outcomes = [a.outcome for a in await outbox.attempts(WS, dead.item.id)]
    assert outcomes == ["dead", "retried"]
    (skip_record,) = (await outbox.attempts(WS, conflict.item.id))[1:]
    assert skip_record.outcome == "skipped" and "op-ana" in skip_record.detail


async def test_retry_and_skip_act_on_parked_items_only(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    (pending, held, synced) = await outbox.enqueue(WS, [new(1), new(2, "p2"), new(3, "p3")])
    claims = {c.item.id: c for c in await claim(outbox, limit=3)}
    await outbox.release(WS, pending.id, claims[pending.id].epoch)
    done = claims[synced.id]
    await outbox.settle(WS, synced.id, done.epoch, ending(done, clock))
    for item in (pending, held, synced):
        before = await outbox.item(WS, item.id)
        with pytest.raises(OutboxConflict, match="only a dead or conflict item") as caught:
            await outbox.retry(WS, item.id, "op-ana")
        assert caught.value.item_id == item.id
        with pytest.raises(OutboxConflict):
            await outbox.skip(WS, item.id, "op-ana", "no")
        assert await outbox.item(WS, item.id) == before
    with pytest.raises(NotFound):
        await outbox.retry(WS, "no-such-item", "op-ana")
    with pytest.raises(NotFound):
        await outbox.skip(WS, "no-such-item", "op-ana", "no")


async def test_a_lapsed_lease_is_claimed_again_and_the_old_claim_changes_nothing(
    backend: Backend, clock: FakeClock
) -> None:
    outbox = backend.outbox
    (item,) = await outbox.enqueue(WS, [new(1)])
    (old,) = await claim(outbox, "w1")
    clock.advance(LEASE / 2)
    assert await claim(outbox, "w2") == []  # still held
    clock.advance(LEASE)
    (new_claim,) = await claim(outbox, "w2")
    assert new_claim.epoch == old.epoch + 1 and not new_claim.in_doubt  # never marked sent
    assert new_claim.item.holder == "w2"
    taken = await outbox.item(WS, item.id)
    # the stale worker: every write names its epoch and changes nothing
    assert await outbox.renew(WS, [(item.id, old.epoch)], "w1", LEASE) == set()
    assert not await outbox.mark_sent(WS, item.id, old.epoch)
    assert not await outbox.settle(WS, item.id, old.epoch, ending(old, clock))
    assert not await outbox.release(WS, item.id, old.epoch)
    assert await outbox.item(WS, item.id) == taken
    (lost,) = await outbox.attempts(WS, item.id)
    assert lost.outcome == "lost-lease" and lost.epoch == old.epoch and "w1" in lost.detail
    assert taken is not None and taken.attempts == 0  # a lost lease is not an attempt
    assert await outbox.settle(WS, item.id, new_claim.epoch, ending(new_claim, clock))
    assert not await outbox.settle(WS, item.id, new_claim.epoch, ending(new_claim, clock))


async def test_a_lease_that_lapses_after_a_send_started_is_in_doubt(
    backend: Backend, clock: FakeClock
) -> None:
    outbox = backend.outbox
    (item,) = await outbox.enqueue(WS, [new(1)])
    (first,) = await claim(outbox, "w1")
    assert await outbox.mark_sent(WS, item.id, first.epoch)
    marked = await outbox.item(WS, item.id)
    assert marked is not None and marked.in_doubt
    clock.advance(LEASE * 2)
    (second,) = await claim(outbox, "w2")
    assert second.in_doubt and second.item.in_doubt and second.epoch == first.epoch + 1
    (lost,) = await outbox.attempts(WS, item.id)
    assert "after a send started" in lost.detail
    found = ending(second, clock, result={"ref": "Patient/123", "version": "4"})
    assert await outbox.settle(WS, item.id, second.epoch, found)
    done = await outbox.item(WS, item.id)
    assert done is not None and not done.in_doubt and done.result == found.result
    # released after a send started: still in doubt when claimed again
    (other,) = await outbox.enqueue(WS, [new(2, "p2")])
    (held,) = await claim(outbox)
    assert await outbox.mark_sent(WS, other.id, held.epoch)
    assert await outbox.release(WS, other.id, held.epoch)
    (again,) = await claim(outbox)
    assert again.in_doubt


async def test_renew_keeps_a_lease_for_its_holder_only(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    items = await outbox.enqueue(WS, [new(1), new(2, "p2")])
    a, b = await claim(outbox, "w1")
    held = [(a.item.id, a.epoch), (b.item.id, b.epoch)]
    assert await outbox.renew(WS, held, "w2", LEASE) == set()  # not w2's
    clock.advance(LEASE * 3 / 4)
    assert await outbox.renew(WS, held[:1], "w1", LEASE) == {items[0].id}
    clock.advance(LEASE / 2)
    (taken,) = await claim(outbox, "w2")  # b lapsed; a was renewed
    assert taken.item.id == items[1].id
    assert await outbox.renew(WS, held, "w1", LEASE) == {items[0].id}
    assert await outbox.renew(WS, [], "w1", LEASE) == set()
    renewed = await outbox.item(WS, items[0].id)
    assert renewed is not None and renewed.lease_until == clock() + LEASE


async def test_a_retry_later_is_not_claimed_before_its_time(
    backend: Backend, clock: FakeClock
) -> None:
    outbox = backend.outbox
    item, behind = await outbox.enqueue(WS, [new(1), new(2)])
    (first,) = await claim(outbox)
    later = clock() + timedelta(minutes=5)
    retry = ending(first, clock, ItemStatus.PENDING, next_attempt_at=later, error="503", http=503)
    assert await outbox.settle(WS, item.id, first.epoch, retry)
    waiting = await outbox.item(WS, item.id)
    assert waiting is not None and waiting.status is ItemStatus.PENDING
    assert waiting.next_attempt_at == later and waiting.attempts == 1
    assert waiting.last_error == "503" and waiting.holder is None
    clock.advance(timedelta(minutes=4))
    assert await claim(outbox) == []  # nor the item behind it: the lane waits for its head
    clock.advance(timedelta(minutes=1))
    (second,) = await claim(outbox)
    assert second.item.id == item.id and second.epoch == 2 and second.item.attempts == 1
    assert behind.status is ItemStatus.PENDING


async def test_release_gives_a_claim_back_uncounted(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    (item,) = await outbox.enqueue(WS, [new(1)])
    (held,) = await claim(outbox)
    assert await outbox.release(WS, item.id, held.epoch)
    back = await outbox.item(WS, item.id)
    assert back is not None and back.status is ItemStatus.PENDING and back.attempts == 0
    assert back.holder is None and back.lease_until is None
    assert not await outbox.release(WS, item.id, held.epoch)  # not processing any more
    (again,) = await claim(outbox)
    assert again.epoch == held.epoch + 1
    assert await outbox.attempts(WS, item.id) == []


async def test_cancel_takes_pending_items_of_a_fact_only(
    backend: Backend, clock: FakeClock
) -> None:
    outbox = backend.outbox
    items = await outbox.enqueue(
        WS,
        [
            new(1, event="f1"),
            new(2, "p2", sink="crm", event="f1"),
            new(3, "p3", event="f1"),
            new(4, "p4", event="f2"),
        ],
    )
    (held,) = await outbox.claim(WS, "crm", "w1", limit=5, lease=LEASE)
    cancelled = await outbox.cancel(WS, "f1", "the fact was rejected")
    assert [i.id for i in cancelled] == [items[0].id, items[2].id]
    assert all(i.status is ItemStatus.CANCELLED for i in cancelled)
    assert cancelled[0].last_error == "the fact was rejected"
    processing = await outbox.item(WS, held.item.id)
    assert processing is not None and processing.status is ItemStatus.PROCESSING
    assert await outbox.cancel(WS, "f1", "again") == []
    # an item whose send started may be at the sink: not cancelled
    (sent,) = await claim(outbox)
    assert sent.item.id == items[3].id
    await outbox.mark_sent(WS, sent.item.id, sent.epoch)
    await outbox.release(WS, sent.item.id, sent.epoch)
    assert await outbox.cancel(WS, "f2", "rejected") == []
    assert [c.item.id for c in await claim(outbox)] == [items[3].id]


async def test_confirm_reopen_and_unconfirmed(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    one, two, three = await outbox.enqueue(WS, [new(1), new(2, "p2"), new(3, "p3")])
    for held in await claim(outbox):
        assert await outbox.settle(WS, held.item.id, held.epoch, ending(held, clock))
        clock.advance()
    soon = clock() + timedelta(seconds=1)
    assert [i.id for i in await outbox.unconfirmed(WS, SINK, synced_before=soon, limit=10)] == [
        one.id,
        two.id,
        three.id,
    ]
    assert [i.id for i in await outbox.unconfirmed(WS, SINK, synced_before=soon, limit=1)] == [
        one.id
    ]
    assert await outbox.unconfirmed(WS, "crm", synced_before=soon, limit=10) == []
    first_synced = clock() - timedelta(minutes=2)  # only the first was synced before it
    assert [
        i.id for i in await outbox.unconfirmed(WS, SINK, synced_before=first_synced, limit=10)
    ] == [one.id]
    assert await outbox.confirm(WS, one.id)
    assert not await outbox.confirm(WS, one.id)  # once
    confirmed = await outbox.item(WS, one.id)
    assert confirmed is not None and confirmed.confirmed_at == clock()
    assert not await outbox.reopen(WS, one.id, "not found")  # confirmed: stays
    assert await outbox.reopen(WS, two.id, "the read-back does not show it")
    reopened = await outbox.item(WS, two.id)
    assert reopened is not None and reopened.status is ItemStatus.PENDING
    assert reopened.next_attempt_at == clock()
    assert reopened.last_error == "the read-back does not show it"
    assert not await outbox.reopen(WS, two.id, "again")  # not synced now
    assert not await outbox.confirm(WS, two.id)
    unconfirmed = await outbox.unconfirmed(WS, SINK, synced_before=soon, limit=10)
    assert [i.id for i in unconfirmed] == [three.id]
    (again,) = await claim(outbox)
    assert again.item.id == two.id and again.epoch == 2
    assert not await outbox.confirm(WS, "no-such-item")
    assert not await outbox.reopen(WS, "no-such-item", "x")


async def test_a_reopened_head_waits_while_a_later_item_of_its_lane_is_held(
    backend: Backend, clock: FakeClock
) -> None:
    outbox = backend.outbox
    first, second = await outbox.enqueue(WS, [new(1), new(2)])
    (one,) = await claim(outbox)
    await outbox.settle(WS, first.id, one.epoch, ending(one, clock))
    (two,) = await claim(outbox)
    assert two.item.id == second.id
    assert await outbox.reopen(WS, first.id, "the read-back does not show it")
    assert await claim(outbox) == []  # the lane has an item in flight: one at a time
    await outbox.settle(WS, second.id, two.epoch, ending(two, clock))
    (again,) = await claim(outbox)
    assert again.item.id == first.id


async def test_depth_counts_open_and_parked_items_per_sink(
    backend: Backend, clock: FakeClock
) -> None:
    outbox = backend.outbox
    assert await outbox.depth(WS) == []
    t0 = clock()
    await outbox.enqueue(WS, [new(1), new(2, "p2"), new(3, "p3")])
    clock.advance()
    await outbox.enqueue(WS, [new(4, "p4"), new(5, sink="crm")])
    a, b, c, _ = await claim(outbox)
    await outbox.settle(WS, a.item.id, a.epoch, ending(a, clock, ItemStatus.DEAD))
    await outbox.settle(WS, b.item.id, b.epoch, ending(b, clock, ItemStatus.CONFLICT))
    await outbox.settle(WS, c.item.id, c.epoch, ending(c, clock))
    crm, ehr = await outbox.depth(WS)
    assert (ehr.sink, ehr.pending, ehr.processing, ehr.dead, ehr.conflict) == (SINK, 0, 1, 1, 1)
    assert ehr.oldest == t0 + timedelta(minutes=1)  # the open one was queued later
    assert (crm.sink, crm.pending, crm.processing, crm.oldest) == (
        "crm",
        1,
        0,
        t0 + timedelta(minutes=1),
    )
    await outbox.skip(WS, a.item.id, "op", "x")
    await outbox.skip(WS, b.item.id, "op", "x")
    ehr = (await outbox.depth(WS))[1]
    assert (ehr.pending, ehr.processing, ehr.dead, ehr.conflict) == (0, 1, 0, 0)


async def test_items_of_events_and_listings(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    steps = [
        NewItem(
            **{
                **new(10 + n, "p9", event="f9").__dict__,
                "workflow": "wf-1",
                "step": n,
                "operation": op,
            }
        )
        for n, op in enumerate(("create-appointment", "update-patient"))
    ]
    items = await outbox.enqueue(WS, [new(1, event="f1"), new(2, "p2", event="f2"), *steps])
    assert items[2].workflow == "wf-1" and items[3].step == 1
    found = await outbox.of_events(WS, ["f1", "f9", "none"])
    assert set(found) == {"f1", "f9"}
    assert [i.id for i in found["f9"]] == [items[2].id, items[3].id]
    assert await outbox.of_events(WS, []) == {}
    listed = await outbox.items(WS, ItemQuery())
    assert [i.id for i in listed] == [i.id for i in reversed(items)]  # newest first
    page = await outbox.items(WS, ItemQuery(limit=2))
    rest = await outbox.items(WS, ItemQuery(before=page[-1].position))
    assert [i.id for i in page + rest] == [i.id for i in listed]
    assert [i.id for i in await outbox.items(WS, ItemQuery(workflow="wf-1"))] == [
        items[3].id,
        items[2].id,
    ]
    assert [i.id for i in await outbox.items(WS, ItemQuery(event_id="f2"))] == [items[1].id]
    assert [i.id for i in await outbox.items(WS, ItemQuery(entity_id="p2"))] == [items[1].id]
    assert await outbox.items(WS, ItemQuery(sink="crm")) == []
    assert len(await outbox.items(WS, ItemQuery(entity_type="Patient", sink=SINK))) == 4
    (held, *_) = await claim(outbox)
    await outbox.settle(WS, held.item.id, held.epoch, ending(held, clock, ItemStatus.DEAD))
    dead = await outbox.items(WS, ItemQuery(status=ItemStatus.DEAD))
    assert [i.id for i in dead] == [held.item.id]


async def test_attempts_are_kept_in_order(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    (item,) = await outbox.enqueue(WS, [new(1)])
    details = []
    for n in range(3):
        (held,) = await claim(outbox)
        clock.advance(timedelta(seconds=10))
        retry = ending(held, clock, ItemStatus.PENDING, detail=f"try {n}", http=503)
        assert await outbox.settle(WS, item.id, held.epoch, retry)
        details.append(f"try {n}")
    (held,) = await claim(outbox)
    await outbox.settle(WS, item.id, held.epoch, ending(held, clock, http=201))
    attempts = await outbox.attempts(WS, item.id)
    assert [a.detail for a in attempts] == [*details, ""]
    assert [a.epoch for a in attempts] == [1, 2, 3, 4]
    assert [a.outcome for a in attempts] == ["retry", "retry", "retry", "synced"]
    assert [a.status for a in attempts] == [503, 503, 503, 201]
    assert attempts[0].item_id == item.id and attempts[0].started_at == attempts[0].finished_at
    done = await outbox.item(WS, item.id)
    assert done is not None and done.attempts == 4 and done.last_error is None


async def test_another_workspace_sees_nothing_and_changes_nothing(
    backend: Backend, clock: FakeClock
) -> None:
    outbox = backend.outbox
    (item, parked) = await outbox.enqueue(WS, [new(1), new(2, "p2")])
    await outbox.enqueue(WS, [], cursor=("feeder", LogPosition(tx=1, seq=1)))
    await outbox.save_sink_state(WS, SINK, "w1", {"circuit": "closed"})
    held, dead = await claim(outbox)
    await outbox.settle(WS, parked.id, dead.epoch, ending(dead, clock, ItemStatus.DEAD))
    before = [await outbox.item(WS, i) for i in (item.id, parked.id)]
    other = "elsewhere"
    assert await outbox.item(other, item.id) is None
    assert await outbox.items(other, ItemQuery()) == []
    assert await outbox.claim(other, SINK, "w2", limit=5, lease=LEASE) == []
    assert await outbox.renew(other, [(item.id, held.epoch)], "w1", LEASE) == set()
    assert not await outbox.mark_sent(other, item.id, held.epoch)
    assert not await outbox.settle(other, item.id, held.epoch, ending(held, clock))
    assert not await outbox.release(other, item.id, held.epoch)
    with pytest.raises(NotFound):
        await outbox.retry(other, parked.id, "op")
    with pytest.raises(NotFound):
        await outbox.skip(other, parked.id, "op", "x")
    assert await outbox.cancel(other, "e1", "x") == []
    assert not await outbox.confirm(other, item.id)
    assert not await outbox.reopen(other, item.id, "x")
    assert await outbox.attempts(other, parked.id) == []
    assert await outbox.of_events(other, ["e1", "e2"]) == {}
    assert await outbox.depth(other) == []
    assert await outbox.cursor(other, "feeder") is None
    assert await outbox.sink_states(other) == []
    assert await outbox.unconfirmed(other, SINK, synced_before=clock(), limit=5) == []
    assert [await outbox.item(WS, i) for i in (item.id, parked.id)] == before
    # the same key in another workspace is another item
    (theirs,) = await outbox.enqueue(other, [new(1)])
    assert theirs.id != item.id and theirs.status is ItemStatus.PENDING


async def test_sink_states_one_per_dispatcher_and_sink(backend: Backend, clock: FakeClock) -> None:
    outbox = backend.outbox
    assert await outbox.sink_states(WS) == []
    await outbox.save_sink_state(WS, SINK, "w1", {"circuit": "closed", "concurrency": 4})
    await outbox.save_sink_state(WS, "crm", "w1", {"circuit": "open"})
    clock.advance(SINK_STATE_STALE / 2)
    await outbox.save_sink_state(WS, SINK, "w2", {"circuit": "half-open", "rate": 2.5})
    await outbox.save_sink_state(WS, SINK, "w1", {"circuit": "open", "concurrency": 1})
    states = await outbox.sink_states(WS)
    assert [(s.sink, s.holder) for s in states] == [("crm", "w1"), (SINK, "w1"), (SINK, "w2")]
    assert states[1].state == {"circuit": "open", "concurrency": 1}
    assert states[2].state == {"circuit": "half-open", "rate": 2.5}
    assert states[1].updated_at == clock() and not any(s.stale for s in states)
    clock.advance(SINK_STATE_STALE * 3 / 4)
    assert [s.stale for s in await outbox.sink_states(WS)] == [True, False, False]


async def test_watch_wakes_on_what_makes_items_due(
    make_backend: MakeBackend, clock: FakeClock
) -> None:
    watcher = await make_backend()
    # On PostgreSQL any process's change wakes the watcher; on SQLite, this object's.
    writer = watcher if backend_name(watcher) == "sqlite" else await make_backend()
    outbox = writer.outbox
    woken = asyncio.Event()
    stop = await watcher.outbox.watch(WS, woken.set)

    async def wakes() -> None:
        await asyncio.wait_for(woken.wait(), WAKE_WAIT)
        woken.clear()

    try:
        await outbox.enqueue(WS, [new(1), new(2, "p2"), new(3, "p3")])
        await wakes()
        a, b, c = await claim(outbox)
        await outbox.settle(WS, a.item.id, a.epoch, ending(a, clock, ItemStatus.PENDING))
        await wakes()  # a retry due now
        await outbox.settle(WS, b.item.id, b.epoch, ending(b, clock, ItemStatus.DEAD))
        await outbox.retry(WS, b.item.id, "op")
        await wakes()
        await outbox.settle(WS, c.item.id, c.epoch, ending(c, clock))
        await outbox.reopen(WS, c.item.id, "not found")
        await wakes()
        (held, *_) = await claim(outbox)
        await outbox.release(WS, held.item.id, held.epoch)
        await wakes()
    finally:
        await stop()
    assert not woken.is_set()


async def test_concurrent_enqueues_of_one_key_make_one_item(make_backend: MakeBackend) -> None:
    outboxes = [(await make_backend()).outbox for _ in range(4)]
    batch = [new(n, f"p{n % 5}") for n in range(40)]
    results = await asyncio.gather(*(o.enqueue(WS, batch) for o in outboxes for _ in range(2)))
    ids = [[i.id for i in r] for r in results]
    assert all(r == ids[0] for r in ids)
    stored = await outboxes[0].items(WS, ItemQuery(limit=1000))
    assert len(stored) == 40 and {i.id for i in stored} == set(ids[0])


async def claimed_concurrently(outboxes: list[Outbox], workspace: str, clock: FakeClock) -> None:
    """Interleaved lanes, claimed and settled by every outbox at once, checked as they go."""
    lanes, per_lane = 12, 6
    queued = []
    for n in range(per_lane):  # lanes interleaved, as a feed would queue them
        queued += await outboxes[0].enqueue(
            workspace, [new(n * lanes + lane, f"p{lane}") for lane in range(lanes)]
        )
    in_flight: dict[str, str] = {}
    claimed: Counter[str] = Counter()
    delivered: dict[str, list[int]] = {}
    shared: list[str] = []

    async def work(outbox: Outbox, holder: str) -> None:
        idle = 0
        while sum(claimed.values()) < len(queued) and idle < 5000:
            claims = await outbox.claim(workspace, SINK, holder, limit=3, lease=LEASE)
            idle = 0 if claims else idle + 1
            for c in claims:
                claimed[c.item.id] += 1
                if c.item.lane in in_flight:
                    shared.append(c.item.lane)
                in_flight[c.item.lane] = c.item.id
            await asyncio.sleep(0)  # let the others claim meanwhile
            for c in claims:
                del in_flight[c.item.lane]
                delivered.setdefault(c.item.lane, []).append(c.item.position)
                assert await outbox.settle(workspace, c.item.id, c.epoch, ending(c, clock))

    await asyncio.gather(*(work(o, f"w{n}") for n, o in enumerate(outboxes)))
    assert shared == []  # never two items of one lane at once
    assert set(claimed.values()) == {1} and len(claimed) == len(queued)  # each once
    for lane, positions in delivered.items():
        assert positions == sorted(positions), lane  # each lane in its order
    stored = await outboxes[0].items(workspace, ItemQuery(limit=1000))
    assert all(i.status is ItemStatus.SYNCED and i.epoch == 1 for i in stored)


async def test_concurrent_claimers_never_share_an_item_nor_a_lane(
    make_backend: MakeBackend, clock: FakeClock
) -> None:
    outboxes = [(await make_backend()).outbox for _ in range(4)]
    for round_ in range(3):
        await claimed_concurrently(outboxes, f"round-{round_}", clock)


#: every port on PostgreSQL, and a raw connection to its schema
OnPostgres = tuple[Backend, AsyncConnection[Any]]


@pytest.fixture
async def postgres(make_backend: MakeBackend) -> AsyncIterator[OnPostgres]:
    """(every port on PostgreSQL, a raw connection to the same schema): another process's
    transaction, held open where the test wants it."""
    backend = await make_backend()
    if backend_name(backend) != "postgres":
        pytest.skip("PostgreSQL's row and advisory locks")
    assert isinstance(backend.worldmodel, PostgresStore)
    schema = backend.worldmodel.schema
    conn = await AsyncConnection.connect(POSTGRES_DSN, options=f"-c search_path={schema}")
    try:
        yield backend, conn
    finally:
        await conn.close()


async def test_a_claim_passes_over_an_item_another_claim_holds_without_waiting(
    postgres: OnPostgres,
) -> None:
    backend, other = postgres
    outbox = backend.outbox
    items = await outbox.enqueue(WS, [new(1), new(2), new(3, "p2")])
    # another claimer's transaction has locked p1's head and not finished
    await other.execute("SELECT id FROM outbox_items WHERE id = %s FOR UPDATE", (items[0].id,))
    claims = await asyncio.wait_for(claim(outbox), WAKE_WAIT)  # fails if the claim waits
    assert [c.item.id for c in claims] == [items[2].id]  # p1's head skipped, its next held back
    await other.rollback()
    assert [c.item.id for c in await claim(outbox)] == [items[0].id]


async def test_a_claim_passes_over_a_lane_a_reopen_is_changing(
    postgres: OnPostgres, clock: FakeClock
) -> None:
    backend, other = postgres
    outbox = backend.outbox
    first, second, elsewhere = await outbox.enqueue(WS, [new(1), new(2), new(3, "p2")])
    (held, _) = await claim(outbox)
    assert await outbox.settle(WS, first.id, held.epoch, ending(held, clock))
    # A reopen of p1's synced head, under the lane's lock as the adapter takes it, not yet
    # committed: a claim's snapshot still shows the head synced and p1's second item as ready.
    await lock_lanes(other, [lane_lock(WS, SINK, "Patient/p1")])
    await other.execute("UPDATE outbox_items SET status = 'pending' WHERE id = %s", (first.id,))
    assert await asyncio.wait_for(claim(outbox), WAKE_WAIT) == []  # p1 passed over, p2 held
    await other.commit()
    (again,) = await claim(outbox)
    assert again.item.id == first.id  # the reopened head, never the second beside it
    assert await claim(outbox) == []
    item = await outbox.item(WS, second.id)
    assert item is not None and item.status is ItemStatus.PENDING and elsewhere.id != item.id


async def test_claimers_feeders_and_reopens_at_once_keep_one_item_per_lane(
    make_backend: MakeBackend, clock: FakeClock
) -> None:
    outboxes = [(await make_backend()).outbox for _ in range(5)]
    rng = random.Random(7)
    queued: list[int] = [0]
    synced: list[str] = []
    in_flight: dict[str, str] = {}
    shared: list[str] = []

    async def work(outbox: Outbox, holder: str) -> None:
        for _ in range(150):
            roll = rng.random()
            if roll < 0.2:  # a feeder queues a few facts of random patients
                first = queued[0]
                queued[0] += 3
                batch = [new(n, f"p{rng.randrange(6)}") for n in range(first, first + 3)]
                await outbox.enqueue(WS, batch)
            elif roll < 0.3 and synced:  # the reconcile loop reopens a write it cannot see
                await outbox.reopen(WS, rng.choice(synced), "not at the sink")
            else:
                claims = await outbox.claim(WS, SINK, holder, limit=3, lease=LEASE)
                for c in claims:
                    if c.item.lane in in_flight:
                        shared.append(c.item.lane)
                    in_flight[c.item.lane] = c.item.id
                await asyncio.sleep(rng.random() / 500)  # a send
                for c in claims:
                    in_flight.pop(c.item.lane, None)
                    status = rng.choice([ItemStatus.SYNCED, ItemStatus.SYNCED, ItemStatus.PENDING])
                    assert await outbox.settle(WS, c.item.id, c.epoch, ending(c, clock, status))
                    if status is ItemStatus.SYNCED:
                        synced.append(c.item.id)

    await asyncio.gather(*(work(o, f"w{n}") for n, o in enumerate(outboxes)))
    assert shared == []
    assert queued[0] > 0 and synced
