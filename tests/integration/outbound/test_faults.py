"""The outbound half under the sandbox EHR's fault injection (``ehrbridge.sandbox.faults``), on
both backends, on a real socket (docs/design.md §9): 429 storms waited out by every runner
sharing the sink's budget, bursts of 5xx, an outage, connections reset before and after a write
landed, writes the EHR acknowledged and dropped, stale reads, a front-desk change while the
write waits, a refusal that parks one lane, a new patient's second fact queued before the
first's create landed (or after its echo was lost). Each ends the same way: every verified fact
lands at the EHR exactly once or becomes a visible conflict (or, refused, a visible dead
letter); nothing is lost. Last, the same flow against the Medplum server, its answers lost on
the way back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ehrbridge.budget import BudgetRegistry, Budgets, RequestBudget
from ehrbridge.confidence import Level
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.http import Resource
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
from ehrbridge.outbound.outbox import Attempt, ItemQuery, ItemStatus, OutboxItem, Settle
from ehrbridge.outbound.reconcile import RECONCILE_CURSOR, Reconciler
from ehrbridge.outbound.sinks import IDENTIFIER_SYSTEM, Sink
from ehrbridge.outbound.sinks.fhir import FhirSink, sink_client
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.events import EventType, RecordKey, Source, new_id
from ehrbridge.worldmodel.model import WorldModel
from tests.conftest import MakeBackend
from tests.fhir_server import MedplumServer
from tests.sandbox_server import SandboxServer

WS = "clinic"
JUDGE = Source(kind="review", id="grounding/1")
#: how long a test waits for the dispatchers to reach a state (generous: shared machines)
PATIENCE = 60.0
FAMILIES = ["Rivera", "Okafor", "Nguyen", "Haddad", "Kowalski", "Moreau", "Lindqvist", "Tanaka"]


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """The real clock: retries, leases and budget slots are due in real time."""
    return _now


def phone(area: int, n: int) -> str:
    return f"+1{area}555{100 + n:04d}"


@dataclass
class Clinic:
    """The world model, the EHR at ``base_url``, and the facts written for it to receive."""

    backend: Backend
    base_url: str
    front_desk: FhirClient
    #: create facts: event id → the new patient's family name
    creates: dict[str, str] = field(default_factory=dict)
    #: update facts: event id → (the patient's id at the EHR, our new mobile number)
    updates: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the records the front desk created at the EHR
    records: set[str] = field(default_factory=set)

    @property
    def model(self) -> WorldModel:
        return WorldModel(self.backend.worldmodel, WS)

    async def patient_at_ehr(self, n: int, **extra: Any) -> tuple[str, str]:
        """Patient ``n`` created at the EHR and polled in an hour after it last changed there
        (so a verified fact replaces its value): (its FHIR id, its entity id)."""
        created = await self.front_desk.create(
            {
                "resourceType": "Patient",
                "name": [{"family": FAMILIES[n % 8] + "ez" * (n // 8), "given": ["Ana"]}],
                "telecom": [{"system": "phone", "value": phone(617, n), "use": "mobile"}],
                "birthDate": f"19{60 + n}-0{1 + n % 9}-1{n % 10}",
                **extra,
            }
        )
        assert created.id is not None and created.resource is not None
        self.records.add(created.id)
        return created.id, await self.polled(created.resource)

    async def polled(self, resource: Resource) -> str:
        """``resource`` imported as the EHR's, an hour old: its entity id."""
        resource = dict(resource)
        an_hour_ago = (_now() - timedelta(hours=1)).isoformat()
        resource["meta"] = {**resource.get("meta", {}), "lastUpdated": an_hour_ago}
        unit = Unit(file="poll", kind="searchset", entries=[resource_entry("entry[0]", resource)])
        await Importer(self.model, source="ehr").import_units([unit])
        key = RecordKey(data_source="ehr", resource_type="Patient", external_id=resource["id"])
        rows = await self.backend.worldmodel.record_entities(WS, [key])
        return rows[key][1]

    async def verified(self, entity_id: str, data: Mapping[str, Any]) -> str:
        """A voice fact, re-graded verified by the judge: its event id."""
        written = await self.model.write_voice(
            "Patient", entity_id, data, level=Level.VOICE_CONFIRMED, agent="agent-1"
        )
        fact = written.events[0].id
        await self.model.regrade(f"Patient/{entity_id}", fact, Level.VERIFIED, by=JUDGE)
        return fact

    async def update(self, n: int) -> tuple[str, str, str]:
        """Patient ``n`` at the EHR and a verified new mobile number of theirs: (the fact, the
        FHIR id, the entity id)."""
        fhir_id, entity_id = await self.patient_at_ehr(n)
        fact = await self.verified(entity_id, {"phone.mobile": phone(857, n)})
        self.updates[fact] = (fhir_id, phone(857, n))
        return fact, fhir_id, entity_id

    async def create(self, n: int) -> str:
        """A verified voice fact about a new patient (the EHR has no record of them)."""
        family = f"New{FAMILIES[n % 8]}{'ez' * (n // 8)}"
        fact = await self.verified(
            new_id(),
            {
                "name.family": family,
                "name.given": ["Bea"],
                "birth_date": f"20{10 + n:02d}-0{1 + n % 9}-2{n % 8}",
                "phone.mobile": phone(508, n),
            },
        )
        self.creates[fact] = family
        return fact

    async def backlog(self, creates: int, updates: int) -> None:
        for n in range(creates):
            await self.create(n)
        for n in range(updates):
            await self.update(n)

    def dispatcher(
        self,
        backend: Backend | None = None,
        *,
        holder: str = "runner-1",
        budget: tuple[BudgetRegistry, RequestBudget] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int = 4,
    ) -> Dispatcher:
        """A dispatcher on ``backend`` (the clinic's by default) for the sink ``ehr``."""
        backend = backend or self.backend
        if budget is None:
            client = sink_client("ehr", self.base_url, transport=transport)
        else:
            budgets, limit = budget
            client = sink_client(
                "ehr", self.base_url, budgets=budgets, limit=limit, transport=transport
            )
        runtime = SinkRuntime(
            sink=FhirSink("ehr", client),
            policy=SinkPolicy(sink="ehr", entity_types=frozenset({"Patient"})),
            retry=RetryLimits(
                max_attempts=50,
                backoff_base=timedelta(milliseconds=20),
                backoff_max=timedelta(milliseconds=300),
            ),
            breaker=CircuitBreaker(BreakerLimits(cooldown=timedelta(milliseconds=200)), clock=_now),
            limiter=AdaptiveLimiter(ConcurrencyLimits(max=concurrency)),
        )
        return Dispatcher(
            backend.worldmodel,
            backend.outbox,
            [runtime],
            workspace=WS,
            holder=holder,
            echo=SinkEcho(WorldModel(backend.worldmodel, WS)),
            catch_up=timedelta(milliseconds=50),
        )

    def reconciler(self, sink: Sink) -> Reconciler:
        """The reconcile loop as the runner wires it (its trailing feed over the log), reading
        back every synced item however recent."""
        policy = SinkPolicy(sink="ehr", entity_types=frozenset({"Patient"}))
        trailing = OutboundFeed(
            self.backend.worldmodel,
            self.backend.outbox,
            workspace=WS,
            sinks=[policy],
            cursor=RECONCILE_CURSOR,
            count_missing=True,
        )
        return Reconciler(
            self.backend.outbox, {"ehr": sink}, workspace=WS, feed=trailing, settle=timedelta(0)
        )

    async def items(self) -> dict[str, OutboxItem]:
        """Every item, by the fact it delivers."""
        listed = await self.backend.outbox.items(WS, ItemQuery(limit=1000))
        return {i.event_id or "": i for i in listed}

    async def all_settled(self) -> bool:
        items = await self.items()
        return set(items) >= set(self.creates) | set(self.updates) and all(
            i.status not in (ItemStatus.PENDING, ItemStatus.PROCESSING) for i in items.values()
        )

    async def history(self, fhir_id: str) -> list[Resource]:
        """The record's versions at the EHR, newest first."""
        return [v async for v in self.front_desk.history("Patient", fhir_id)]

    async def landed_once(self, *, versions: Mapping[str, int] | None = None) -> None:
        """Every fact is synced and at the EHR once: a create as one record holding its key
        (and no other record made), an update as one more version (``versions``: how many the
        record has then, by FHIR id, where the front desk wrote too; 2 otherwise)."""
        items = await self.items()
        facts = set(self.creates) | set(self.updates)
        assert {f: items[f].status for f in facts} == dict.fromkeys(facts, ItemStatus.SYNCED)
        at_ehr = [p async for p in self.front_desk.search("Patient", {"_count": "100"})]
        keys = Counter(
            i["value"]
            for p in at_ehr
            for i in p.get("identifier", [])
            if i.get("system") == IDENTIFIER_SYSTEM
        )
        assert keys == Counter({items[f].key: 1 for f in self.creates})
        assert len(at_ehr) == len(self.creates) + len(self.records)
        for fact, (fhir_id, mobile) in self.updates.items():
            history = await self.history(fhir_id)
            assert len(history) == (versions or {}).get(fhir_id, 2), fact
            assert mobile in {t["value"] for t in history[0]["telecom"]}


