"""The booking workflow end to end, on both backends, against the sandbox EHR on a real socket
(docs/workflows.md, docs/design.md §9): a booking from a call, verified by the judge, becomes
"create the Appointment, update the Patient, notify the practitioner" in one lane; a 503 at the
Patient step is retried from that step, with exactly one Appointment at the EHR; an answer lost
after the create is found, not created twice; a 422 at the notice stops the workflow visibly,
and an operator's retry finishes it without repeating a done step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from ehrbridge.api import extracted
from ehrbridge.api.models import AppointmentBooking
from ehrbridge.api.slots import SlotIndex
from ehrbridge.cli.main import app
from ehrbridge.confidence import Level
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.reader import Unit, resource_entry
from ehrbridge.outbound.dispatch import Dispatcher, SinkRuntime
from ehrbridge.outbound.echo import SinkEcho
from ehrbridge.outbound.feed import OutboundFeed
from ehrbridge.outbound.gates import SinkPolicy
from ehrbridge.outbound.limits import (
    AdaptiveLimiter,
    BreakerLimits,
    CircuitBreaker,
    ConcurrencyLimits,
    RetryLimits,
)
from ehrbridge.outbound.outbox import FINAL, ItemQuery, ItemStatus, OutboxItem
from ehrbridge.outbound.sinks import Delivered, Sink
from ehrbridge.outbound.sinks.fhir import FhirSink, sink_client
from ehrbridge.outbound.steps import StepSink, with_workflows
from ehrbridge.outbound.workflows import (
    BOOK,
    WorkflowState,
    WorkflowStatus,
    workflow_of,
    workflow_status,
)
from ehrbridge.storage import Backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.worldmodel.events import RecordKey, Source
from ehrbridge.worldmodel.model import WorldModel
from tests.sandbox_server import SandboxServer

WS = "clinic"
PHONE_A, PHONE_B = "+16175550142", "+16175550199"
JUDGE = Source(kind="review", id="grounding/1")
CALL = "call-7"
#: how long a test waits for the dispatcher to reach a state (generous: shared machines)
PATIENCE = 30.0
STEPS = [s.name for s in BOOK.steps]


class FaultAt:
    """The real FHIR sink, with a sandbox fault armed just before one step is first sent (the
    fault then hits that step's first request, whatever the dispatcher's timing)."""

    def __init__(self, sink: Sink, server: SandboxServer, step: str, **fault: Any) -> None:
        self.sink, self.server, self.step, self.fault = sink, server, step, fault
        self.armed = bool(fault)
        #: step names in the order they were sent
        self.sent: list[str] = []

    @property
    def id(self) -> str:
        return self.sink.id

    async def send(self, item: OutboxItem) -> Delivered:
        name = _step_name(item)
        self.sent.append(name)
        if self.armed and name == self.step:
            self.armed = False
            self.server.app.faults.set(**self.fault)
        return await self.sink.send(item)

    async def lookup(self, item: OutboxItem) -> Delivered | None:
        return await self.sink.lookup(item)

    async def read_back(self, item: OutboxItem) -> bool:
        return await self.sink.read_back(item)

    async def aclose(self) -> None:
        await self.sink.aclose()


def _step_name(item: OutboxItem) -> str:
    """The item's step name; a plain item's operation."""
    if item.workflow is None:
        return item.operation
    return workflow_of(item.workflow).steps[item.step].name


@dataclass
class World:
    backend: Backend
    model: WorldModel
    server: SandboxServer
    front_desk: FhirClient

    async def at_ehr(self, resource: dict[str, Any]) -> tuple[str, str]:
        """A record created at the EHR and polled in: (its FHIR id, its entity id)."""
        created = await self.front_desk.create(resource)
        assert created.id is not None and created.resource is not None
        polled = dict(created.resource)
        an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        polled["meta"] = {**polled.get("meta", {}), "lastUpdated": an_hour_ago}
        await Importer(self.model, source="ehr").import_units(
            [Unit(file="poll", kind="searchset", entries=[resource_entry("entry[0]", polled)])]
        )
        key = RecordKey(
            data_source="ehr", resource_type=resource["resourceType"], external_id=created.id
        )
        rows = await self.backend.worldmodel.record_entities(WS, [key])
        return created.id, rows[key][1]

    async def call(self, patient: str, practitioner: str) -> tuple[str, str, str]:
        """A call: the caller gives a new mobile number and books with the practitioner; the
        judge verifies both. (booking event id, appointment id, phone event id)"""
        fact = await self.new_phone(patient)
        booking, appointment = await self.booking(patient, practitioner)
        return booking, appointment, fact

    async def new_phone(self, patient: str) -> str:
        """The caller's new mobile number, verified by the judge: its event id."""
        phone = await self.model.write_voice(
            "Patient",
            patient,
            {"phone.mobile": PHONE_B},
            level=Level.VOICE_CONFIRMED,
            agent="agent-1",
            call_id=CALL,
        )
        fact = phone.events[0].id
        await self.model.regrade("Patient/" + patient, fact, Level.VERIFIED, by=JUDGE)
        return fact

    async def booking(self, patient: str, practitioner: str) -> tuple[str, str]:
        """The call's booking through the agent API's booking (``POST /v1/appointments``),
        verified by the judge: (its event id, the appointment id)."""
        start = datetime(2026, 12, 10, 9, 30, tzinfo=UTC)
        request = AppointmentBooking(
            patient_id=patient,
            practitioner_id=practitioner,
            start=start,
            end=start + timedelta(minutes=30),
            reason="follow-up",
            call_id=CALL,
        )
        booked = await extracted.book_appointment(
            self.model,
            request,
            level=Level.VOICE_CONFIRMED,
            agent="agent-1",
            slots=SlotIndex(),
            audit=lambda _: [],
        )
        appointment, booking = booked.entity.entity_id, booked.event_id
        assert booking is not None
        await self.model.regrade(f"Appointment/{appointment}", booking, Level.VERIFIED, by=JUDGE)
        return booking, appointment

    async def booked(self) -> tuple[str, str, str, str, str]:
        """The clinic's patient and practitioner at the EHR, and a verified booking call:
        (patient FHIR id, practitioner FHIR id, booking event, appointment id, phone fact)."""
        patient_fhir, patient = await self.at_ehr(PATIENT)
        practitioner_fhir, practitioner = await self.at_ehr(PRACTITIONER)
        booking, appointment, fact = await self.call(patient, practitioner)
        return patient_fhir, practitioner_fhir, booking, appointment, fact

    def dispatcher(self, sink: Sink, *, attempts: int = 10) -> Dispatcher:
        policy = SinkPolicy(sink="ehr", entity_types=frozenset({"Patient", "Appointment"}))
        runtime = SinkRuntime(
            sink=sink,
            policy=policy,
            retry=RetryLimits(
                max_attempts=attempts,
                backoff_base=timedelta(milliseconds=20),
                backoff_max=timedelta(milliseconds=200),
            ),
            breaker=CircuitBreaker(BreakerLimits(), clock=_now),
            limiter=AdaptiveLimiter(ConcurrencyLimits(max=4)),
        )
        backend = self.backend
        runtimes, workflows = with_workflows(
            [runtime], backend.worldmodel, backend.outbox, workspace=WS, performing={"ehr"}
        )
        return Dispatcher(
            backend.worldmodel,
            backend.outbox,
            runtimes,
            workspace=WS,
            holder="runner-test",
            echo=SinkEcho(self.model),
            catch_up=timedelta(milliseconds=50),
            workflows=workflows,
        )

    def sink(self, step: str = "", **fault: Any) -> FaultAt:
        return FaultAt(
            FhirSink("ehr", sink_client("ehr", self.server.base_url)), self.server, step, **fault
        )

    async def steps(self, workflow: str) -> list[OutboxItem]:
        items = await self.backend.outbox.items(WS, ItemQuery(workflow=workflow))
        return sorted(items, key=lambda i: i.step)

    async def status(self, workflow: str) -> WorkflowStatus:
        (status,) = workflow_status(await self.steps(workflow))
        return status

    async def appointments(self, patient_fhir: str) -> list[dict[str, Any]]:
        query = {"patient": f"Patient/{patient_fhir}"}
        return [r async for r in self.front_desk.search("Appointment", query)]

    async def communications(self) -> list[dict[str, Any]]:
        return [r async for r in self.front_desk.search("Communication", {})]


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "name": [{"family": "Rivera", "given": ["Ana"], "use": "official"}],
    "telecom": [{"system": "phone", "value": PHONE_A, "use": "mobile"}],
    "birthDate": "1980-04-02",
    "gender": "female",
}
PRACTITIONER: dict[str, Any] = {
    "resourceType": "Practitioner",
    "name": [{"family": "Osei", "given": ["Kwame"]}],
}


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """The store's clock is the real one here: retries are due in real time."""
    return _now


