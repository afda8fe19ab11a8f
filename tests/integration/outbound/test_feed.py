"""The feed on both backends (docs/design.md §8, §9): what the gate lets through is queued once
per sink, the moment a judge or a human lets it through; what it refuses for good is cancelled;
deciding a page again (after a crash) finds the same items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ehrbridge.confidence import Level
from ehrbridge.outbound.feed import OutboundFeed, record_at
from ehrbridge.outbound.gates import SinkPolicy
from ehrbridge.outbound.outbox import ItemQuery, ItemStatus, item_key
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.events import Observation, RecordKey, Source
from ehrbridge.worldmodel.model import WorldModel

WS = "clinic"
JUDGE = Source(kind="review", id="grounding/1")
OPERATOR = Source(kind="operator", id="op-1")
EHR = SinkPolicy(sink="ehr", entity_types=frozenset({"Patient", "MedicationOrder"}))
BILLING = SinkPolicy(sink="billing", entity_types=frozenset({"Patient"}))


def feed_of(backend: Backend, *sinks: SinkPolicy, cursor: str = "outbound-feed") -> OutboundFeed:
    return OutboundFeed(
        backend.worldmodel, backend.outbox, workspace=WS, sinks=sinks or (EHR,), cursor=cursor
    )


async def drain(feed: OutboundFeed) -> int:
    queued = 0
    while (step := await feed.step()).events:
        queued += step.queued
    return queued


async def patient_from_ehr(model: WorldModel, phone: str = "+16175550142") -> str:
    (result,) = await model.ingest(
        [
            Observation(
                workspace=WS,
                record=RecordKey(data_source="ehr", resource_type="Patient", external_id="p1"),
                entity_type="Patient",
                data={"name.family": "Rivera", "phone.mobile": phone},
                effective_at=datetime.now(UTC) - timedelta(hours=1),
            )
        ]
    )
    return result.result.entity_id


async def heard(model: WorldModel, entity_id: str, data: dict[str, object]) -> str:
    written = await model.write_voice(
        "Patient" if "phone.mobile" in data else "MedicationOrder",
        entity_id,
        data,
        level=Level.VOICE_CONFIRMED,
        agent="agent-1",
        call_id="call-1",
    )
    return written.events[0].id


async def test_a_voice_fact_is_queued_once_a_judge_verifies_it(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    entity_id = await patient_from_ehr(model)
    fact = await heard(model, entity_id, {"phone.mobile": "+16175550199"})
    feed = feed_of(backend)
    assert await drain(feed) == 0  # at voice confidence: blocked at layer 1
    await model.regrade(f"Patient/{entity_id}", fact, Level.VERIFIED, by=JUDGE)
    assert await drain(feed) == 1
    (item,) = (await backend.outbox.of_events(WS, [fact]))[fact]
    assert item.key == item_key("ehr", fact) and item.lane == f"Patient/{entity_id}"
    assert item.payload == {
        "fields": {"phone.mobile": "+16175550199"},
        "ref": "Patient/p1",
        "base": {"phone.mobile": "+16175550142"},
    }
    # the EHR's own data is never queued back to it (the origin check)
    events = await model.events("Patient", entity_id)
    assert record_at(events, "ehr") == "Patient/p1" and record_at(events, "billing") is None


async def test_deciding_again_finds_the_same_items(backend: Backend) -> None:
    """A second feed over the same log (as after a crash that lost the cursor) queues nothing
    new: the keys are derived from the facts."""
    model = WorldModel(backend.worldmodel, WS)
    entity_id = await patient_from_ehr(model)
    fact = await heard(model, entity_id, {"phone.mobile": "+16175550199"})
    await model.regrade(f"Patient/{entity_id}", fact, Level.VERIFIED, by=JUDGE)
    await drain(feed_of(backend))
    again = OutboundFeed(
        backend.worldmodel,
        backend.outbox,
        workspace=WS,
        sinks=(EHR,),
        cursor="second",
        count_missing=True,
    )
    missing = 0
    while (step := await again.step()).events:
        missing += step.missing
    assert missing == 0
    assert len(await backend.outbox.items(WS, ItemQuery())) == 1


async def test_one_item_per_sink_and_the_ehr_data_goes_to_the_other_sink(
    backend: Backend,
) -> None:
    model = WorldModel(backend.worldmodel, WS)
    entity_id = await patient_from_ehr(model)
    fact = await heard(model, entity_id, {"phone.mobile": "+16175550199"})
    await model.regrade(f"Patient/{entity_id}", fact, Level.VERIFIED, by=JUDGE)
    await drain(feed_of(backend, EHR, BILLING))
    items = await backend.outbox.items(WS, ItemQuery())
    by_sink = sorted((i.sink, i.event_id == fact) for i in items)
    # the voice fact to both; the EHR's record to billing only, never back to the EHR
    assert by_sink == [("billing", False), ("billing", True), ("ehr", True)]
    create = next(i for i in items if i.sink == "billing" and i.event_id != fact)
    assert create.payload["ref"] is None and "entity" in create.payload


async def test_a_rejection_cancels_what_is_unsent(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    entity_id = await patient_from_ehr(model)
    fact = await heard(model, entity_id, {"phone.mobile": "+16175550199"})
    await model.regrade(f"Patient/{entity_id}", fact, Level.VERIFIED, by=JUDGE)
    feed = feed_of(backend)
    await drain(feed)
    await model.regrade(f"Patient/{entity_id}", fact, Level.REJECTED, by=OPERATOR)
    await drain(feed)
    (item,) = (await backend.outbox.of_events(WS, [fact]))[fact]
    assert item.status is ItemStatus.CANCELLED
    assert item.last_error and "rejected by op-1" in item.last_error


async def test_a_type_that_needs_a_human_waits_for_the_approval(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    policy = SinkPolicy(
        sink="ehr",
        entity_types=frozenset({"MedicationOrder"}),
        human_types=frozenset({"MedicationOrder"}),
    )
    fact = await heard(model, "med-1", {"medication.display": "metformin 500 mg"})
    feed = feed_of(backend, policy)
    await model.regrade("MedicationOrder/med-1", fact, Level.VERIFIED, by=JUDGE)
    assert await drain(feed) == 0  # verified, but medications need a human (layer 3)
    await model.regrade("MedicationOrder/med-1", fact, Level.HUMAN_APPROVED, by=OPERATOR)
    assert await drain(feed) == 1
    (item,) = (await backend.outbox.of_events(WS, [fact]))[fact]
    # a create: only what is trusted goes, here the approved fact itself
    assert item.payload["entity"] == {"medication.display": "metformin 500 mg"}


async def test_a_create_carries_only_trusted_values(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    verified = await heard(model, "new-1", {"phone.mobile": "+16175550199"})
    await heard(model, "new-1", {"phone.mobile": "+16175550199", "name.family": "Moss"})
    await model.regrade("Patient/new-1", verified, Level.VERIFIED, by=JUDGE)
    await drain(feed_of(backend))
    (item,) = (await backend.outbox.of_events(WS, [verified]))[verified]
    assert item.payload["entity"] == {"phone.mobile": "+16175550199"}  # no unverified family
