"""The outbound half end to end, on both backends, against the sandbox EHR on a real socket
(docs/design.md §5.3 examples 4 and 5, §8, §9): a voice fact verified by the judge goes through the
gate and the outbox to the EHR and comes back with the next poll as the EHR's own, with no
conflict and no new event; a front-desk change made while the write waits becomes a conflict,
never an overwrite; a rejection before sending cancels the write; a permanent refusal parks its
lane only; a write whose answer was lost is found at the sink, not sent twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ehrbridge.confidence import Level
from ehrbridge.connectors.fhir.poller import FhirPoller
from ehrbridge.connectors.source import DataSourceConfig, Polled, ResourceConfig
from ehrbridge.errors import InvalidInput
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.reader import Unit, resource_entry
from ehrbridge.outbound.dispatch import Dispatcher, SinkRuntime
from ehrbridge.outbound.echo import SinkEcho
from ehrbridge.outbound.gates import SinkPolicy
from ehrbridge.outbound.limits import (
    AdaptiveLimiter,
    BreakerLimits,
    CircuitBreaker,
    ConcurrencyLimits,
    RetryLimits,
)
from ehrbridge.outbound.outbox import ItemQuery, ItemStatus, OutboxItem
from ehrbridge.outbound.sinks.fhir import FhirSink, sink_client
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.events import EventType, RecordKey, Source
from ehrbridge.worldmodel.model import WorldModel
from tests.sandbox_server import SandboxServer

WS = "clinic"
PHONE_A, PHONE_B, PHONE_C = "+16175550142", "+16175550199", "+16175550177"
JUDGE = Source(kind="review", id="grounding/1")
#: how long a test waits for the dispatcher to reach a state (generous: shared machines)
PATIENCE = 30.0


def patient(family: str, phone: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Ana"], "use": "official"}],
        "telecom": [
            {"system": "fax", "value": "+16175550100"},
            {"system": "phone", "value": phone, "use": "mobile"},
        ],
        "birthDate": "1980-04-02",
        "gender": "female",
    }


@dataclass
class World:
    backend: Backend
    model: WorldModel
    server: SandboxServer
    front_desk: FhirClient
    poller: FhirPoller

    @property
    def source(self) -> DataSourceConfig:
        return DataSourceConfig(
            id="ehr",
            kind="fhir",
            base_url=self.server.base_url,
            resources=(ResourceConfig(type="Patient", every=timedelta(seconds=1)),),
        )

    async def poll(self) -> Polled:
        polled = Polled()
        await self.poller.poll(self.source, self.source.resources[0], polled)
        return polled

    async def patient_at_ehr(self, family: str, phone: str = PHONE_A) -> tuple[str, str]:
        """A patient created at the EHR and polled in: (its FHIR id, its entity id)."""
        created = await self.front_desk.create(patient(family, phone))
        assert created.id is not None and created.resource is not None
        # as polled an hour after it last changed there (the EHR's value is not news: a voice
        # fact verified now replaces it, §5.3, rather than meeting it in the conflict window)
        resource = dict(created.resource)
        an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        resource["meta"] = {**resource.get("meta", {}), "lastUpdated": an_hour_ago}
        entries = [resource_entry("entry[0]", resource)]
        await Importer(self.model, source="ehr").import_units(
            [Unit(file="poll", kind="searchset", entries=entries)]
        )
        rows = await self.backend.worldmodel.record_entities(WS, [_key(created.id)])
        return created.id, rows[_key(created.id)][1]

    async def verified_phone(
        self, entity_id: str, phone: str = PHONE_B, *, field: str = "phone.mobile"
    ) -> str:
        """A voice fact of a new mobile number, verified by the judge: its event id."""
        written = await self.model.write_voice(
            "Patient",
            entity_id,
            {field: phone},
            level=Level.VOICE_CONFIRMED,
            agent="agent-1",
            call_id="call-1",
        )
        fact = written.events[0].id
        await self.model.regrade(f"Patient/{entity_id}", fact, Level.VERIFIED, by=JUDGE)
        return fact

    def dispatcher(self, **options: Any) -> Dispatcher:
        sink = FhirSink("ehr", sink_client("ehr", self.server.base_url))
        runtime = SinkRuntime(
            sink=sink,
            policy=SinkPolicy(sink="ehr", entity_types=frozenset({"Patient"})),
            retry=RetryLimits(
                backoff_base=timedelta(milliseconds=20), backoff_max=timedelta(milliseconds=200)
            ),
            breaker=CircuitBreaker(BreakerLimits(), clock=_now),
            limiter=AdaptiveLimiter(ConcurrencyLimits(max=4)),
            **options,
        )
        return Dispatcher(
            self.backend.worldmodel,
            self.backend.outbox,
            [runtime],
            workspace=WS,
            holder="runner-test",
            echo=SinkEcho(self.model),
            catch_up=timedelta(milliseconds=50),
        )

    async def items(self, event_id: str) -> list[OutboxItem]:
        found = await self.backend.outbox.of_events(WS, [event_id])
        return found.get(event_id, [])


def _now() -> datetime:
    return datetime.now(UTC)


def _key(fhir_id: str) -> RecordKey:
    return RecordKey(data_source="ehr", resource_type="Patient", external_id=fhir_id)


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """The store's clock is the real one here: retries and leases are due in real time, as the
    dispatcher (on the real clock) reckons them."""
    return _now


@pytest.fixture
async def world(backend: Backend, sandbox: SandboxServer) -> AsyncIterator[World]:
    await sandbox.reset()
    model = WorldModel(backend.worldmodel, WS)
    async with FhirClient(sandbox.base_url) as front_desk:
        poller = FhirPoller(model, backend.runner)
        try:
            yield World(
                backend=backend, model=model, server=sandbox, front_desk=front_desk, poller=poller
            )
        finally:
            await poller.aclose()


async def running_until(dispatcher: Dispatcher, done: Callable[[], Any], *, what: str) -> None:
    """Run the dispatcher until ``done()`` (awaited) is true; stop it; fail after PATIENCE."""
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        async with asyncio.timeout(PATIENCE):
            while not await done():
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
    except TimeoutError:
        items = await dispatcher.outbox.items(WS, ItemQuery())
        seen = [(i.lane, i.status.value, i.attempts, i.last_error) for i in items]
        pytest.fail(f"the dispatcher did not get to: {what}; the outbox holds {seen}")
    finally:
        stop.set()
        await task
        for rt in dispatcher.sinks.values():
            await rt.sink.aclose()


def settled(world: World, event_id: str, *statuses: ItemStatus) -> Callable[[], Any]:
    async def check() -> bool:
        items = await world.items(event_id)
        return bool(items) and all(i.status in statuses for i in items)

    return check


async def test_a_verified_fact_reaches_the_ehr_and_comes_back_as_its_own(world: World) -> None:
    fhir_id, entity_id = await world.patient_at_ehr("Rivera")
    fact = await world.verified_phone(entity_id)
    dispatcher = world.dispatcher()
    await running_until(
        dispatcher, settled(world, fact, ItemStatus.SYNCED), what="the write synced"
    )
    (item,) = await world.items(fact)
    assert item.attempts == 1 and item.result and item.result["ref"] == f"Patient/{fhir_id}"
    # counted for /metrics, in the state the heartbeat saves
    assert dispatcher.states()["ehr"]["deliveries"] == {"synced": 1}
    at_ehr = await world.front_desk.read("Patient", fhir_id)
    telecom = {(t["system"], t["value"]) for t in at_ehr["telecom"]}
    assert ("phone", PHONE_B) in telecom and ("fax", "+16175550100") in telecom
    assert ("phone", PHONE_A) not in telecom
    state = await world.model.state("Patient", entity_id)
    assert state is not None
    phone = state.fields["phone.mobile"]
    assert (phone.value, phone.source.kind, phone.source.id) == (PHONE_B, "ehr", "ehr")
    # the next poll reads our own write back: nothing new, no conflict (§5.3 example 4)
    before = len(await world.model.events("Patient", entity_id))
    polled = await world.poll()
    assert polled.events == 0
    assert len(await world.model.events("Patient", entity_id)) == before
    assert state.conflicts == ()


async def test_a_front_desk_change_while_the_write_waits_is_a_conflict(world: World) -> None:
    fhir_id, entity_id = await world.patient_at_ehr("Okafor")
    fact = await world.verified_phone(entity_id)
    dispatcher = world.dispatcher()
    await dispatcher.feed.step()  # queued, not sent yet
    current = await world.front_desk.read("Patient", fhir_id)
    current["telecom"][1]["value"] = PHONE_C
    await world.front_desk.update(current)  # the front desk, at the EHR
    await running_until(
        dispatcher, settled(world, fact, ItemStatus.CONFLICT), what="the write parked"
    )
    at_ehr = await world.front_desk.read("Patient", fhir_id)
    assert {t["value"] for t in at_ehr["telecom"]} == {"+16175550100", PHONE_C}
    state = await world.model.state("Patient", entity_id)
    assert state is not None
    assert [c.field for c in state.conflicts] == ["phone.mobile"]
    conflict = next(
        e
        for e in await world.model.events("Patient", entity_id)
        if e.event_type is EventType.CONFLICT_RECORDED
    )
    (item,) = await world.items(fact)
    assert conflict.data["item"] == item.id


async def test_a_rejection_before_sending_cancels_the_write(world: World) -> None:
    fhir_id, entity_id = await world.patient_at_ehr("Nguyen")
    fact = await world.verified_phone(entity_id)
    dispatcher = world.dispatcher()
    await dispatcher.feed.step()
    (queued,) = await world.items(fact)
    assert queued.status is ItemStatus.PENDING
    operator = Source(kind="operator", id="op-1")
    await world.model.regrade(f"Patient/{entity_id}", fact, Level.REJECTED, by=operator)
    await running_until(
        dispatcher, settled(world, fact, ItemStatus.CANCELLED), what="the write cancelled"
    )
    at_ehr = await world.front_desk.read("Patient", fhir_id)
    assert PHONE_B not in {t["value"] for t in at_ehr["telecom"]}


async def test_a_refusal_parks_its_lane_only(world: World) -> None:
    _, first = await world.patient_at_ehr("Haddad")
    fhir_other, other = await world.patient_at_ehr("Kowalski")
    refused = await world.verified_phone(first)
    dispatcher = world.dispatcher()
    await dispatcher.feed.step()
    world.server.app.faults.set(unprocessable=1)  # the first write gets a 422
    later = await world.verified_phone(first, PHONE_C, field="phone.home")
    fine = await world.verified_phone(other)

    async def done() -> bool:
        dead = await world.items(refused)
        synced = await world.items(fine)
        return (
            bool(dead and synced)
            and dead[0].status is ItemStatus.DEAD
            and synced[0].status is ItemStatus.SYNCED
        )

    await running_until(dispatcher, done, what="one dead letter, the other lane synced")
    (dead,) = await world.items(refused)
    assert dead.last_error and "422" in dead.last_error
    (waiting,) = await world.items(later)
    assert waiting.status is ItemStatus.PENDING and waiting.attempts == 0
    at_ehr = await world.front_desk.read("Patient", fhir_other)
    assert PHONE_B in {t["value"] for t in at_ehr["telecom"]}
    # an operator skips the dead letter: the lane goes on with the later fact
    await world.backend.outbox.skip(WS, dead.id, "op-1", "the EHR refuses this number")
    await running_until(
        world.dispatcher(), settled(world, later, ItemStatus.SYNCED), what="the lane drained"
    )


async def test_a_write_whose_answer_was_lost_is_found_not_sent_again(world: World) -> None:
    fhir_id, entity_id = await world.patient_at_ehr("Silva")
    fact = await world.verified_phone(entity_id)
    world.server.app.faults.set(resets_after_write=1)
    await running_until(
        world.dispatcher(), settled(world, fact, ItemStatus.SYNCED), what="found at the sink"
    )
    (item,) = await world.items(fact)
    attempts = await world.backend.outbox.attempts(WS, item.id)
    assert [a.outcome for a in attempts] == ["retry", "found"]
    history = [v async for v in world.front_desk.history("Patient", fhir_id)]
    assert len(history) == 2  # created by the front desk, updated once by us


async def test_throttling_is_waited_out(world: World) -> None:
    _, entity_id = await world.patient_at_ehr("Moreau")
    fact = await world.verified_phone(entity_id)
    world.server.app.faults.set(throttle=2, retry_after=1)
    await running_until(
        world.dispatcher(), settled(world, fact, ItemStatus.SYNCED), what="synced after 429s"
    )
    (item,) = await world.items(fact)
    statuses = [a.status for a in await world.backend.outbox.attempts(WS, item.id)]
    assert statuses[-1] is None and 429 in statuses


async def test_listing_by_status(world: World) -> None:
    _, entity_id = await world.patient_at_ehr("Lindqvist")
    fact = await world.verified_phone(entity_id)
    dispatcher = world.dispatcher()
    await dispatcher.feed.step()
    pending = await world.backend.outbox.items(WS, ItemQuery(status=ItemStatus.PENDING))
    assert [i.event_id for i in pending] == [fact]
    assert pending[0].payload["base"] == {"phone.mobile": PHONE_A}


async def test_an_attempt_that_outlasts_its_timeout_is_in_doubt_then_found(world: World) -> None:
    fhir_id, entity_id = await world.patient_at_ehr("Achebe")
    fact = await world.verified_phone(entity_id)
    world.server.app.faults.set(latency=0.5)
    dispatcher = world.dispatcher(attempt_timeout=timedelta(milliseconds=300))
    for rt in dispatcher.sinks.values():
        rt.retry = RetryLimits(
            backoff_base=timedelta(milliseconds=50), backoff_max=timedelta(milliseconds=50)
        )

    async def timed_out() -> bool:
        items = await world.items(fact)
        return bool(items) and items[0].attempts >= 1

    await running_until(dispatcher, timed_out, what="an attempt timed out")
    world.server.app.faults.set(latency=0.0)
    await running_until(
        world.dispatcher(), settled(world, fact, ItemStatus.SYNCED), what="synced after"
    )
    (item,) = await world.items(fact)
    outcomes = [a.outcome for a in await world.backend.outbox.attempts(WS, item.id)]
    assert outcomes[0] == "retry" and outcomes[-1] in ("found", "synced")
    history = [v async for v in world.front_desk.history("Patient", fhir_id)]
    assert len(history) <= 2  # created by the front desk, then at most our one write


def test_an_attempt_must_fit_well_inside_its_lease(world: World) -> None:
    with pytest.raises(InvalidInput, match="more than half the lease"):
        world.dispatcher(attempt_timeout=timedelta(seconds=20))
