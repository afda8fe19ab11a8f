"""The operators' review actions on both backends: each decision is the queue's and the log's,
one of two racing operators wins, and a decision interrupted half-way completes on retry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from ehrbridge.confidence import Level
from ehrbridge.errors import InvalidInput, ItemClaimed, ItemDecided, NotFound, ReviewConflict
from ehrbridge.outbound.gates import Layer, SinkPolicy, candidate, decide
from ehrbridge.review.desk import ReviewDesk
from ehrbridge.review.queue import Flag, ReviewItem
from ehrbridge.storage import Backend
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.events import EventType
from ehrbridge.worldmodel.model import WorldModel
from tests.conftest import MakeBackend

WS = "clinic"


async def flagged(backend: Backend, entity_id: str = "p1", **data: Any) -> tuple[str, ReviewItem]:
    """A voice fact on ``Patient/<entity_id>``, flagged for a human: (its event id, the item)."""
    model = WorldModel(backend.worldmodel, WS)
    values = data or {"phone.mobile": "+16175550127"}
    result = await model.write_voice(
        "Patient", entity_id, values, level=Level.VOICE_CONFIRMED, agent="agent-1"
    )
    event_id = result.events[0].id
    flag = Flag(entity_type="Patient", entity_id=entity_id, event_id=event_id, reason="unsure")
    return event_id, await backend.review.flag(WS, flag)


def desk_on(backend: Backend, clock: FakeClock) -> ReviewDesk:
    return ReviewDesk(WorldModel(backend.worldmodel, WS), backend.review, clock=clock)


async def regrades(backend: Backend, event_id: str, entity_id: str = "p1") -> list[Any]:
    events = await backend.worldmodel.read_entity(WS, "Patient", entity_id)
    return [e for e in events if e.data.get("target") == event_id or e.supersedes == event_id]


async def blocked(backend: Backend, event_id: str, entity_id: str = "p1") -> Layer | None:
    events = await backend.worldmodel.read_entity(WS, "Patient", entity_id)
    state = await backend.worldmodel.get_state(WS, "Patient", entity_id)
    check = decide(candidate(events, event_id, state), SinkPolicy(sink="ehr")).blocked_by
    return None if check is None else check.layer


async def test_approve_regrades_every_flagged_fact_and_makes_it_eligible(
    backend: Backend, clock: FakeClock
) -> None:
    event_id, item = await flagged(backend)
    desk = desk_on(backend, clock)
    detail = await desk.detail(item.item_id)
    assert [e.id for e in detail.flagged] == [event_id] and detail.state is not None
    done = await desk.approve(item.item_id, "op-ana")
    assert done.status == "decided" and done.decision is not None
    (approval,) = await regrades(backend, event_id)
    assert approval.confidence == Level.HUMAN_APPROVED.value
    assert approval.source.kind == "operator" and approval.source.id == "op-ana"
    assert await blocked(backend, event_id) is None
    # the same operator again: the same answer, nothing written twice
    assert await desk.approve(item.item_id, "op-ana") == done
    assert len(await regrades(backend, event_id)) == 1
    with pytest.raises(ItemDecided, match="already approved by op-ana"):
        await desk.approve(item.item_id, "op-bo")
    with pytest.raises(ItemDecided):
        await desk.reject(item.item_id, "op-ana", "changed my mind")


async def test_reject_needs_a_reason_and_blocks_the_fact_for_good(
    backend: Backend, clock: FakeClock
) -> None:
    event_id, item = await flagged(backend)
    desk = desk_on(backend, clock)
    with pytest.raises(InvalidInput, match="needs a reason"):
        await desk.reject(item.item_id, "op-ana", "  ")
    assert await regrades(backend, event_id) == []
    await desk.reject(item.item_id, "op-ana", "the caller read someone else's number")
    (rejection,) = await regrades(backend, event_id)
    assert rejection.confidence == Level.REJECTED.value
    assert rejection.data["reason"] == "the caller read someone else's number"
    assert await blocked(backend, event_id) is Layer.HUMAN
    with pytest.raises(NotFound):
        await desk.approve("no-such-item", "op-ana")


async def test_a_correction_supersedes_the_fact_with_the_operators_value(
    backend: Backend, clock: FakeClock
) -> None:
    event_id, item = await flagged(backend)
    desk = desk_on(backend, clock)
    with pytest.raises(InvalidInput, match="names no field"):
        await desk.correct(item.item_id, "op-ana", {"email": "x@example.com"})
    await desk.correct(item.item_id, "op-ana", {"phone.mobile": "+16175550172"})
    (correction,) = await regrades(backend, event_id)
    assert correction.event_type is EventType.CORRECTED and correction.confidence == 1.0
    state = await backend.worldmodel.get_state(WS, "Patient", "p1")
    assert state is not None and state.values["phone.mobile"] == "+16175550172"
    events = await backend.worldmodel.read_entity(WS, "Patient", "p1")
    decision = decide(candidate(events, event_id, state), SinkPolicy(sink="ehr"))
    current = next(c for c in decision.checks if c.layer is Layer.CURRENT)
    assert not decision.eligible and not current.passed
    assert current.reason.startswith("corrected by op-ana")
    assert await blocked(backend, correction.id) is None  # the correction is what may go


async def test_a_claimed_item_is_the_claimants_until_the_claim_lapses(
    backend: Backend, clock: FakeClock
) -> None:
    _, item = await flagged(backend)
    desk = desk_on(backend, clock)
    await desk.claim(item.item_id, "op-ana")
    with pytest.raises(ItemClaimed, match="claimed by op-ana"):
        await desk.approve(item.item_id, "op-bo")
    clock.advance(desk.claim_ttl + timedelta(seconds=1))
    assert (await desk.approve(item.item_id, "op-bo")).decision is not None


async def test_a_decision_interrupted_before_its_events_completes_on_retry(
    backend: Backend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    event_id, item = await flagged(backend)
    desk = desk_on(backend, clock)

    async def dies(*args: Any, **kwargs: Any) -> Any:
        raise asyncio.CancelledError  # the process stops between the two steps

    monkeypatch.setattr(desk.model, "regrade", dies)
    with pytest.raises(asyncio.CancelledError):
        await desk.approve(item.item_id, "op-ana")
    monkeypatch.undo()
    assert (await backend.review.item(WS, item.item_id)).status == "decided"  # type: ignore[union-attr]
    assert await regrades(backend, event_id) == []
    await desk.approve(item.item_id, "op-ana")  # the operator tries again
    assert len(await regrades(backend, event_id)) == 1
    assert await blocked(backend, event_id) is None


async def test_two_operators_at_once_one_decision(
    make_backend: MakeBackend, clock: FakeClock
) -> None:
    backends = [await make_backend() for _ in range(2)]
    event_id, item = await flagged(backends[0])
    ana, bo = (desk_on(b, clock) for b in backends)
    results = await asyncio.gather(
        ana.approve(item.item_id, "op-ana"),
        bo.reject(item.item_id, "op-bo", "wrong"),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, ReviewItem)]
    assert len(wins) == 1 and isinstance(next(r for r in results if r not in wins), ReviewConflict)
    assert len(await regrades(backends[0], event_id)) == 1


async def test_a_batch_answers_each_item(backend: Backend, clock: FakeClock) -> None:
    _, first = await flagged(backend, "p1")
    _, second = await flagged(backend, "p2")
    desk = desk_on(backend, clock)
    await desk.reject(second.item_id, "op-bo", "duplicate")
    answers = await desk.batch([first.item_id, second.item_id, "nope"], "op-ana", "approved")
    assert isinstance(answers[first.item_id], ReviewItem)
    assert isinstance(answers[second.item_id], ItemDecided)
    assert isinstance(answers["nope"], NotFound)
    with pytest.raises(InvalidInput):
        await desk.batch([first.item_id], "op-ana", "corrected")
    assert [(d.priority, d.count) for d in await desk.depth()] == []