@pytest.fixture
async def clinic(backend: Backend, sandbox: SandboxServer) -> AsyncIterator[Clinic]:
    await sandbox.reset()
    async with FhirClient(sandbox.base_url) as front_desk:
        yield Clinic(backend=backend, base_url=sandbox.base_url, front_desk=front_desk)


async def running_until(
    dispatchers: Sequence[Dispatcher], done: Callable[[], Any], *, what: str
) -> None:
    """Run the dispatchers until ``done()`` (awaited) is true; stop them; fail after
    PATIENCE."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.run(stop)) for d in dispatchers]
    try:
        async with asyncio.timeout(PATIENCE):
            while not await done():
                for task in tasks:
                    if task.done():
                        task.result()
                await asyncio.sleep(0.02)
    except TimeoutError:
        items = await dispatchers[0].outbox.items(WS, ItemQuery())
        seen = [(i.lane, i.status.value, i.attempts, i.last_error) for i in items]
        pytest.fail(f"the dispatchers did not get to: {what}; the outbox holds {seen}")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for dispatcher in dispatchers:
            for rt in dispatcher.sinks.values():
                await rt.sink.aclose()


async def outcomes(clinic: Clinic) -> Counter[str]:
    """Every attempt's outcome, over all items."""
    found: Counter[str] = Counter()
    for item in (await clinic.items()).values():
        found.update(a.outcome for a in await clinic.backend.outbox.attempts(WS, item.id))
    return found


