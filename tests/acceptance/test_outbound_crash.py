"""``ehrbridge run`` with a sink, killed with SIGKILL at random moments while it drains the outbox
into the sandbox EHR and started again, 20 times: in the end every verified fact is synced and
the sandbox holds each write exactly once (docs/design.md §9). On SQLite one runner; on
PostgreSQL four on one database, killed in turn.

The backlog: creates (voice facts about new patients, a third of them with a second fact that
updates the record the first creates) and updates (a new mobile number of a patient the EHR
holds), each verified by a judge's re-grade written before the runs, and a few
more before each restart, so every kill lands in a drain. The sandbox answers slowly and the
sink's rate is low, so kills fall between a write and its settlement as often as not. Set
``EHRBRIDGE_CRASH_SEED`` to replay a run; the seed is printed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

from ehrbridge.confidence import Level
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.reader import Unit, resource_entry
from ehrbridge.outbound.outbox import FINAL, ItemQuery, ItemStatus, OutboxItem
from ehrbridge.outbound.sinks import IDENTIFIER_SYSTEM
from ehrbridge.sandbox.faults import FaultPlan
from ehrbridge.storage import Backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.events import RecordKey, Source, new_id
from ehrbridge.worldmodel.model import WorldModel
from tests.conftest import POSTGRES_DSN
from tests.sandbox_server import SandboxServer

pytestmark = pytest.mark.slow
COMMAND = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "run", "--config"]
WS = "clinic"
KILLS = 20
#: the backlog before the first run, and what is added before each restart
CREATES, UPDATES = 24, 12
MORE_CREATES, MORE_UPDATES = 2, 1
JUDGE = Source(kind="review", id="grounding/1")
#: how long the test waits for the runners to reach a state (generous: shared machines; the
#: items a killed runner held wait out their 30 s lease)
PATIENCE = 240.0
CONFIG = """\
workspace: clinic
database: {database}
runner: {{lease_ttl: 1s}}
data_sources:
  - id: ehr
    kind: fhir
    base_url: {base_url}
    outbound:
      entity_types: [Patient]
      rate: 20/s
      concurrency: 4
      retries: {{max_attempts: 100, backoff: {{base: 100ms, max: 1s}}}}
