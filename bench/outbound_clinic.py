"""What the outbound benchmark drives: a clinic of patients at a sandbox EHR (in a process of its
own) and in a world model, each with one verified voice fact waiting to go out, and the
dispatcher that sends them.

Every patient exists at the EHR first and was polled in a day before (so a fact verified now is
news there, not a rival change), and its fact is a new mobile number: the FHIR sink reads the
record and writes it back with ``If-Match`` (two requests an item). The sandbox's database is a
file the benchmark reads after a run to count the versions written.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from ehrbridge.budget import BudgetRegistry, RequestBudget
from ehrbridge.confidence import Level
from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.reader import Unit, resource_entry
from ehrbridge.outbound.dispatch import DEFAULT_CATCH_UP, Dispatcher, SinkRuntime
from ehrbridge.outbound.echo import SinkEcho
from ehrbridge.outbound.gates import SinkPolicy
from ehrbridge.outbound.limits import (
    AdaptiveLimiter,
    BreakerLimits,
    CircuitBreaker,
    ConcurrencyLimits,
    RetryLimits,
)
from ehrbridge.outbound.outbox import ItemQuery, ItemStatus
from ehrbridge.outbound.sinks.fhir import FhirSink, sink_client
from ehrbridge.sandbox.store import ResourceStore
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.events import EventType, NewEvent, RecordKey, Source
from ehrbridge.worldmodel.model import WorldModel

WS = "bench"
SINK = "ehr"
JUDGE = Source(kind="review", id="grounding/1")
#: how long ago the EHR's records were written (and polled in)
AGE = timedelta(days=1)
#: facts appended per batch while the backlog is built
BATCH = 500
#: items per outbox listing page
PAGE = 1000


def patient(n: int) -> dict[str, Any]:
    """A made-up Patient ``n`` with mobile number :func:`old_phone`."""
    return {
        "resourceType": "Patient",
        "id": f"b{n:06d}",
        "name": [{"family": f"Bench{n}", "given": ["Ana"], "use": "official"}],
        "telecom": [{"system": "phone", "value": old_phone(n), "use": "mobile"}],
        "birthDate": (date(1940, 1, 1) + timedelta(days=n)).isoformat(),
        "gender": ("female", "male")[n % 2],
    }


def old_phone(n: int) -> str:
    return f"+1617{n:07d}"


def new_phone(n: int) -> str:
    return f"+1857{n:07d}"


def seed_sandbox(db: Path, patients: int) -> list[dict[str, Any]]:
    """``patients`` Patients written into a sandbox database as of :data:`AGE` ago; returns them
    as stored (with their ``meta``)."""
    store = ResourceStore(db)
    stored = []
    try:
        with store.writing_as_of(datetime.now(UTC) - AGE), store.atomic():
            for n in range(patients):
                version = store.put("Patient", f"b{n:06d}", patient(n))
                assert version.resource is not None
                stored.append(version.resource)
    finally:
        store.close()
    return stored


def versions_written(db: Path) -> Counter[str]:
    """Versions per Patient id in the sandbox database (read once the run is over)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT id, count(*) FROM resource_version WHERE type = 'Patient' GROUP BY id"
        ).fetchall()
    return Counter({row[0]: row[1] for row in rows})


@dataclass
class Requests:
    """Every request the sink sent, as the client saw it go out: start times and statuses."""

    started: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def rate(self) -> float:
        """Requests per second from the first request's start to the last one's."""
        if len(self.started) < 2:
            return 0.0
        return (len(self.started) - 1) / (self.started[-1] - self.started[0])


class CountingTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport that records each request it sends (under the sink's budget)."""

    def __init__(self, requests: Requests) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._requests = requests

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._requests.started.append(time.monotonic())
        response = await self._inner.handle_async_request(request)
        self._requests.statuses[response.status_code] += 1
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    """A sandbox EHR serving from a process of its own."""

    base_url: str
    pid: int
    #: its database (read it only once the run is over)
    db: Path
    #: the Patients it was seeded with, as stored
    patients: list[dict[str, Any]]


@contextmanager
def sandbox(folder: Path, patients: int) -> Iterator[Sandbox]:
    """``ehrbridge sandbox`` on a free port over a fresh database of ``patients`` Patients."""
    db = folder / f"sandbox-{time.monotonic_ns()}.db"
    stored = seed_sandbox(db, patients)
    command = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "sandbox"]
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*command, "--port", "0", "--db", str(db), "--no-seed"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening "):
            raise SystemExit(f"the sandbox did not start: {line!r}")
        yield Sandbox(base_url=line.split()[1], pid=process.pid, db=db, patients=stored)
    finally:
        process.terminate()
        process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


async def set_faults(base_url: str, **plan: Any) -> None:
    """Replace the sandbox's fault plan (``POST /$faults``)."""
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{base_url.removesuffix('/fhir/R4')}/$faults", json=plan)
    response.raise_for_status()


