"""Projection (docs/design.md §5.3): the six worked examples, and the incremental ledger held
equal to the specification (:func:`projection.project`) and to a rebuild by a property test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel import projection
from ehrbridge.worldmodel.events import (
    ASSERTING,
    Event,
    EventType,
    NewEvent,
    Observation,
    RecordKey,
    Source,
)
from ehrbridge.worldmodel.projection import EntityState

WS = "clinic"
DAY = datetime(2026, 11, 20, tzinfo=UTC)
PHONE_A = "+16175550101"
PHONE_B = "+16175550102"
PHONE_C = "+16175550103"
EHR_RECORD = RecordKey(data_source="ehr", resource_type="Patient", external_id="123")
VOICE = Source(kind="voice", id="agent-1")
JUDGE = Source(kind="review", id="judge")
OPERATOR = Source(kind="operator", id="op-1")


def at(hhmm: str) -> datetime:
    hours, minutes = hhmm.split(":")
    return DAY.replace(hour=int(hours), minute=int(minutes))


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(tmp_path / "projection.db", clock=clock)
    yield opened
    await opened.close()


@dataclass
class Story:
    """The running example of §5.3: one patient, the EHR, a voice agent, the judge, an operator."""

    store: SQLiteStore
    clock: FakeClock
    entity_id: str = "p1"

    async def ehr(self, when: str, **data: Any) -> Event | None:
        """The EHR is polled at ``when``; its record now holds ``data`` (a full snapshot)."""
        self.clock.now = at(when)
        (result,) = await self.store.append(
            WS,
            [
                Observation(
                    workspace=WS,
                    record=EHR_RECORD,
                    entity_type="Patient",
                    entity_id=self.entity_id,
                    data={_path(k): v for k, v in data.items()},
                    effective_at=at(when),
                )
            ],
        )
        assert result.entity_id == self.entity_id
        return result.events[0] if result.events else None

    async def voice(self, when: str, **data: Any) -> Event:
        """The caller confirms ``data`` on a call at ``when``."""
        return await self._one(when, EventType.RECORDED, data, VOICE, 0.5)

    async def regrade(self, when: str, target: Event, source: Source, confidence: float) -> Event:
        return await self._one(when, EventType.REGRADED, {"target": target.id}, source, confidence)

    async def _one(
        self, when: str, kind: EventType, data: Mapping[str, Any], source: Source, c: float
    ) -> Event:
        self.clock.now = at(when)
        (result,) = await self.store.append(
            WS,
            [
                NewEvent(
                    workspace=WS,
                    entity_type="Patient",
                    entity_id=self.entity_id,
                    event_type=kind,
                    data={_path(k): v for k, v in data.items()},
                    source=source,
                    confidence=c,
                    effective_at=at(when),
                    correlation_id="call-1" if source.kind == "voice" else None,
                )
            ],
        )
        return result.events[0]

    async def state(self) -> EntityState:
        state = await self.store.get_state(WS, "Patient", self.entity_id)
        assert state is not None
        # The stored, incrementally kept state is what the specification says.
        spec = projection.project(await self.store.read_entity(WS, "Patient", self.entity_id), WS)
        assert spec is not None
        assert (spec.fields, spec.pending, spec.version) == (
            state.fields,
            state.pending,
            state.version,
        )
        return state


def _path(name: str) -> str:
    return {"phone": "phone.mobile", "city": "address.city", "family": "name.family"}.get(
        name, name
    )


@pytest.fixture
def story(store: SQLiteStore, clock: FakeClock) -> Story:
    return Story(store=store, clock=clock)


def pending_values(state: EntityState, path: str = "phone.mobile") -> list[Any]:
    return [p.value for p in state.pending.get(path, ())]


async def example_1(story: Story) -> tuple[Event, Event]:
    ehr = await story.ehr("09:00", family="Diaz", city="Boston", phone=PHONE_A)
    assert ehr is not None
    voice = await story.voice("10:00", phone=PHONE_B)
    return ehr, voice


async def test_1_voice_below_the_ehr_is_pending(story: Story) -> None:
    """EHR 1.0 phone=A at 09:00; voice 0.5 phone=B at 10:00 -> phone=A, B pending."""
    ehr, voice = await example_1(story)

    state = await story.state()
    phone = state.fields["phone.mobile"]
    assert phone.value == PHONE_A
    assert (phone.confidence, phone.source.kind, phone.effective_at) == (1.0, "ehr", at("09:00"))
    assert phone.event_id == ehr.id
    (waiting,) = state.pending["phone.mobile"]
    assert (waiting.value, waiting.confidence, waiting.event_id) == (PHONE_B, 0.5, voice.id)
    assert waiting.source == VOICE
    assert state.conflicts == ()


async def test_2_judge_verifies_voice_and_it_wins(story: Story) -> None:
    """Judge verifies B (0.8) -> phone=B."""
    _, voice = await example_1(story)
    await story.regrade("10:05", voice, JUDGE, 0.8)

    state = await story.state()
    phone = state.fields["phone.mobile"]
    assert (phone.value, phone.confidence, phone.event_id) == (PHONE_B, 0.8, voice.id)
    assert phone.source.kind == "voice"
    assert pending_values(state) == []
    # The verified voice value and the EHR's are an hour apart: outside the conflict window.
    assert state.conflicts == ()
    assert state.values["name.family"] == "Diaz"


async def test_3_repoll_with_an_unrelated_change_keeps_the_verified_value(story: Story) -> None:
    """EHR re-polled at 10:30 with an unrelated change, phone still A -> phone stays B."""
    _, voice = await example_1(story)
    await story.regrade("10:05", voice, JUDGE, 0.8)
    repoll = await story.ehr("10:30", family="Diaz", city="Cambridge", phone=PHONE_A)

    assert repoll is not None
    assert repoll.fields == ("address.city",)  # the old phone is not asserted again
    state = await story.state()
    assert state.fields["phone.mobile"].value == PHONE_B
    assert state.fields["phone.mobile"].event_id == voice.id
    assert state.values["address.city"] == "Cambridge"
    assert state.fields["address.city"].effective_at == at("10:30")


async def test_4_writeback_lands_and_the_ehr_agrees(story: Story) -> None:
    """Writeback lands; EHR now has B at 10:45 -> phone=B, from the EHR, no conflict."""
    _, voice = await example_1(story)
    await story.regrade("10:05", voice, JUDGE, 0.8)
    await story.ehr("10:30", family="Diaz", city="Cambridge", phone=PHONE_A)
    landed = await story.ehr("10:45", family="Diaz", city="Cambridge", phone=PHONE_B)

    assert landed is not None
    state = await story.state()
    phone = state.fields["phone.mobile"]
    assert (phone.value, phone.source.kind, phone.confidence) == (PHONE_B, "ehr", 1.0)
    assert phone.event_id == landed.id
    assert phone.effective_at == at("10:45")
    assert pending_values(state) == []
    assert state.conflicts == ()
    assert await story.store.conflicts(WS) == []


async def test_5_front_desk_change_while_writeback_queued(story: Story) -> None:
    """Front desk changes the EHR phone to C at 10:50 while B's writeback is still queued ->
    phone=C, and B is still pending (the outbound side is tested with the outbox)."""
    _, voice = await example_1(story)
    await story.regrade("10:05", voice, JUDGE, 0.8)
    await story.ehr("10:30", family="Diaz", city="Cambridge", phone=PHONE_A)
    desk = await story.ehr("10:50", family="Diaz", city="Cambridge", phone=PHONE_C)

    assert desk is not None
    state = await story.state()
    phone = state.fields["phone.mobile"]
    assert (phone.value, phone.source.kind, phone.event_id) == (PHONE_C, "ehr", desk.id)
    (waiting,) = state.pending["phone.mobile"]
    assert (waiting.value, waiting.confidence, waiting.event_id) == (PHONE_B, 0.8, voice.id)
    # The EHR's own earlier A is replaced by its newer C, not pending.
    assert PHONE_A not in pending_values(state)


async def test_6_operator_rejects_a_voice_event(story: Story) -> None:
    """Operator rejects a voice event -> it drops out of the projection."""
    ehr, _ = await example_1(story)
    voice = await story.voice("10:10", phone=PHONE_B, language="es")
    await story.regrade("10:15", voice, JUDGE, 0.8)
    verified = await story.state()
    assert verified.values["phone.mobile"] == PHONE_B
    assert verified.values["language"] == "es"

    await story.regrade("10:20", voice, OPERATOR, 0.0)

    state = await story.state()
    assert state.fields["phone.mobile"].value == PHONE_A
    assert state.fields["phone.mobile"].event_id == ehr.id
    # Neither shown as the value nor as pending: the rejected event is gone from the projection.
    assert all(p.event_id != voice.id for ps in state.pending.values() for p in ps)
    assert "language" not in state.fields
    assert "language" not in state.pending
    # The first voice event (not rejected) is still pending.
    assert pending_values(state) == [PHONE_B]
    # The log keeps who decided what.
    kinds = [
        (e.event_type, e.source.kind) for e in await story.store.read_entity(WS, "Patient", "p1")
    ]
    assert kinds[-1] == (EventType.REGRADED, "operator")


# --- property: incremental == specification == rebuild ----------------------------------------

FIELDS = ("name.family", "language", "mrn")
VALUES = ("x", "y", "z")
RECORDS = (
    RecordKey(data_source="ehr-a", resource_type="Patient", external_id="1"),
    RecordKey(data_source="ehr-b", resource_type="Patient", external_id="2"),
)
values = st.sampled_from(VALUES)
times = st.integers(min_value=0, max_value=180).map(lambda m: at("09:00") + timedelta(minutes=m))
some_fields = st.dictionaries(st.sampled_from(FIELDS), values, min_size=1)


def same(state: EntityState | None, other: EntityState | None) -> bool:
    if state is None or other is None:
        return state is other
    return (state.fields, state.pending, state.version, state.conflicts) == (
        other.fields,
        other.pending,
        other.version,
        other.conflicts,
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_incremental_state_equals_specification_and_rebuild(data: st.DataObject) -> None:
    clock = FakeClock(at("09:00"))
    store = await SQLiteStore.open(":memory:", clock=clock)
    try:
        events: list[Event] = []
        steps = data.draw(st.integers(min_value=1, max_value=12), label="steps")
        for _ in range(steps):
            clock.advance(timedelta(minutes=data.draw(st.integers(0, 3))))
            kinds = ["ehr", "voice"] + (["regrade", "correct"] if events else [])
            kind = data.draw(st.sampled_from(kinds), label="kind")
            item: NewEvent | Observation
            if kind == "ehr":
                item = Observation(
                    workspace=WS,
                    record=data.draw(st.sampled_from(RECORDS), label="record"),
                    entity_type="Patient",
                    entity_id="p1",
                    data=data.draw(st.dictionaries(st.sampled_from(FIELDS), values), label="data"),
                    effective_at=data.draw(times, label="effective_at"),
                )
            elif kind == "voice":
                item = NewEvent(
                    workspace=WS,
                    entity_type="Patient",
                    entity_id="p1",
                    data=data.draw(some_fields, label="data"),
                    source=VOICE,
                    confidence=data.draw(st.sampled_from([0.2, 0.3, 0.5]), label="confidence"),
                    effective_at=data.draw(times, label="effective_at"),
                )
            elif kind == "regrade":
                target = data.draw(st.sampled_from(events), label="target")
                item = NewEvent(
                    workspace=WS,
                    entity_type="Patient",
                    entity_id="p1",
                    event_type=EventType.REGRADED,
                    data={"target": target.id},
                    source=JUDGE,
                    confidence=data.draw(st.sampled_from([0.0, 0.8, 0.95]), label="grade"),
                    effective_at=data.draw(times, label="effective_at"),
                )
            else:
                asserting = [e for e in events if e.event_type in ASSERTING]
                if not asserting:
                    continue
                target = data.draw(st.sampled_from(asserting), label="corrected")
                item = NewEvent(
                    workspace=WS,
                    entity_type="Patient",
                    entity_id="p1",
                    event_type=EventType.CORRECTED,
                    data=data.draw(some_fields, label="data"),
                    source=OPERATOR,
                    confidence=1.0,
                    supersedes=target.id,
                    effective_at=data.draw(times, label="effective_at"),
                )
            (result,) = await store.append(WS, [item])
            events += result.events

            stored = await store.get_state(WS, "Patient", "p1")
            log = await store.read_entity(WS, "Patient", "p1")
            assert [e.id for e in log] == [e.id for e in events]
            assert same(stored, projection.project(log, WS)), (stored, log)

        incremental = await store.get_state(WS, "Patient", "p1")
        await store.rebuild(WS)
        rebuilt = await store.get_state(WS, "Patient", "p1")
        assert same(incremental, rebuilt)
        assert incremental == rebuilt
    finally:
        await store.close()
