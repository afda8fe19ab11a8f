"""The review queue's storage port, one contract on both backends: one open item per entity,
claims that lapse, decisions that stand, and no two operators both winning one item."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import pytest

from ehrbridge.errors import InvalidInput, ItemClaimed, ItemDecided, NotFound, ReviewConflict
from ehrbridge.review.queue import (
    URGENT,
    Flag,
    ItemQuery,
    ReviewItem,
    claimed,
    decided,
    unclaimed,
)
from ehrbridge.storage import Backend
from ehrbridge.testing import FakeClock
from tests.conftest import MakeBackend

WS = "clinic"
TTL = timedelta(minutes=15)


def flag(entity_id: str = "p1", event_id: str = "e1", **more: object) -> Flag:
    return Flag(
        entity_type=str(more.pop("entity_type", "Patient")),
        entity_id=entity_id,
        event_id=event_id,
        reason=str(more.pop("reason", "judge: unsure")),
        priority=int(more.pop("priority", 2)),  # type: ignore[call-overload]
    )


async def test_flags_of_one_entity_are_one_open_item(backend: Backend, clock: FakeClock) -> None:
    queue = backend.review
    first = await queue.flag(WS, flag(event_id="e1"))
    clock.advance()
    again = await queue.flag(WS, flag(event_id="e1"))
    more = await queue.flag(WS, flag(event_id="e2", reason="MedicationOrder", priority=URGENT))
    other = await queue.flag(WS, flag(entity_id="p2", event_id="e3"))
    assert again == first  # the same event flagged twice is one flag
    assert more.item_id == first.item_id and more.events == ("e1", "e2")
    assert more.priority == URGENT and more.reasons == ("judge: unsure", "MedicationOrder")
    assert more.reason == "judge: unsure" and more.created_at == first.created_at
    assert other.item_id != first.item_id
    assert await queue.item(WS, first.item_id) == more
    assert await queue.item("other", first.item_id) is None
    listed = await queue.items(WS, ItemQuery())
    assert [i.item_id for i in listed] == [more.item_id, other.item_id]  # urgent first
    depth = await queue.depth(WS)
    assert [(d.priority, d.count) for d in depth] == [(1, 1), (2, 1)]
    assert await queue.items("other", ItemQuery()) == []


async def test_a_decided_entity_gets_a_new_item_for_its_next_flag(
    backend: Backend, clock: FakeClock
) -> None:
    queue = backend.review
    item = await queue.flag(WS, flag(event_id="e1"))
    done = await queue.update(WS, item.item_id, lambda i: decided(i, "op-ana", "approved", clock()))
    assert done.status == "decided" and done.decision is not None
    assert done.decision.operator == "op-ana" and done.decision.outcome == "approved"
    later = await queue.flag(WS, flag(event_id="e2"))
    assert later.item_id != item.item_id and later.events == ("e2",)
    assert [i.item_id for i in await queue.items(WS, ItemQuery(status="decided"))] == [item.item_id]
    assert len(await queue.items(WS, ItemQuery(status=None))) == 2
    day = clock().astimezone(UTC).date()
    assert await queue.decided_per_day(WS, clock() - timedelta(days=1)) == [(day, 1)]
    assert await queue.decided_per_day(WS, clock() + timedelta(days=1)) == []
    assert await queue.decided_per_day("other", clock() - timedelta(days=1)) == []


async def test_a_claim_keeps_others_off_until_it_lapses(backend: Backend, clock: FakeClock) -> None:
    queue = backend.review
    item = await queue.flag(WS, flag())
    held = await queue.update(WS, item.item_id, lambda i: claimed(i, "op-ana", clock(), TTL))
    assert held.holder(clock()) == "op-ana"
    with pytest.raises(ItemClaimed, match="claimed by op-ana"):
        await queue.update(WS, item.item_id, lambda i: claimed(i, "op-bo", clock(), TTL))
    with pytest.raises(ItemClaimed):
        await queue.update(WS, item.item_id, lambda i: decided(i, "op-bo", "approved", clock()))
    with pytest.raises(ItemClaimed):
        await queue.update(WS, item.item_id, lambda i: unclaimed(i, "op-bo", clock()))
    clock.advance(TTL)  # a stale claim lapses
    taken = await queue.update(WS, item.item_id, lambda i: claimed(i, "op-bo", clock(), TTL))
    assert taken.holder(clock()) == "op-bo"
    free = await queue.update(WS, item.item_id, lambda i: unclaimed(i, "op-bo", clock()))
    assert free.claim is None and (await queue.item(WS, item.item_id)) == free


async def test_a_decided_item_refuses_every_action_and_a_rejection_needs_a_reason(
    backend: Backend, clock: FakeClock
) -> None:
    queue = backend.review
    item = await queue.flag(WS, flag())
    with pytest.raises(InvalidInput, match="needs a reason"):
        await queue.update(WS, item.item_id, lambda i: decided(i, "op-ana", "rejected", clock()))
    with pytest.raises(InvalidInput, match="a decision is one of"):
        await queue.update(WS, item.item_id, lambda i: decided(i, "op-ana", "maybe", clock()))
    assert (await queue.item(WS, item.item_id)) == item  # a refused change stores nothing
    await queue.update(
        WS, item.item_id, lambda i: decided(i, "op-ana", "rejected", clock(), "wrong number")
    )
    for action in (
        lambda i: claimed(i, "op-bo", clock(), TTL),
        lambda i: unclaimed(i, "op-ana", clock()),
        lambda i: decided(i, "op-bo", "approved", clock()),
    ):
        with pytest.raises(ItemDecided, match="already rejected by op-ana"):
            await queue.update(WS, item.item_id, action)
    with pytest.raises(NotFound):
        await queue.update(WS, "no-such-item", lambda i: i)
    with pytest.raises(NotFound):
        await queue.update("other", item.item_id, lambda i: i)


async def test_two_operators_deciding_one_item_at_once_one_wins(
    make_backend: MakeBackend, clock: FakeClock
) -> None:
    queues = [(await make_backend()).review for _ in range(2)]
    for n in range(5):
        item = await queues[0].flag(WS, flag(entity_id=f"p{n}"))

        def approve(who: str) -> Callable[[ReviewItem], ReviewItem]:
            return lambda i: decided(i, who, "approved", clock())

        results = await asyncio.gather(
            *(
                q.update(WS, item.item_id, approve(who))
                for q, who in zip(queues, ("op-ana", "op-bo"), strict=True)
            ),
            return_exceptions=True,
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        assert len(wins) == 1, results
        assert all(isinstance(r, ReviewConflict) for r in results if r not in wins)
        stored = await queues[1].item(WS, item.item_id)
        assert stored is not None and stored.decision == wins[0].decision


async def test_racing_flags_of_one_entity_open_one_item(make_backend: MakeBackend) -> None:
    queues = [(await make_backend()).review for _ in range(3)]
    for n in range(5):
        items = await asyncio.gather(
            *(
                q.flag(WS, flag(entity_id=f"p{n}", event_id=f"e{n}-{k}"))
                for k, q in enumerate(queues)
            )
        )
        assert len({i.item_id for i in items}) == 1
        stored = await queues[0].item(WS, items[0].item_id)
        assert stored is not None
        assert sorted(stored.events) == sorted(f"e{n}-{k}" for k in range(3))


async def test_items_are_filtered_by_type_reason_priority_and_age(
    backend: Backend, clock: FakeClock
) -> None:
    queue = backend.review
    old = await queue.flag(WS, flag(entity_id="m1", entity_type="MedicationOrder", reason="meds"))
    clock.advance(timedelta(hours=2))
    new = await queue.flag(WS, flag(entity_id="p1", priority=URGENT))

    async def by(**query: Any) -> list[ReviewItem]:
        return await queue.items(WS, ItemQuery(**query))

    assert [i.item_id for i in await by(entity_type="MedicationOrder")] == [old.item_id]
    assert [i.item_id for i in await by(reason="unsure")] == [new.item_id]
    assert [i.item_id for i in await by(priority=URGENT)] == [new.item_id]
    hour_ago = clock() - timedelta(hours=1)
    assert [i.item_id for i in await by(created_before=hour_ago)] == [old.item_id]
    assert [i.item_id for i in await by(limit=1)] == [new.item_id]
    with pytest.raises(InvalidInput):
        await by(limit=0)
    with pytest.raises(InvalidInput):
        await by(created_before=hour_ago.replace(tzinfo=None))