# -- 429 storms ------------------------------------------------------------------------------


@dataclass
class Watch:
    """What two runners did, on one clock (wall time: the stores reckon the pace in it): each
    budget slot granted, and each 429 answered, with its ``Retry-After``."""

    granted: list[float] = field(default_factory=list)
    throttled: list[tuple[float, float]] = field(default_factory=list)


class WatchedPace:
    """A runner store's budget pace, noting when it grants a slot."""

    def __init__(self, pace: Budgets, watch: Watch) -> None:
        self.pace = pace
        self.watch = watch

    async def take_slot(self, workspace: str, name: str, interval: timedelta) -> timedelta:
        wait = await self.pace.take_slot(workspace, name, interval)
        if not wait:
            self.watch.granted.append(time.time())
        return wait

    async def pause(self, workspace: str, name: str, delay: timedelta) -> None:
        await self.pace.pause(workspace, name, delay)


class WatchedTransport(httpx.AsyncBaseTransport):
    """The sink's HTTP transport, noting each 429 as it arrives (before the budget hears)."""

    def __init__(self, watch: Watch) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.watch = watch

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code == 429:
            retry_after = float(response.headers["retry-after"])
            self.watch.throttled.append((time.time(), retry_after))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_429_storm_is_waited_out_by_every_runner_sharing_the_budget(
    clinic: Clinic, sandbox: SandboxServer, make_backend: MakeBackend
) -> None:
    await clinic.backlog(creates=2, updates=4)
    watch = Watch()
    limit = RequestBudget(rate=2, concurrency=2)
    dispatchers = []
    for n in (1, 2):  # two runners on one database: one budget, sink:ehr
        backend = clinic.backend if n == 1 else await make_backend()
        budgets = BudgetRegistry(WatchedPace(backend.runner, watch), WS)
        dispatchers.append(
            clinic.dispatcher(
                backend,
                holder=f"runner-{n}",
                budget=(budgets, limit),
                transport=WatchedTransport(watch),
            )
        )
    sandbox.app.faults.set(throttle=4, retry_after=1)
    await running_until(dispatchers, clinic.all_settled, what="every item settled")
    assert sandbox.app.faults.injected["throttle"] == 4
    await clinic.landed_once()
    # After each 429 no runner took a slot before its Retry-After was over. (A slot granted in
    # the moment between the answer and the pause being stored would also count; the rate of
    # 2/s keeps the next slot half a second off.)
    assert len(watch.throttled) == 4
    early = [
        (round(granted - at, 3), retry_after)
        for at, retry_after in watch.throttled
        for granted in watch.granted
        if at < granted < at + retry_after
    ]
    assert early == []


