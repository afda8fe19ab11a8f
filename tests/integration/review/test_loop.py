"""The review loop on both backends: every voice fact judged once, its verdict an event, what a
human must see on the queue, and nothing judged twice or skipped after a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from ehrbridge.confidence import Level
from ehrbridge.outbound.gates import Layer, SinkPolicy, candidate, decide
from ehrbridge.review.loop import ReviewLoop, ReviewPolicy
from ehrbridge.review.queue import URGENT, Flag, ItemQuery, ReviewItem
from ehrbridge.review.verdicts import Case, Outcome, Route, Verdict
from ehrbridge.storage import Backend
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.events import EventType
from ehrbridge.worldmodel.model import WorldModel
from tests.conftest import MakeBackend

WS = "clinic"
CALL = "call-1"
TRANSCRIPT = """Agent: What's the new number?
Caller: It's six one seven, five five five, oh one two seven.
Agent: Six one seven, five five five, zero one two seven?
Caller: Yep, that's it.
"""


class ScriptedJudge:
    """A judge whose answers the test sets per (field, value); it counts what it was asked."""

    name = "scripted"
    version = "1"

    def __init__(self, answers: Mapping[tuple[str, Any], Outcome]) -> None:
        self.answers = dict(answers)
        self.asked: list[Case] = []

    async def judge(self, case: Case) -> Verdict:
        self.asked.append(case)
        outcome = self.answers.get((case.fact.field, case.fact.value), Outcome.UNSURE)
        if outcome == "raise":
            raise RuntimeError("the judge broke")
        return Verdict(
            outcome=outcome,
            judge=self.name,
            version=self.version,
            reason=f"scripted {outcome.value} in turn 1",
        )


async def call(
    model: WorldModel, transcript: str | None = TRANSCRIPT, *, call_id: str = CALL
) -> None:
    data: dict[str, Any] = {"started_at": "2026-11-16T09:12:00-05:00"}
    if transcript is not None:
        data["transcript"] = transcript
    await model.write_voice("Call", call_id, data, level=Level.VOICE_CONFIRMED, agent="agent-1")


async def fact(
    model: WorldModel,
    entity: str,
    data: Mapping[str, Any],
    *,
    call_id: str | None = CALL,
) -> str:
    entity_type, entity_id = entity.split("/")
    result = await model.write_voice(
        entity_type, entity_id, data, level=Level.VOICE_CONFIRMED, agent="agent-1", call_id=call_id
    )
    return result.events[0].id


def loop_on(backend: Backend, judge: ScriptedJudge, **policy: Any) -> ReviewLoop:
    return ReviewLoop(
        backend.worldmodel,
        backend.review,
        backend.runner,
        judge,
        workspace=WS,
        policy=ReviewPolicy(**policy),
    )


async def verdicts_of(backend: Backend, entity: str, event_id: str) -> list[Any]:
    entity_type, entity_id = entity.split("/")
    events = await backend.worldmodel.read_entity(WS, entity_type, entity_id)
    return [
        e for e in events if e.event_type is EventType.REGRADED and e.data.get("target") == event_id
    ]


async def gate(backend: Backend, entity: str, event_id: str) -> Layer | None:
    entity_type, entity_id = entity.split("/")
    events = await backend.worldmodel.read_entity(WS, entity_type, entity_id)
    state = await backend.worldmodel.get_state(WS, entity_type, entity_id)
    blocked = decide(candidate(events, event_id, state), SinkPolicy(sink="ehr")).blocked_by
    return None if blocked is None else blocked.layer


async def open_items(backend: Backend) -> list[ReviewItem]:
    return await backend.review.items(WS, ItemQuery())


async def test_a_supported_fact_is_verified_once_and_becomes_eligible(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    await call(model)
    phone = await fact(model, "Patient/p1", {"phone.mobile": "+16175550127"})
    assert await gate(backend, "Patient/p1", phone) is Layer.CONFIDENCE
    judge = ScriptedJudge({("phone.mobile", "+16175550127"): Outcome.SUPPORTED})
    loop = loop_on(backend, judge)
    result = await loop.step()
    assert result.judged == 1 and result.routes == {"verified": 1}
    (verdict,) = await verdicts_of(backend, "Patient/p1", phone)
    assert verdict.confidence == Level.VERIFIED.value
    assert verdict.source.kind == "review" and verdict.source.id == "scripted/1"
    assert verdict.evidence["verdict"]["outcome"] == "supported"
    assert await gate(backend, "Patient/p1", phone) is None
    # the judge read the call: turns with speakers, the call's start, the clinic's zone
    (case,) = judge.asked
    assert [t.speaker for t in case.transcript] == ["agent", "caller", "agent", "caller"]
    assert case.call_started_at.isoformat() == "2026-11-16T09:12:00-05:00"
    assert case.fact.level == "confirmed"
    # the cursor moved past it: a second step judges nothing, even from a new loop
    assert (await loop.step()).judged == 0
    assert (await loop_on(backend, judge).step()).judged == 0
    assert len(judge.asked) == 1 and await open_items(backend) == []


async def test_unsure_and_contradicted_facts_go_where_policy_says(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    await call(model)
    unsure = await fact(model, "Patient/p1", {"email": "ana@example.com"})
    wrong = await fact(model, "Patient/p2", {"phone.mobile": "+16175550172"})
    judge = ScriptedJudge({("phone.mobile", "+16175550172"): Outcome.CONTRADICTED})
    await loop_on(backend, judge).step()
    (kept,) = await verdicts_of(backend, "Patient/p1", unsure)
    assert kept.confidence == Level.VOICE_CONFIRMED.value  # unchanged: a human decides
    assert kept.evidence["verdict"]["outcome"] == "unsure"
    (rejected,) = await verdicts_of(backend, "Patient/p2", wrong)
    assert rejected.confidence == Level.REJECTED.value
    (item,) = await open_items(backend)
    assert (item.entity_id, item.events) == ("p1", (unsure,))
    assert item.reason == "scripted: unsure: scripted unsure in turn 1"
    assert await gate(backend, "Patient/p1", unsure) is Layer.JUDGE
    assert await gate(backend, "Patient/p2", wrong) is not None

    # with "contradictions to a human", the contradicted fact keeps its confidence, urgently
    model_b = WorldModel(backend.worldmodel, WS)
    again = await fact(model_b, "Patient/p3", {"phone.mobile": "+16175550172"})
    await loop_on(backend, judge, contradicted=Route.HUMAN).step()
    (held,) = await verdicts_of(backend, "Patient/p3", again)
    assert held.confidence == Level.VOICE_CONFIRMED.value
    urgent = [i for i in await open_items(backend) if i.entity_id == "p3"]
    assert len(urgent) == 1 and urgent[0].priority == URGENT


async def test_no_transcript_a_broken_judge_or_a_policy_type_means_a_human(
    backend: Backend,
) -> None:
    model = WorldModel(backend.worldmodel, WS)
    orphan = await fact(model, "Patient/p1", {"language": "es"}, call_id=None)
    await call(model, transcript=None)
    silent = await fact(model, "Patient/p2", {"language": "es"})
    judge = ScriptedJudge({("medication.display", "warfarin 5 mg"): Outcome.SUPPORTED})
    await call(model, call_id="call-2")
    medicine = await fact(
        model, "MedicationOrder/m1", {"medication.display": "warfarin 5 mg"}, call_id="call-2"
    )
    await loop_on(backend, judge).step()
    items = {i.entity_id: i for i in await open_items(backend)}
    assert items["p1"].reason == "scripted: unsure: the fact names no call"
    assert items["p2"].reason == f"scripted: unsure: call {CALL} has no transcript"
    assert items["m1"].reason == "MedicationOrder facts always need a human review"
    (verified,) = await verdicts_of(backend, "MedicationOrder/m1", medicine)
    assert verified.confidence == Level.VERIFIED.value  # verified, and still for a human
    assert await gate(backend, "Patient/p1", orphan) is Layer.JUDGE
    assert await gate(backend, "Patient/p2", silent) is Layer.JUDGE

    broken = ScriptedJudge({("phone.mobile", "+16175550127"): "raise"})  # type: ignore[dict-item]
    failing = await fact(model, "Patient/p4", {"phone.mobile": "+16175550127"}, call_id="call-2")
    await loop_on(backend, broken).step()
    (kept,) = await verdicts_of(backend, "Patient/p4", failing)
    assert "the judge failed (RuntimeError)" in kept.evidence["verdict"]["reason"]
    assert any(i.entity_id == "p4" for i in await open_items(backend))


async def test_several_flagged_facts_of_one_entity_are_one_item(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    await call(model)
    first = await fact(model, "Patient/p1", {"email": "ana@example.com"})
    second = await fact(model, "Patient/p1", {"language": "es"})
    await loop_on(backend, ScriptedJudge({})).step()
    (item,) = await open_items(backend)
    assert item.events == (first, second)


class Crashing:
    """A review queue that dies on its first flag, as a process killed right after the verdict
    was written would."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def flag(self, workspace: str, flag: Flag) -> ReviewItem:
        raise asyncio.CancelledError