@pytest.fixture
async def world(backend: Backend, sandbox: SandboxServer) -> AsyncIterator[World]:
    await sandbox.reset()
    model = WorldModel(backend.worldmodel, WS)
    async with FhirClient(sandbox.base_url) as front_desk:
        yield World(backend=backend, model=model, server=sandbox, front_desk=front_desk)


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
        seen = [(i.lane, i.step, i.status.value, i.attempts, i.last_error) for i in items]
        pytest.fail(f"the dispatcher did not get to: {what}; the outbox holds {seen}")
    finally:
        stop.set()
        await task
        for rt in dispatcher.sinks.values():
            await rt.sink.aclose()


def in_state(world: World, workflow: str, state: WorkflowState) -> Callable[[], Any]:
    async def check() -> bool:
        items = await world.steps(workflow)
        statuses = workflow_status(items)
        return bool(statuses) and statuses[0].state is state

    return check


async def test_a_booking_is_queued_as_its_steps_in_one_lane(world: World) -> None:
    _, _, booking, appointment, fact = await world.booked()
    dispatcher = world.dispatcher(world.sink())
    await dispatcher.feed.step()
    await dispatcher.feed.step()  # deciding again finds the same items
    workflow = f"book/{appointment}"
    steps = await world.steps(workflow)
    assert [_step_name(i) for i in steps] == STEPS
    assert {i.lane for i in steps} == {f"Appointment/{appointment}"}
    assert {i.event_id for i in steps} == {booking}
    assert [i.operation for i in steps] == ["create", "upsert", "notify"]
    assert steps[1].payload == {"facts": [fact]}
    # the phone fact is carried by the workflow: no item of its own
    assert (await world.backend.outbox.of_events(WS, [fact])) == {}
    everything = await world.backend.outbox.items(WS, ItemQuery())
    assert len(everything) == 3
    status = await world.status(workflow)
    assert status.state is WorkflowState.RUNNING and status.not_started == tuple(STEPS)