# -- 5xx, outages, resets ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
async def test_a_burst_of_server_errors_is_retried_and_lands_once(
    clinic: Clinic, sandbox: SandboxServer, status: int
) -> None:
    await clinic.backlog(creates=3, updates=3)
    sandbox.app.faults.set(errors=8, error_status=status)
    await running_until([clinic.dispatcher()], clinic.all_settled, what="every item settled")
    assert sandbox.app.faults.injected["error"] == 8
    await clinic.landed_once()
    statuses = Counter[int | None]()
    for item in (await clinic.items()).values():
        statuses.update(a.status for a in await clinic.backend.outbox.attempts(WS, item.id))
    assert statuses[status] >= 1


@pytest.mark.parametrize("mode", ["status", "drop"])
async def test_an_outage_is_ridden_out_and_every_write_lands_once(
    clinic: Clinic, sandbox: SandboxServer, mode: str
) -> None:
    await clinic.backlog(creates=3, updates=3)
    sandbox.app.faults.set(outage_seconds=1.5, outage_mode=mode)
    await running_until([clinic.dispatcher()], clinic.all_settled, what="every item settled")
    assert sandbox.app.faults.injected["outage"] >= 1
    await clinic.landed_once()


async def test_writes_whose_answers_were_lost_are_found_not_sent_again(
    clinic: Clinic, sandbox: SandboxServer
) -> None:
    await clinic.backlog(creates=3, updates=3)
    sandbox.app.faults.set(resets_after_write=4)  # stored, then the connection dropped
    await running_until([clinic.dispatcher()], clinic.all_settled, what="every item settled")
    assert sandbox.app.faults.injected["reset_after_write"] == 4
    await clinic.landed_once()
    assert (await outcomes(clinic))["found"] >= 1


async def test_connections_reset_before_an_answer_are_retried_and_land_once(
    clinic: Clinic, sandbox: SandboxServer
) -> None:
    await clinic.backlog(creates=3, updates=3)
    sandbox.app.faults.set(resets=6)  # reads and writes alike, dropped before they are handled
    await running_until([clinic.dispatcher()], clinic.all_settled, what="every item settled")
    assert sandbox.app.faults.injected["reset"] == 6
    await clinic.landed_once()


# -- dropped writes, stale reads ----------------------------------------------------------------