"""


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """The real clock: the runners reckon leases and retries in real time."""
    return _now


def database_url(backend: Backend) -> str:
    """The test's database, as a runner's config names it."""
    store = backend.worldmodel
    if isinstance(store, PostgresStore):
        return f"{POSTGRES_DSN}?options=-csearch_path%3D{store.schema}"
    assert isinstance(store, SQLiteStore)
    return f"sqlite:///{store.path}"


def birth_date(n: int) -> str:
    """A birth date of its own for patient ``n`` (up to 1200 of them)."""
    return f"{1930 + n // 12 % 100}-{1 + n % 12:02d}-{1 + n % 28:02d}"


@dataclass
class Backlog:
    """The verified facts written for the runners to deliver."""

    backend: Backend
    model: WorldModel
    front_desk: FhirClient
    #: create facts: event id → the new patient's family name
    creates: dict[str, str] = field(default_factory=dict)
    #: update facts: event id → (the patient's id at the EHR, the new mobile number)
    updates: dict[str, tuple[str, str]] = field(default_factory=dict)

    #: second facts about new patients: event id → (the create's fact, the home number)
    follow_ups: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def facts(self) -> set[str]:
        return set(self.creates) | set(self.updates) | set(self.follow_ups)

    async def add(self, creates: int, updates: int) -> None:
        for _ in range(creates):
            n = len(self.creates)
            family = f"Crash{n:03d}"
            entity_id = new_id()
            fact = await self.verified(
                entity_id,
                {
                    "name.family": family,
                    "name.given": ["Ana"],
                    "birth_date": birth_date(n),
                    "gender": "female",
                    "phone.mobile": f"+1508555{100 + n % 100:04d}",
                },
            )
            self.creates[fact] = family
            if n % 3 == 0:  # a second fact, most often queued before the create lands
                home = f"+1781555{100 + n % 100:04d}"
                self.follow_ups[await self.verified(entity_id, {"phone.home": home})] = (fact, home)
        for _ in range(updates):
            n = len(self.updates)
            fhir_id, entity_id = await self.patient_at_ehr(f"Known{n:03d}", n)
            phone = f"+1857555{100 + n % 100:04d}"
            fact = await self.verified(entity_id, {"phone.mobile": phone})
            self.updates[fact] = (fhir_id, phone)

    async def verified(self, entity_id: str, data: dict[str, Any]) -> str:
        """A voice fact, re-graded verified by the judge: its event id."""
        written = await self.model.write_voice(
            "Patient", entity_id, data, level=Level.VOICE_CONFIRMED, agent="agent-1"
        )
        fact = written.events[0].id
        await self.model.regrade(f"Patient/{entity_id}", fact, Level.VERIFIED, by=JUDGE)
        return fact

    async def patient_at_ehr(self, family: str, n: int) -> tuple[str, str]:
        """A patient created at the EHR and polled in, an hour old: (FHIR id, entity id). Each
        has its own phone and birth date, so identity resolution keeps them apart."""
        created = await self.front_desk.create(
            {
                "resourceType": "Patient",
                "name": [{"family": family, "given": ["Ana"], "use": "official"}],
                "telecom": [
                    {"system": "phone", "value": f"+1617555{100 + n % 100:04d}", "use": "mobile"}
                ],
                "birthDate": birth_date(n + 600),
            }
        )
        assert created.id is not None and created.resource is not None
        resource = dict(created.resource)
        an_hour_ago = (_now() - timedelta(hours=1)).isoformat()
        resource["meta"] = {**resource.get("meta", {}), "lastUpdated": an_hour_ago}
        unit = Unit(file="poll", kind="searchset", entries=[resource_entry("entry[0]", resource)])
        await Importer(self.model, source="ehr").import_units([unit])
        key = RecordKey(data_source="ehr", resource_type="Patient", external_id=created.id)
        rows = await self.backend.worldmodel.record_entities(WS, [key])
        return created.id, rows[key][1]

    async def story(self, item: OutboxItem) -> list[str]:
        """The item's entity's events, without their values: what a failure shows."""
        kind = (
            "create"
            if item.event_id in self.creates
            else "follow-up"
            if item.event_id in self.follow_ups
            else "update"
        )
        events = await self.backend.worldmodel.read_entity(WS, item.entity_type, item.entity_id)
        return [kind] + [
            f"{'*' if e.id == item.event_id else ''}{e.event_type.value} {e.source.kind}/"
            f"{e.source.id} {sorted(e.fields)} {e.confidence}"
            for e in events
        ]

    async def items(self) -> list[OutboxItem]:
        return await self.backend.outbox.items(WS, ItemQuery(limit=1000))


@pytest.fixture
async def backlog(backend: Backend, sandbox: SandboxServer) -> AsyncIterator[Backlog]:
    await sandbox.reset()
    async with FhirClient(sandbox.base_url) as front_desk:
        yield Backlog(
            backend=backend, model=WorldModel(backend.worldmodel, WS), front_desk=front_desk
        )


class Runners:
    """``ehrbridge run`` processes on the test's config, their output in one log file."""

    def __init__(self, config: Path, log: IO[bytes]) -> None:
        self.config = config
        self.log = log
        self.killed: list[int] = []

    def start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 (fixed arguments)
            [*COMMAND, str(self.config)], stdout=self.log, stderr=self.log
        )

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        self.killed.append(process.wait(timeout=30))

    @staticmethod
    def stop(process: subprocess.Popen[bytes]) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.wait(timeout=60)


async def wait_until(check: Callable[[], Any], what: str, backlog: Backlog) -> None:
    try:
        async with asyncio.timeout(PATIENCE):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.05)  # the runners are other processes: poll the outbox
    except TimeoutError:
        seen = Counter((i.status.value, i.in_doubt) for i in await backlog.items())
        pytest.fail(f"the runners did not get to: {what}; the outbox holds {dict(seen)}")


def claims(items: list[OutboxItem]) -> int:
    """Claims made so far, by every runner (each claim increments its item's epoch)."""
    return sum(i.epoch for i in items)