async def test_a_503_at_the_patient_step_resumes_there(world: World) -> None:
    patient_fhir, practitioner_fhir, _, appointment, _ = await world.booked()
    sink = world.sink("update-patient", errors=1, error_status=503)
    workflow = f"book/{appointment}"
    await running_until(
        world.dispatcher(sink), in_state(world, workflow, WorkflowState.DONE), what="booked"
    )
    create, update, notify = await world.steps(workflow)
    # the retry resumed at the failed step; the done step was sent once
    assert sink.sent == [
        "create-appointment",
        "update-patient",
        "update-patient",
        "notify-practitioner",
    ]
    assert [a.outcome for a in await world.backend.outbox.attempts(WS, create.id)] == ["synced"]
    update_attempts = await world.backend.outbox.attempts(WS, update.id)
    assert [(a.outcome, a.status) for a in update_attempts] == [("retry", 503), ("synced", None)]
    # exactly one Appointment at the EHR, with the sink's own records as participants
    (booked,) = await world.appointments(patient_fhir)
    assert create.result and create.result["ref"] == f"Appointment/{booked['id']}"
    actors = {p["actor"]["reference"] for p in booked["participant"]}
    assert actors == {f"Patient/{patient_fhir}", f"Practitioner/{practitioner_fhir}"}
    at_ehr = await world.front_desk.read("Patient", patient_fhir)
    assert PHONE_B in {t["value"] for t in at_ehr["telecom"]}
    (notice,) = await world.communications()
    assert notice["about"] == [{"reference": f"Appointment/{booked['id']}"}]
    assert notice["recipient"] == [{"reference": f"Practitioner/{practitioner_fhir}"}]
    assert notify.status is ItemStatus.SYNCED
    status = await world.status(workflow)
    assert status.done == tuple(STEPS) and status.failed is None


@pytest.mark.parametrize("lost", STEPS)
async def test_a_step_whose_answer_was_lost_is_found_not_repeated(world: World, lost: str) -> None:
    patient_fhir, _, _, appointment, _ = await world.booked()
    sink = world.sink(lost, resets_after_write=1)
    workflow = f"book/{appointment}"
    await running_until(
        world.dispatcher(sink), in_state(world, workflow, WorkflowState.DONE), what="booked"
    )
    steps = await world.steps(workflow)
    for item in steps:
        outcomes = [a.outcome for a in await world.backend.outbox.attempts(WS, item.id)]
        assert outcomes == (["retry", "found"] if _step_name(item) == lost else ["synced"])
    assert sink.sent == STEPS  # each step was sent once: the lost one was found at the sink
    assert len(await world.appointments(patient_fhir)) == 1
    assert len(await world.communications()) == 1
    history = [v async for v in world.front_desk.history("Patient", patient_fhir)]
    assert len(history) == 2  # created by the front desk, updated once by the workflow