async def test_writes_the_ehr_dropped_are_found_by_read_back_and_sent_again(
    clinic: Clinic, sandbox: SandboxServer
) -> None:
    await clinic.backlog(creates=2, updates=3)
    sandbox.app.faults.set(dropped_writes=3)  # answered as stored, rolled back
    await running_until([clinic.dispatcher()], clinic.all_settled, what="every item settled")
    assert sandbox.app.faults.injected["dropped_write"] == 3
    sink = FhirSink("ehr", sink_client("ehr", clinic.base_url))
    reconciler = clinic.reconciler(sink)
    try:
        first = await reconciler.round()
        assert first.reopened >= 1 and first.unknown == 0
        # queued again in doubt: looked up before it is sent, and never cancelled as unsent by
        # the trailing feed, which finds its fact replaced by its own write's echo
        again = [i for i in (await clinic.items()).values() if i.status is ItemStatus.PENDING]
        assert len(again) == first.reopened and all(i.in_doubt for i in again)
        await running_until([clinic.dispatcher()], clinic.all_settled, what="sent again")
        second = await reconciler.round()
        assert (second.reopened, second.unknown) == (0, 0)
    finally:
        await sink.aclose()
    await clinic.landed_once()
    items = await clinic.items()
    assert all(i.confirmed_at is not None for i in items.values())


async def test_stale_reads_never_write_over_a_newer_version(
    clinic: Clinic, sandbox: SandboxServer
) -> None:
    fhir_id, _ = await clinic.patient_at_ehr(0)
    # the front desk adds a home number; the poll reads that version
    current = await clinic.front_desk.read("Patient", fhir_id)
    current["telecom"].append({"system": "phone", "value": phone(781, 0), "use": "home"})
    changed = await clinic.front_desk.update(current)
    assert changed.resource is not None
    entity_id = await clinic.polled(changed.resource)
    fact = await clinic.verified(entity_id, {"phone.mobile": phone(857, 0)})
    clinic.updates[fact] = (fhir_id, phone(857, 0))
    await clinic.create(1)
    # the sink's reads lag one version: the update's If-Match on the old version is refused
    sandbox.app.faults.set(stale_reads=2)
    await running_until([clinic.dispatcher()], clinic.all_settled, what="every item settled")
    assert sandbox.app.faults.injected["stale_read"] == 2
    await clinic.landed_once(versions={fhir_id: 3})
    (newest, *_) = await clinic.history(fhir_id)
    telecom = {(t.get("use"), t["value"]) for t in newest["telecom"]}
    assert telecom == {("mobile", phone(857, 0)), ("home", phone(781, 0))}
    # read-backs through a lagging replica: an update's is read at the version our write made,
    # so a replica behind the write reopens nothing
    sink = FhirSink("ehr", sink_client("ehr", clinic.base_url))
    reconciler = clinic.reconciler(sink)
    sandbox.app.faults.set(stale_reads=10)
    try:
        report = await reconciler.round()
    finally:
        await sink.aclose()
    assert (report.confirmed, report.reopened, report.unknown) == (2, 0, 0)
    assert sandbox.app.faults.injected["stale_read"] > 2


# -- the front desk, a refusal ------------------------------------------------------------------


async def test_a_front_desk_change_while_the_write_waits_is_kept_or_a_conflict(
    clinic: Clinic, sandbox: SandboxServer
) -> None:
    same, same_id, same_entity = await clinic.update(0)
    _, other_id, _ = await clinic.update(1)
    await clinic.backlog(creates=2, updates=0)
    dispatcher = clinic.dispatcher()
    await dispatcher.feed.step()  # queued; the EHR is busy
    sandbox.app.faults.set(throttle=3, retry_after=1)
    # the front desk, at the EHR: a new mobile number for one, a home number for the other
    record = await clinic.front_desk.read("Patient", same_id)
    record["telecom"][0]["value"] = phone(339, 0)
    await clinic.front_desk.update(record)
    record = await clinic.front_desk.read("Patient", other_id)
    record["telecom"].append({"system": "phone", "value": phone(781, 1), "use": "home"})
    await clinic.front_desk.update(record)
    await running_until([dispatcher], clinic.all_settled, what="every item settled")

    items = await clinic.items()
    assert items[same].status is ItemStatus.CONFLICT
    del clinic.updates[same]
    await clinic.landed_once(versions={other_id: 3})
    (newest, *_) = await clinic.history(other_id)
    assert phone(781, 1) in {t["value"] for t in newest["telecom"]}
    # the conflict is visible, and the front desk's number stands at the EHR
    (newest, *_) = await clinic.history(same_id)
    assert {t["value"] for t in newest["telecom"]} == {phone(339, 0)}
    state = await clinic.model.state("Patient", same_entity)
    assert state is not None and [c.field for c in state.conflicts] == ["phone.mobile"]
    events = await clinic.model.events("Patient", same_entity)
    recorded = [e for e in events if e.event_type is EventType.CONFLICT_RECORDED]
    assert [e.data["item"] for e in recorded] == [items[same].id]