async def drain_with_kills(backlog: Backlog, runners: Runners, count: int, seed: int) -> None:
    """Start ``count`` runners; kill one at a random moment once a claim shows it drains, add
    a little more work, start it again; ``KILLS`` times in all, the runners killed in turn.
    Then let them drain the rest and stop them."""
    rng = random.Random(seed)
    processes = [runners.start() for _ in range(count)]
    try:
        for k in range(KILLS):
            before = claims(await backlog.items())

            async def claimed(before: int = before) -> bool:
                return claims(await backlog.items()) > before

            await wait_until(claimed, f"a claim before kill {k + 1}", backlog)
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            victim = k % count
            runners.kill(processes[victim])
            await backlog.add(MORE_CREATES, MORE_UPDATES)
            processes[victim] = runners.start()

        async def drained() -> bool:
            items = await backlog.items()
            return len(items) == len(backlog.facts) and all(i.status in FINAL for i in items)

        await wait_until(drained, "every item settled", backlog)
    finally:
        codes = [runners.stop(p) for p in processes]
    assert codes == [0] * count
    assert runners.killed == [-signal.SIGKILL] * KILLS


async def test_runners_killed_mid_drain_sync_every_item_exactly_once(
    backlog: Backlog, sandbox: SandboxServer, tmp_path: Path, backend: Backend
) -> None:
    seed = int(os.environ.get("EHRBRIDGE_CRASH_SEED") or random.randrange(2**32))
    print(f"EHRBRIDGE_CRASH_SEED={seed}")
    await backlog.add(CREATES, UPDATES)
    # every request waits a little: writes are in flight when the kills come
    sandbox.app.faults.set(FaultPlan(latency=0.05))
    config = tmp_path / "runner.yaml"
    config.write_text(CONFIG.format(database=database_url(backend), base_url=sandbox.base_url))
    count = 4 if isinstance(backend.worldmodel, PostgresStore) else 1
    with (tmp_path / "runners.log").open("wb") as log:
        await drain_with_kills(backlog, Runners(config, log), count, seed)
    sandbox.app.faults.clear()

    items = await backlog.items()
    # one item per fact, every one synced
    assert sorted(i.event_id or "" for i in items) == sorted(backlog.facts)
    unsynced = {
        i.event_id: (i.status.value, i.last_error, await backlog.story(i))
        for i in items
        if i.status is not ItemStatus.SYNCED
    }
    assert unsynced == {}
    by_fact = {i.event_id: i for i in items}

    at_ehr = [p async for p in backlog.front_desk.search("Patient", {"_count": "100"})]
    keys = Counter(
        ident["value"]
        for p in at_ehr
        for ident in p.get("identifier", [])
        if ident.get("system") == IDENTIFIER_SYSTEM
    )
    # every create landed once, as the record the item names; nothing else was created
    assert keys == Counter({by_fact[fact].key: 1 for fact in backlog.creates})
    assert len(at_ehr) == len(backlog.creates) + len(backlog.updates)
    refs = {f"Patient/{p['id']}": p for p in at_ehr}
    for fact, family in backlog.creates.items():
        result = by_fact[fact].result
        assert result is not None
        assert refs[result["ref"]]["name"][0]["family"] == family
    # a new patient's second fact updated the record its first created, once
    for fact, (create, home) in backlog.follow_ups.items():
        result, created = by_fact[fact].result, by_fact[create].result
        assert result is not None and created is not None and result["ref"] == created["ref"]
        history = [v async for v in backlog.front_desk.history(*result["ref"].split("/"))]
        # one version when the create carried it already (both verified before it was queued)
        created_with_it = home in {t["value"] for t in history[-1]["telecom"]}
        assert len(history) == (1 if created_with_it else 2), fact
        assert home in {t["value"] for t in history[0]["telecom"]}
    # every update landed once: created by the front desk, updated once by a runner
    for fact, (fhir_id, phone) in backlog.updates.items():
        history = [v async for v in backlog.front_desk.history("Patient", fhir_id)]
        assert len(history) == 2, fact
        assert phone in {t["value"] for t in history[0]["telecom"]}