async def test_a_refused_notice_stops_the_workflow_visibly(world: World) -> None:
    patient_fhir, _, _, appointment, _ = await world.booked()
    sink = world.sink("notify-practitioner", unprocessable=1)
    workflow = f"book/{appointment}"
    await running_until(
        world.dispatcher(sink), in_state(world, workflow, WorkflowState.STOPPED), what="stopped"
    )
    status = await world.status(workflow)
    assert status.done == ("create-appointment", "update-patient")
    assert status.failed == "notify-practitioner" and status.failed_status is ItemStatus.DEAD
    assert status.failed_error and "422" in status.failed_error
    assert await world.communications() == []
    create, update, notify = await world.steps(workflow)
    done_attempts = [len(await world.backend.outbox.attempts(WS, i.id)) for i in (create, update)]
    # an operator retries the parked step: it alone is sent again
    await world.backend.outbox.retry(WS, notify.id, "op-1")
    again = world.sink()
    await running_until(
        world.dispatcher(again), in_state(world, workflow, WorkflowState.DONE), what="done"
    )
    assert again.sent == ["notify-practitioner"]
    assert [
        len(await world.backend.outbox.attempts(WS, i.id)) for i in (create, update)
    ] == done_attempts
    assert len(await world.appointments(patient_fhir)) == 1
    assert len(await world.communications()) == 1
    history = [v async for v in world.front_desk.history("Patient", patient_fhir)]
    assert len(history) == 2  # created by the front desk, updated once by the workflow


