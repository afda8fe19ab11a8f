"""The runner against the sandbox EHR's faults, on both backends: an outage, 429s, connection
resets. The cursor never moves past data that was not stored, ``Retry-After`` is honoured, and
the source's health goes degraded, then down, and back to healthy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ehrbridge.connectors.fhir.poller import FhirPoller
from ehrbridge.connectors.source import DataSourceConfig, ResourceConfig
from ehrbridge.fhir.client import FhirClient
from ehrbridge.http.retry import RetryPolicy
from ehrbridge.runner.config import RunnerConfig
from ehrbridge.runner.health import SourceHealth, source_health
from ehrbridge.runner.service import Runner
from ehrbridge.runner.store import RunnerStore
from ehrbridge.sandbox.faults import FaultPlan
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store
from tests.sandbox_server import SandboxServer

WS = "clinic"
CADENCE = timedelta(milliseconds=50)
FHIR_JSON = {"content-type": "application/fhir+json"}
FAMILIES = ["Santos", "Okafor", "Lindqvist", "Haddad", "Moreau"]


@dataclass
class Sleeps:
    """The client's waits between retries: recorded, and kept short."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0.01)


@dataclass
class Running:
    runner: Runner
    store: RunnerStore
    sleeps: Sleeps
    server: SandboxServer

    async def health(self) -> SourceHealth:
        outcomes = await self.store.recent_outcomes(WS)
        [health] = source_health(outcomes, datetime.now(UTC))
        return health

    async def cursor(self) -> str | None:
        return await self.store.get_cursor(WS, "ehr", "Patient")