async def test_a_crash_between_verdict_and_flag_judges_nothing_twice(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    await call(model)
    event_id = await fact(model, "Patient/p1", {"email": "ana@example.com"})
    judge = ScriptedJudge({})
    crashing = replace_queue(loop_on(backend, judge), Crashing(backend.review))
    with pytest.raises(asyncio.CancelledError):
        await crashing.step()
    assert len(await verdicts_of(backend, "Patient/p1", event_id)) == 1
    assert await open_items(backend) == []  # the flag was lost with the process
    restarted = loop_on(backend, judge)
    result = await restarted.step()
    assert (result.judged, result.replayed) == (0, 1)  # the stored verdict, not a new one
    assert len(judge.asked) == 1
    assert len(await verdicts_of(backend, "Patient/p1", event_id)) == 1
    (item,) = await open_items(backend)
    assert item.events == (event_id,)


def replace_queue(loop: ReviewLoop, queue: Any) -> ReviewLoop:
    loop.queue = queue
    return loop


async def test_the_loop_is_woken_by_a_write_and_stops_when_told(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    await call(model)
    judge = ScriptedJudge({("phone.mobile", "+16175550127"): Outcome.SUPPORTED})
    loop = loop_on(backend, judge, catch_up=replace_catch_up())
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.05)
    event_id = await fact(model, "Patient/p1", {"phone.mobile": "+16175550127"})
    loop.wake()
    for _ in range(200):
        if await verdicts_of(backend, "Patient/p1", event_id):
            break
        await asyncio.sleep(0.01)
    assert await verdicts_of(backend, "Patient/p1", event_id)
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_an_append_wakes_the_loop_from_another_connection_on_postgres(
    make_backend: MakeBackend,
) -> None:
    reader, writer = await make_backend(), await make_backend()
    name = "sqlite" if isinstance(reader.worldmodel, SQLiteStore) else "postgres"
    # on SQLite only the appends through the loop's own store wake it (one process)
    source = reader if name == "sqlite" else writer
    model = WorldModel(source.worldmodel, WS)
    await call(model)
    judge = ScriptedJudge({("phone.mobile", "+16175550127"): Outcome.SUPPORTED})
    loop = loop_on(reader, judge, catch_up=replace_catch_up())
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.2)  # the first step has run and the loop waits, listening
    event_id = await fact(model, "Patient/p1", {"phone.mobile": "+16175550127"})
    for _ in range(300):
        if await verdicts_of(reader, "Patient/p1", event_id):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert await verdicts_of(reader, "Patient/p1", event_id), f"not woken on {name}"