async def test_the_cli_shows_a_stopped_workflow(world: World, tmp_path: Path) -> None:
    if isinstance(world.backend.worldmodel, PostgresStore):
        pytest.skip("the CLI opens a database by URL; the PostgreSQL test schema has none")
    _, _, _, appointment, _ = await world.booked()
    sink = world.sink("update-patient", unprocessable=1)
    workflow = f"book/{appointment}"
    await running_until(
        world.dispatcher(sink), in_state(world, workflow, WorkflowState.STOPPED), what="stopped"
    )
    db = f"sqlite:///{tmp_path / 'wm.db'}"
    cli = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        common = ["--db", db, "--workspace", WS]
        result = cli.invoke(app, ["outbox", *args, *common], env={"COLUMNS": "200"})
        return result.exit_code, result.output

    code, out = await asyncio.to_thread(run, "workflow", workflow, "--json")
    assert code == 0, out
    (status,) = [orjson.loads(line) for line in out.splitlines()]
    assert status["state"] == "stopped" and status["done"] == ["create-appointment"]
    assert status["failed"] == "update-patient" and status["failed_status"] == "dead"
    assert "422" in status["failed_error"] and status["not_started"] == ["notify-practitioner"]
    code, out = await asyncio.to_thread(run, "workflow", workflow)
    assert code == 0 and "stopped" in out and "not started  notify-practitioner" in out, out
    assert "book #1 update-patient" in out
    assert PHONE_B not in out  # ids and reasons, never a field value
    code, out = await asyncio.to_thread(run, "list", "--workflow", workflow, "--json")
    listed = [orjson.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(i["step"] for i in listed) == [0, 1, 2]
    code, out = await asyncio.to_thread(run, "workflow", "book/nothing")
    assert code != 0 and "no outbox items of workflow book/nothing" in out


async def test_deciding_a_begun_booking_again_leaves_its_steps_alone(world: World) -> None:
    _, _, booking, appointment, fact = await world.booked()
    sink = world.sink("update-patient", unprocessable=1)
    workflow = f"book/{appointment}"
    dispatcher = world.dispatcher(sink)
    await running_until(
        dispatcher, in_state(world, workflow, WorkflowState.STOPPED), what="stopped"
    )
    before = await world.steps(workflow)
    assert [i.status for i in before] == [ItemStatus.SYNCED, ItemStatus.DEAD, ItemStatus.PENDING]
    # a trailing pass over the whole log (the reconcile loop's): the Appointment's echo has made
    # the booking no longer current, yet its waiting step is not cancelled, nor a plain item made
    trailing = OutboundFeed(
        world.backend.worldmodel,
        world.backend.outbox,
        workspace=WS,
        sinks=dispatcher.feed.sinks,
        cursor="trailing",
        workflows=dispatcher.feed.workflows,
    )
    while (await trailing.step()).events:
        pass
    after = await world.steps(workflow)
    assert [(i.id, i.status) for i in after] == [(i.id, i.status) for i in before]
    # the phone fact, still the patient's (its step is parked), is still the workflow's alone
    assert await world.backend.outbox.of_events(WS, [fact]) == {}
    assert {i.workflow for i in (await world.backend.outbox.of_events(WS, [booking]))[booking]} == {
        workflow
    }


async def test_a_patient_fact_queued_before_the_booking_goes_on_its_own(world: World) -> None:
    patient_fhir, patient = await world.at_ehr(PATIENT)
    _, practitioner = await world.at_ehr(PRACTITIONER)
    dispatcher = world.dispatcher(world.sink())
    fact = await world.new_phone(patient)
    await dispatcher.feed.step()  # the phone fact is queued as a plain item first
    _, appointment = await world.booking(patient, practitioner)
    workflow = f"book/{appointment}"
    booked = in_state(world, workflow, WorkflowState.DONE)

    async def both() -> bool:
        own = (await world.backend.outbox.of_events(WS, [fact])).get(fact, [])
        return bool(await booked()) and all(i.status is ItemStatus.SYNCED for i in own)

    await running_until(dispatcher, both, what="booked, and the phone written")
    status = await world.status(workflow)
    assert status.done == ("create-appointment", "notify-practitioner")  # no Patient step
    (own,) = (await world.backend.outbox.of_events(WS, [fact]))[fact]
    assert own.workflow is None and own.status is ItemStatus.SYNCED
    history = [v async for v in world.front_desk.history("Patient", patient_fhir)]
    assert len(history) == 2  # the front desk's, and the phone fact's own write, once
    assert len(await world.appointments(patient_fhir)) == 1


async def test_the_wiring_wraps_the_fhir_sinks_only(world: World) -> None:
    def runtime(sink: Sink, sink_id: str) -> SinkRuntime:
        return SinkRuntime(
            sink=sink,
            policy=SinkPolicy(sink=sink_id),
            retry=RetryLimits(),
            breaker=CircuitBreaker(BreakerLimits(), clock=_now),
            limiter=AdaptiveLimiter(ConcurrencyLimits(max=1)),
        )

    fhir = FhirSink("ehr", sink_client("ehr", world.server.base_url))
    other = world.sink()  # not a FhirSink: it performs no workflow step here
    backend = world.backend
    runtimes, workflows = with_workflows(
        [runtime(fhir, "ehr"), runtime(other, "crm")],
        backend.worldmodel,
        backend.outbox,
        workspace=WS,
    )
    assert isinstance(runtimes[0].sink, StepSink) and runtimes[0].sink.sink is fhir
    assert runtimes[1].sink is other
    assert workflows.sinks == frozenset({"ehr"})
    await fhir.aclose()
    await other.aclose()


async def test_a_booking_rejected_before_it_was_sent_abandons_every_step(world: World) -> None:
    patient_fhir, _, booking, appointment, _ = await world.booked()
    dispatcher = world.dispatcher(world.sink())
    await dispatcher.feed.step()
    operator = Source(kind="operator", id="op-1")
    await world.model.regrade(f"Appointment/{appointment}", booking, Level.REJECTED, by=operator)
    workflow = f"book/{appointment}"

    async def settled() -> bool:
        return all(i.status in FINAL for i in await world.steps(workflow))

    await running_until(dispatcher, settled, what="every step settled")
    steps = await world.steps(workflow)
    assert [i.status for i in steps] == [ItemStatus.CANCELLED] * 3
    assert (await world.status(workflow)).state is WorkflowState.ABANDONED
    assert await world.appointments(patient_fhir) == []
    assert await world.communications() == []


async def test_a_participant_the_sink_does_not_have_stops_the_create(world: World) -> None:
    _, practitioner = await world.at_ehr(PRACTITIONER)
    written = await world.model.write_voice(  # a new caller: no record at the EHR
        "Patient",
        "new-caller",
        {"name.family": "Lindqvist"},
        level=Level.VOICE_CONFIRMED,
        agent="agent-1",
        call_id=CALL,
    )
    _, appointment = await world.booking(written.events[0].entity_id, practitioner)
    workflow = f"book/{appointment}"
    sink = world.sink()
    await running_until(
        world.dispatcher(sink, attempts=2),
        in_state(world, workflow, WorkflowState.STOPPED),
        what="stopped",
    )
    status = await world.status(workflow)
    assert (status.failed, status.failed_status) == ("create-appointment", ItemStatus.DEAD)
    assert status.failed_error and "has no record at sink ehr yet" in status.failed_error
    assert "Lindqvist" not in status.failed_error
    assert status.not_started == ("notify-practitioner",) and sink.sent == []