async def wait_until(check: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    """Poll ``check`` until it holds; fail after ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def create_patient(server: SandboxServer, n: int) -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": FAMILIES[n], "given": ["Alex"]}],
        "birthDate": f"19{50 + 7 * n}-0{1 + n}-1{n}",
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{server.base_url}/Patient",
            json=patient,
            headers={"content-type": "application/fhir+json"},
        )
    response.raise_for_status()


@pytest.fixture
async def running(sandbox: SandboxServer, store: Store, backend: Backend) -> AsyncIterator[Running]:
    await sandbox.reset()
    runner_store = backend.runner
    sleeps = Sleeps()
    resource = ResourceConfig(type="Patient", every=CADENCE, page_size=2)
    source = DataSourceConfig(
        id="ehr", kind="fhir", base_url=sandbox.base_url, resources=(resource,)
    )
    config = RunnerConfig(workspace=WS, database="sqlite:///unused.db", data_sources=(source,))
    poller = FhirPoller(
        WorldModel(store, WS),
        runner_store,
        client_for=lambda s: FhirClient(
            s.base_url, sleep=sleeps, retry=RetryPolicy(max_retries=2, backoff=0.01)
        ),
    )
    runner = Runner(config, pollers={"fhir": poller}, outcomes=runner_store, leases=runner_store)
    task = asyncio.create_task(runner.run())
    try:
        yield Running(runner=runner, store=runner_store, sleeps=sleeps, server=sandbox)
    finally:
        runner.stop()
        await task
        await poller.aclose()


async def patients(store: Store) -> int:
    return (await store.counts(WS)).entities.get("Patient", 0)


async def test_an_outage_turns_health_down_holds_the_cursor_and_recovers(
    running: Running, store: Store
) -> None:
    for n in range(3):
        await create_patient(running.server, n)

    async def synced(count: int) -> bool:
        return await patients(store) == count and (await running.health()).status == "healthy"

    await wait_until(lambda: synced(3))
    # The poll that wrote the last patient may still be storing its cursor: read it once a
    # poll that began after that has been recorded.
    settled = datetime.now(UTC)
    await wait_until(lambda: _polled_after(running, settled))
    cursor = await running.cursor()
    assert cursor is not None

    running.server.app.faults.set(FaultPlan(outage=True))
    await wait_until(lambda: _status(running, "degraded"))
    await wait_until(lambda: _status(running, "down"))
    health = await running.health()
    assert health.consecutive_errors >= 3
    assert health.last_error is not None and "503" in health.last_error
    # Nothing was read, so the cursor stayed where the stored data ends.
    assert await running.cursor() == cursor

    running.server.app.faults.clear()
    await create_patient(running.server, 3)
    await wait_until(lambda: synced(4))
    moved = await running.cursor()
    assert moved is not None and moved > cursor


async def test_429s_are_waited_out_as_the_server_asks(running: Running, store: Store) -> None:
    await create_patient(running.server, 0)
    await wait_until(lambda: _patients_are(store, 1))
    await create_patient(running.server, 1)
    running.server.app.faults.set(FaultPlan(throttle=2, retry_after=2))
    await wait_until(lambda: _injected(running, "throttle", 2))
    await wait_until(lambda: _patients_are(store, 2))
    # Each 429 was followed by the wait its Retry-After asked for.
    assert running.sleeps.delays.count(2.0) == 2
    assert (await running.health()).status == "healthy"


async def test_connection_resets_lose_nothing(running: Running, store: Store) -> None:
    await create_patient(running.server, 0)
    await wait_until(lambda: _patients_are(store, 1))
    # More resets than the client retries: some polls fail outright, later ones succeed.
    for n in range(1, 5):
        await create_patient(running.server, n)
    running.server.app.faults.set(FaultPlan(resets=7))
    await wait_until(lambda: _injected(running, "reset", 7))
    await wait_until(lambda: _patients_are(store, 5))
    await wait_until(lambda: _status(running, "healthy"))
    outcomes = await running.store.recent_outcomes(WS)
    assert any(not o.ok for o in outcomes), "some poll should have failed"
    # Everything is stored once: a quiet poll after recovery writes nothing new.
    events = (await store.counts(WS)).events
    await wait_until(lambda: _polls_since(running, len(outcomes) + 2))
    assert (await store.counts(WS)).events == events


async def _status(running: Running, status: str) -> bool:
    return (await running.health()).status == status


async def _injected(running: Running, kind: str, count: int) -> bool:
    return running.server.app.faults.injected[kind] == count


async def _patients_are(store: Store, count: int) -> bool:
    return await patients(store) == count


async def _polled_after(running: Running, moment: datetime) -> bool:
    return any(o.started_at >= moment for o in await running.store.recent_outcomes(WS))


async def _polls_since(running: Running, count: int) -> bool:
    return len(await running.store.recent_outcomes(WS)) >= count


async def test_stale_searches_never_take_the_world_model_back(
    running: Running, store: Store
) -> None:
    model = WorldModel(store, WS)
    old, new = "+16175550101", "+16175550199"
    async with httpx.AsyncClient(base_url=running.server.base_url) as http:
        body = {
            "resourceType": "Patient",
            "name": [{"family": "Santos", "given": ["Maria"]}],
            "telecom": [{"system": "phone", "value": old, "use": "mobile"}],
        }
        created = await http.post("/Patient", json=body, headers=FHIR_JSON)
        created.raise_for_status()
        await wait_until(lambda: _callers(model, old))
        changed = {**created.json(), "telecom": [{"system": "phone", "value": new}]}
        updated = await http.put(f"/Patient/{changed['id']}", json=changed, headers=FHIR_JSON)
        updated.raise_for_status()
    await wait_until(lambda: _callers(model, new))

    # A lagging replica: the next searches serve the version before the current one.
    events = (await store.counts(WS)).events
    running.server.app.faults.set(FaultPlan(stale_reads=4))
    await wait_until(lambda: _injected(running, "stale_read", 4))
    polls = len(await running.store.recent_outcomes(WS))
    await wait_until(lambda: _polls_since(running, polls + 2))
    # The older version was recognised as older than the stored one: not imported at all.
    assert (await store.counts(WS)).events == events
    assert await model.identify_caller(new)
    assert not await model.identify_caller(old)
    assert (await running.health()).status == "healthy"


async def _callers(model: WorldModel, phone: str) -> bool:
    return bool(await model.identify_caller(phone))