async def test_a_refused_write_dead_letters_its_item_and_parks_only_its_lane(
    clinic: Clinic, sandbox: SandboxServer
) -> None:
    refused, _, entity_id = await clinic.update(0)
    later = await clinic.verified(entity_id, {"phone.home": phone(781, 0)})
    await clinic.backlog(creates=2, updates=0)
    for n in (1, 2, 3):
        await clinic.update(n)
    dispatcher = clinic.dispatcher(concurrency=1)  # the first lane's head goes first
    await dispatcher.feed.step()
    sandbox.app.faults.set(unprocessable=1)

    async def parked_and_drained() -> bool:
        items = await clinic.items()
        return items[refused].status is ItemStatus.DEAD and all(
            i.status is ItemStatus.SYNCED for f, i in items.items() if f not in (refused, later)
        )

    await running_until([dispatcher], parked_and_drained, what="one dead letter, the rest synced")
    items = await clinic.items()
    dead = items[refused]
    assert dead.last_error is not None and "422" in dead.last_error
    assert (items[later].status, items[later].attempts) == (ItemStatus.PENDING, 0)
    fhir_id, _ = clinic.updates.pop(refused)
    await clinic.landed_once()
    assert len(await clinic.history(fhir_id)) == 1  # nothing of the refused lane was written
    # an operator skips the dead letter: the lane goes on with the later fact
    await clinic.backend.outbox.skip(WS, dead.id, "op-1", "the EHR refuses this number")

    async def lane_drained() -> bool:
        return (await clinic.items())[later].status is ItemStatus.SYNCED

    await running_until([clinic.dispatcher()], lane_drained, what="the lane drained")
    (newest, *_) = await clinic.history(fhir_id)
    assert phone(781, 0) in {t["value"] for t in newest["telecom"]}


# -- new patients ----------------------------------------------------------------------------


async def one_record(clinic: Clinic, first: str, later: str) -> Resource:
    """The one record at the EHR a new patient's two facts made, holding the first's key."""
    items = await clinic.items()
    assert (items[first].status, items[later].status) == (ItemStatus.SYNCED,) * 2
    first_ref, later_ref = (items[f].result or {} for f in (first, later))
    assert first_ref["ref"] == later_ref["ref"]
    (record,) = [p async for p in clinic.front_desk.search("Patient", {"_count": "100"})]
    assert f"Patient/{record['id']}" == first_ref["ref"]
    keys = [i["value"] for i in record["identifier"] if i["system"] == IDENTIFIER_SYSTEM]
    assert keys == [items[first].key]
    return record


def delivered(clinic: Clinic, fact: str) -> Callable[[], Any]:
    async def check() -> bool:
        item = (await clinic.items()).get(fact)
        return item is not None and item.status is ItemStatus.SYNCED

    return check


async def test_two_facts_about_a_new_patient_make_one_record(
    clinic: Clinic, sandbox: SandboxServer
) -> None:
    first = await clinic.create(0)
    dispatcher = clinic.dispatcher()
    await dispatcher.feed.step()
    entity_id = (await clinic.items())[first].entity_id
    later = await clinic.verified(entity_id, {"phone.home": phone(781, 0)})
    await dispatcher.feed.step()  # queued as a create too: the first has not landed yet
    assert (await clinic.items())[later].payload["ref"] is None
    await running_until([dispatcher], delivered(clinic, later), what="both delivered")
    record = await one_record(clinic, first, later)
    telecom = {(t.get("use"), t["value"]) for t in record["telecom"]}
    assert telecom == {("mobile", phone(508, 0)), ("home", phone(781, 0))}
    assert len(await clinic.history(record["id"])) == 2