def replace_catch_up() -> Any:
    from datetime import timedelta

    return timedelta(hours=1)  # only the wake-up can start the step in time


def test_policy_names_what_always_needs_a_human() -> None:
    policy = ReviewPolicy(human_fields=frozenset({"Patient.name.family"}))
    assert policy.needs_human("Patient", ["name.family"]) == (
        "Patient.name.family always needs a human review"
    )
    assert policy.needs_human("Patient", ["phone.mobile"]) is None
    assert policy.needs_human("AllergyIntolerance", ["substance"]) is not None
    assert replace(policy, human_types=frozenset()).needs_human("MedicationOrder", []) is None


async def test_one_loop_of_a_workspace_judges_at_a_time(make_backend: MakeBackend) -> None:
    first, second = await make_backend(), await make_backend()
    model = WorldModel(first.worldmodel, WS)
    await call(model)
    await fact(model, "Patient/p1", {"phone.mobile": "+16175550127"})
    judges = [ScriptedJudge({}), ScriptedJudge({})]
    loops = [
        ReviewLoop(
            b.worldmodel,
            b.review,
            b.runner,
            j,
            workspace=WS,
            leases=b.runner,
            holder=f"runner-{n}",
        )
        for n, (b, j) in enumerate(zip((first, second), judges, strict=True))
    ]
    done = await loops[0].turn()
    assert done is not None and done.judged == 1
    await fact(model, "Patient/p2", {"phone.mobile": "+16175550127"})
    assert await loops[1].turn() is None  # the first loop holds the lease
    assert judges[1].asked == []
    await loops[0].release()
    taken = await loops[1].turn()
    assert taken is not None and taken.judged == 1
    assert [c.fact.value for c in judges[1].asked] == ["+16175550127"]
    held = await second.runner.holder(WS, "review")
    assert held is not None and held.holder == "runner-1"