async def faults_injected(base_url: str) -> dict[str, int]:
    """What the sandbox injected since its plan was last cleared, by kind."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{base_url.removesuffix('/fhir/R4')}/$faults")
    response.raise_for_status()
    injected: dict[str, int] = response.json()["injected"]
    return injected


async def import_patients(backend: Backend, resources: list[dict[str, Any]]) -> list[str]:
    """The Patients polled into the world model; returns their entity ids, in order."""
    # every Patient is a person of their own: nothing to resolve
    importer = Importer(WorldModel(backend.worldmodel, WS), source=SINK, resolve=False)
    for start in range(0, len(resources), BATCH):
        chunk = resources[start : start + BATCH]
        entries = [resource_entry(f"entry[{i}]", r) for i, r in enumerate(chunk)]
        await importer.import_units([Unit(file="poll", kind="searchset", entries=entries)])
    keys = [
        RecordKey(data_source=SINK, resource_type="Patient", external_id=r["id"]) for r in resources
    ]
    rows = await backend.worldmodel.record_entities(WS, keys)
    return [rows[key][1] for key in keys]


async def verified_fact(model: WorldModel, entity_id: str, n: int) -> datetime:
    """Patient ``n``'s new mobile number, heard on a call and verified by the judge; returns when
    the re-grade was committed (as this process saw it return)."""
    written = await model.write_voice(
        "Patient",
        entity_id,
        {"phone.mobile": new_phone(n)},
        level=Level.VOICE_CONFIRMED,
        agent="agent-1",
        call_id=f"call-{n}",
    )
    await model.regrade(f"Patient/{entity_id}", written.events[0].id, Level.VERIFIED, by=JUDGE)
    return datetime.now(UTC)


async def verified_facts(model: WorldModel, entity_ids: list[str]) -> None:
    """What :func:`verified_fact` writes, for every entity, :data:`BATCH` at a time (the same
    events, in fewer transactions)."""
    for start in range(0, len(entity_ids), BATCH):
        heard = [
            NewEvent(
                workspace=WS,
                entity_type="Patient",
                entity_id=entity_id,
                data={"phone.mobile": new_phone(n)},
                source=Source(kind="voice", id="agent-1"),
                confidence=Level.VOICE_CONFIRMED.value,
                effective_at=datetime.now(UTC),
                correlation_id=f"call-{n}",
            )
            for n, entity_id in enumerate(entity_ids[start : start + BATCH], start)
        ]
        written = await model.record(heard)
        await model.record(
            [
                NewEvent(
                    workspace=WS,
                    entity_type="Patient",
                    entity_id=result.entity_id,
                    event_type=EventType.REGRADED,
                    data={"target": result.events[0].id},
                    source=JUDGE,
                    confidence=Level.VERIFIED.value,
                    effective_at=datetime.now(UTC),
                )
                for result in written
            ]
        )


def dispatcher(
    backend: Backend,
    base_url: str,
    budget: RequestBudget,
    *,
    holder: str = "bench",
    requests: Requests | None = None,
    catch_up: timedelta = DEFAULT_CATCH_UP,
) -> Dispatcher:
    """A dispatcher as ``ehrbridge run`` builds one (runner/sinks.py) for the sandbox as sink
    ``ehr``: its requests under the budget ``sink:ehr`` shared through the database."""
    budgets = BudgetRegistry(backend.runner, WS)
    transport = CountingTransport(requests) if requests is not None else None
    client = sink_client(SINK, base_url, budgets=budgets, limit=budget, transport=transport)
    runtime = SinkRuntime(
        sink=FhirSink(SINK, client),
        policy=SinkPolicy(sink=SINK, entity_types=frozenset({"Patient"})),
        retry=RetryLimits(),
        breaker=CircuitBreaker(BreakerLimits(), clock=lambda: datetime.now(UTC)),
        limiter=AdaptiveLimiter(ConcurrencyLimits(max=budget.concurrency)),
    )
    model = WorldModel(backend.worldmodel, WS)
    return Dispatcher(
        backend.worldmodel,
        backend.outbox,
        [runtime],
        workspace=WS,
        holder=holder,
        echo=SinkEcho(model),
        catch_up=catch_up,
    )


async def queue_all(dispatch: Dispatcher) -> None:
    """Run the feed until the log is read to its end (every verified fact queued)."""
    while (await dispatch.feed.step()).events:
        pass


async def open_items(backend: Backend) -> int:
    """Items still pending or in flight."""
    return sum(d.pending + d.processing for d in await backend.outbox.depth(WS))


async def settled(backend: Backend) -> Counter[str]:
    """Items by status."""
    counts: Counter[str] = Counter()
    for status in ItemStatus:
        before = None
        while items := await backend.outbox.items(
            WS, ItemQuery(status=status, before=before, limit=PAGE)
        ):
            counts[status.value] += len(items)
            before = items[-1].position
    return counts