async def test_a_create_whose_echo_was_lost_is_updated_by_the_next_fact(
    clinic: Clinic, sandbox: SandboxServer
) -> None:
    first = await clinic.create(0)
    crashed = clinic.dispatcher()
    crashed.echo = None  # killed after the create was settled, before its echo was recorded
    await running_until([crashed], delivered(clinic, first), what="created")
    entity_id = (await clinic.items())[first].entity_id
    later = await clinic.verified(entity_id, {"phone.home": phone(781, 0)})
    await running_until([clinic.dispatcher()], delivered(clinic, later), what="updated")
    record = await one_record(clinic, first, later)
    assert phone(781, 0) in {t["value"] for t in record["telecom"]}


async def test_a_second_fact_the_create_carried_is_not_cancelled_by_the_create_echo(
    clinic: Clinic, sandbox: SandboxServer
) -> None:
    first = await clinic.create(0)
    event = await clinic.backend.worldmodel.get_event(WS, first)
    assert event is not None
    later = await clinic.verified(event.entity_id, {"phone.home": phone(781, 0)})
    dispatcher = clinic.dispatcher()
    await dispatcher.feed.step()  # both queued: the create carries the home number too
    # the create alone delivered and echoed, as a dispatcher does (the later item waits)
    outbox = clinic.backend.outbox
    (claim,) = await outbox.claim(WS, "ehr", "runner-1", limit=4, lease=timedelta(seconds=30))
    assert claim.item.event_id == first
    (rt,) = dispatcher.sinks.values()
    created = await rt.sink.send(claim.item)
    attempt = Attempt(
        item_id=claim.item.id,
        epoch=claim.epoch,
        started_at=_now(),
        finished_at=_now(),
        outcome="synced",
    )
    settle = Settle(status=ItemStatus.SYNCED, attempt=attempt, result=created.as_result())
    assert await outbox.settle(WS, claim.item.id, claim.epoch, settle)
    assert dispatcher.echo is not None
    await dispatcher.echo("ehr", claim.item, created)
    # a feed that decides the later fact again now (another runner's, or the reconcile loop's
    # trailing one) finds its value the EHR's: there already, so not cancelled
    assert (await clinic.reconciler(rt.sink).round()).missing == 0
    assert (await clinic.items())[later].status is ItemStatus.PENDING
    await running_until([dispatcher], delivered(clinic, later), what="the later fact settled")
    record = await one_record(clinic, first, later)
    assert len(await clinic.history(record["id"])) == 1  # the create carried it: no update


# -- Medplum -----------------------------------------------------------------------------------


class LostAnswers(httpx.AsyncBaseTransport):
    """Sends every request; the answers to the first ``writes`` writes are lost on the way
    back (the server stored them: the client cannot tell)."""

    def __init__(self, writes: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.writes = writes
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method in ("POST", "PUT") and self.lost < self.writes:
            self.lost += 1
            await response.aclose()
            raise httpx.RemoteProtocolError("connection closed before the answer", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.fhir_server
async def test_against_medplum_lost_answers_are_found_and_every_write_lands_once(
    backend: Backend, medplum: MedplumServer
) -> None:
    await medplum.reset()
    async with FhirClient(medplum.base_url) as front_desk:
        clinic = Clinic(backend=backend, base_url=medplum.base_url, front_desk=front_desk)
        await clinic.backlog(creates=3, updates=3)
        lost = LostAnswers(writes=4)
        await running_until(
            [clinic.dispatcher(transport=lost)], clinic.all_settled, what="every item settled"
        )
        assert lost.lost == 4
        await clinic.landed_once()
        assert (await outcomes(clinic))["found"] >= 1
        sink = FhirSink("ehr", sink_client("ehr", medplum.base_url))
        try:
            report = await clinic.reconciler(sink).round()
        finally:
            await sink.aclose()
        assert (report.confirmed, report.reopened, report.unknown) == (6, 0, 0)
