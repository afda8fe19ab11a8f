"""The world model service on both backends: resolution, merges, conflicts, history."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from ehrbridge.confidence import Level
from ehrbridge.errors import InvalidInput, NotFound
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.events import EventType, Observation, RecordKey, Source
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
MARIA = {
    "name.family": "Santos",
    "name.given": ["Maria"],
    "birth_date": "1984-03-12",
    "gender": "female",
    "phone.mobile": "+16175550142",
    "mrn": "MRN-1001",
    "identifiers": ["urn:ehr-a|MRN-1001"],
}


def obs(
    source: str, external_id: str, data: Mapping[str, object], at: datetime = T0
) -> Observation:
    return Observation(
        workspace="w",
        record=RecordKey(data_source=source, resource_type="Patient", external_id=external_id),
        entity_type="Patient",
        data=data,
        effective_at=at,
    )


async def test_certain_match_links_a_second_source_to_the_same_entity(store: Store) -> None:
    model = WorldModel(store, "w")
    (first,) = await model.ingest([obs("ehr-a", "1", MARIA)])
    same_person = {**MARIA, "identifiers": ["urn:ehr-a|MRN-1001"], "phone.home": "+16175550100"}
    (second,) = await model.ingest([obs("ehr-b", "77", same_person)])
    assert second.match is not None and second.match.kind == "certain"
    assert second.result.entity_id == first.result.entity_id
    state = await model.state("Patient", first.result.entity_id)
    assert state is not None and state.values["phone.home"] == "+16175550100"
    assert (await store.counts("w")).entities == {"Patient": 1}


async def test_uncertain_match_is_a_candidate_never_a_merge(store: Store) -> None:
    model = WorldModel(store, "w")
    (first,) = await model.ingest([obs("ehr-a", "1", MARIA)])
    typo = {k: v for k, v in MARIA.items() if k not in ("mrn", "identifiers", "phone.mobile")}
    typo["name.family"] = "Santoz"
    (second,) = await model.ingest([obs("ehr-b", "9", typo)])
    assert second.match is not None and second.match.kind == "candidate"
    assert second.result.entity_id != first.result.entity_id
    events = await model.events("Patient", second.result.entity_id)
    candidates = [e for e in events if e.event_type is EventType.MATCH_CANDIDATE]
    assert [e.data["candidate"] for e in candidates] == [first.result.entity_id]
    assert (await store.counts("w")).entities == {"Patient": 2}


async def test_merge_and_undo(store: Store) -> None:
    model = WorldModel(store, "w")
    (a,) = await model.ingest([obs("ehr-a", "1", MARIA)], resolve=False)
    (b,) = await model.ingest(
        [obs("ehr-b", "2", {"name.family": "Santos", "email": "m@example.com"})], resolve=False
    )
    survivor, member = a.result.entity_id, b.result.entity_id
    await model.merge("Patient", survivor, member, operator="op-1")
    merged = await model.state("Patient", survivor)
    assert merged is not None and merged.values["email"] == "m@example.com"
    assert merged.members == (member,)
    gone = await model.state("Patient", member)
    assert gone is not None and gone.merged_into == survivor
    assert (await store.counts("w")).entities == {"Patient": 1}
    # a later change at the member's source reaches the survivor
    await model.ingest(
        [
            obs(
                "ehr-b",
                "2",
                {"name.family": "Santos", "email": "new@example.com"},
                T0 + timedelta(hours=1),
            )
        ]
    )
    merged = await model.state("Patient", survivor)
    assert merged is not None and merged.values["email"] == "new@example.com"
    before_rebuild = merged
    await store.rebuild("w")
    assert await model.state("Patient", survivor) == before_rebuild
    await model.unmerge("Patient", survivor, member, operator="op-1")
    split = await model.state("Patient", survivor)
    assert split is not None and "email" not in split.values and split.members == ()
    member_state = await model.state("Patient", member)
    assert member_state is not None and member_state.merged_into is None
    assert (await store.counts("w")).entities == {"Patient": 2}
    after = {e: await model.state("Patient", e) for e in (survivor, member)}
    await store.rebuild("w")
    assert {e: await model.state("Patient", e) for e in (survivor, member)} == after


async def test_merge_refuses_self_and_unknown(store: Store) -> None:
    model = WorldModel(store, "w")
    (a,) = await model.ingest([obs("ehr-a", "1", MARIA)])
    with pytest.raises(InvalidInput):
        await model.merge("Patient", a.result.entity_id, a.result.entity_id, operator="op")
    with pytest.raises(NotFound):
        await model.merge("Patient", a.result.entity_id, "nobody", operator="op")


async def test_trusted_sources_disagreeing_record_a_conflict_resolved_by_an_operator(
    store: Store,
) -> None:
    model = WorldModel(store, "w")
    (a,) = await model.ingest([obs("ehr-a", "1", MARIA)], resolve=False)
    pid = a.result.entity_id
    other = Observation(
        workspace="w",
        record=RecordKey(data_source="ehr-b", resource_type="Patient", external_id="x"),
        entity_type="Patient",
        data={"phone.mobile": "+16175550111"},
        effective_at=T0 + timedelta(minutes=5),
        entity_id=pid,
    )
    await model.ingest([other], resolve=False)
    conflicts = await store.conflicts("w")
    assert [(c.entity_id, c.conflict.field) for c in conflicts] == [(pid, "phone.mobile")]
    assert await store.conflicts("w", "Patient", pid) == conflicts
    assert await store.conflicts("other") == []
    assert (await store.counts("w")).open_conflicts == 1
    await model.resolve_conflict(
        f"Patient/{pid}", conflicts[0].conflict.conflict_id, "+16175550142", operator="op-1"
    )
    state = await model.state("Patient", pid)
    assert state is not None and state.values["phone.mobile"] == "+16175550142"
    assert state.fields["phone.mobile"].source.kind == "operator"
    assert await store.conflicts("w") == []
    kinds = [e.event_type for e in await model.events("Patient", pid)]
    assert EventType.CONFLICT_RECORDED in kinds and EventType.CONFLICT_RESOLVED in kinds


async def test_far_apart_trusted_changes_are_not_conflicts(store: Store) -> None:
    model = WorldModel(store, "w")
    (a,) = await model.ingest([obs("ehr-a", "1", MARIA)], resolve=False)
    later = Observation(
        workspace="w",
        record=RecordKey(data_source="ehr-b", resource_type="Patient", external_id="x"),
        entity_type="Patient",
        data={"phone.mobile": "+16175550111"},
        effective_at=T0 + timedelta(hours=3),
        entity_id=a.result.entity_id,
    )
    await model.ingest([later], resolve=False)
    assert await store.conflicts("w") == []
    state = await model.state("Patient", a.result.entity_id)
    assert state is not None and state.values["phone.mobile"] == "+16175550111"


async def test_state_as_of_a_past_time(store: Store, clock: FakeClock) -> None:
    model = WorldModel(store, "w")
    (a,) = await model.ingest([obs("ehr-a", "1", MARIA)])
    pid = a.result.entity_id
    known_at = clock.now
    clock.advance(timedelta(hours=1))
    await model.write_voice(
        "Patient", pid, {"phone.mobile": "+16175550199"}, level=Level.VOICE_CONFIRMED, agent="a"
    )
    clock.advance(timedelta(hours=1))
    voice = (await model.events("Patient", pid))[-1]
    await model.regrade(
        f"Patient/{pid}", voice.id, Level.VERIFIED, by=Source(kind="review", id="judge")
    )
    now = await model.state("Patient", pid)
    assert now is not None and now.values["phone.mobile"] == "+16175550199"
    then = await model.state("Patient", pid, as_of=known_at)
    assert then is not None and then.values["phone.mobile"] == "+16175550142"
    assert then.pending == {}
    middle = await model.state("Patient", pid, as_of=known_at + timedelta(minutes=90))
    assert middle is not None and middle.values["phone.mobile"] == "+16175550142"
    assert [p.value for p in middle.pending["phone.mobile"]] == ["+16175550199"]
    assert await model.state("Patient", pid, as_of=known_at - timedelta(days=1)) is None


async def test_caller_identification_by_dialled_number(store: Store) -> None:
    model = WorldModel(store, "w")
    (a,) = await model.ingest([obs("ehr-a", "1", MARIA)])
    for dialled in ("(617) 555-0142", "+1 617 555 0142", "617.555.0142", "+16175550142"):
        assert [s.entity_id for s in await model.identify_caller(dialled)] == [a.result.entity_id]
    assert await model.identify_caller("(617) 555-0000") == []
    with pytest.raises(InvalidInput):
        await model.identify_caller("not a number")


async def test_voice_writes_only_at_voice_levels(store: Store) -> None:
    model = WorldModel(store, "w")
    (a,) = await model.ingest([obs("ehr-a", "1", MARIA)])
    with pytest.raises(InvalidInput):
        await model.write_voice(
            "Patient",
            a.result.entity_id,
            {"email": "x@example.com"},
            level=Level.VERIFIED,
            agent="a",
        )
    assert len(await model.events("Patient", a.result.entity_id)) == 1


async def test_correction_supersedes_and_rejection_drops_out(store: Store) -> None:
    model = WorldModel(store, "w")
    (a,) = await model.ingest([obs("ehr-a", "1", MARIA)])
    pid = a.result.entity_id
    r = await model.write_voice(
        "Patient", pid, {"email": "maria@example.org"}, level=Level.VOICE_MENTIONED, agent="a"
    )
    state = await model.state("Patient", pid)
    assert state is not None and state.values["email"] == "maria@example.org"
    await model.regrade(
        f"Patient/{pid}", r.events[0].id, Level.REJECTED, by=Source(kind="operator", id="op")
    )
    state = await model.state("Patient", pid)
    assert state is not None and "email" not in state.values and "email" not in state.pending
    ehr_event = (await model.events("Patient", pid))[0]
    await model.correct(
        f"Patient/{pid}", ehr_event.id, {"name.family": "Santos-Lima"}, operator="op"
    )
    state = await model.state("Patient", pid)
    assert state is not None and state.values["name.family"] == "Santos-Lima"
    # the corrected event no longer contributes anything
    assert "birth_date" not in state.values
    with pytest.raises(NotFound):
        await model.regrade(
            f"Patient/{pid}", "no-such-event", 0.8, by=Source(kind="review", id="j")
        )
