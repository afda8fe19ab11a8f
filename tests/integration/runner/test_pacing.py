"""Inbound pacing against the sandbox EHR's requests-per-second limit, on both backends.

The sandbox counts every request it receives (a :class:`CountingFaults` plan). Issue 10: with the
sandbox limited to 3 requests/s, 17 poll tasks of one source drove it to down. Now the source's
budget holds for every task and every runner on the database together, a 429's ``Retry-After``
stops all of them for that long, and the source stays healthy.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ehrbridge.budget import BudgetRegistry, RequestBudget
from ehrbridge.connectors.fhir.poller import FhirPoller
from ehrbridge.connectors.source import DataSourceConfig, ResourceConfig
from ehrbridge.fhir.client import FhirClient
from ehrbridge.http.retry import RetryPolicy
from ehrbridge.runner.config import RunnerConfig, Timing
from ehrbridge.runner.health import source_health
from ehrbridge.runner.service import Runner
from ehrbridge.runner.store import RunnerStore
from ehrbridge.sandbox.app import SandboxApp
from ehrbridge.sandbox.faults import Decision, FaultPlan, Faults
from ehrbridge.sandbox.serve import running_sandbox
from tests.conftest import MakeBackend

WS = "clinic"
LIMIT = 3  # the sandbox's requests per second
TYPES = [
    "Patient",
    "Practitioner",
    "Organization",
    "Location",
    "Encounter",
    "Observation",
    "Condition",
    "Procedure",
    "MedicationRequest",
    "Immunization",
    "AllergyIntolerance",
    "DiagnosticReport",
    "Appointment",
    "Coverage",
    "CarePlan",
    "Claim",
    "DocumentReference",
]


class CountingFaults(Faults):
    """The sandbox's fault plan, also noting when each request arrived and what it got."""

    def __init__(self) -> None:
        super().__init__()
        #: (monotonic seconds, status injected or None) per FHIR request
        self.arrivals: list[tuple[float, int | None]] = []

    def decide(self, method: str, *, read: bool) -> Decision:
        at = time.monotonic()
        decision = super().decide(method, read=read)
        self.arrivals.append((at, decision.status))
        return decision

    def per_window(self) -> dict[int, int]:
        """Requests received per one-second window (the windows the sandbox limits in)."""
        counts: dict[int, int] = {}
        for at, _ in self.arrivals:
            counts[math.floor(at)] = counts.get(math.floor(at), 0) + 1
        return counts


@dataclass
class Sandbox:
    base_url: str
    app: SandboxApp
    faults: CountingFaults = field(default_factory=CountingFaults)


@pytest.fixture(scope="module")
def paced_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    faults = CountingFaults()
    app = SandboxApp(tmp_path_factory.mktemp("paced") / "sandbox.db", seed=False, faults=faults)
    try:
        with running_sandbox(app) as base_url:
            yield Sandbox(base_url=base_url, app=app, faults=faults)
    finally:
        app.close()


@pytest.fixture
def sandbox(paced_sandbox: Sandbox) -> Sandbox:
    paced_sandbox.app.reset()
    paced_sandbox.faults.arrivals.clear()
    return paced_sandbox


def source(base_url: str, budget: RequestBudget, types: list[str]) -> DataSourceConfig:
    resources = tuple(ResourceConfig(type=t, every=timedelta(milliseconds=50)) for t in types)
    return DataSourceConfig(
        id="ehr", kind="fhir", base_url=base_url, resources=resources, budget=budget
    )


@dataclass
class Instance:
    """One runner service: its own database connection, budgets and poller."""

    runner: Runner
    store: RunnerStore
    poller: FhirPoller
    task: asyncio.Task[None]


async def start(make_backend: MakeBackend, config: RunnerConfig) -> Instance:
    from ehrbridge.worldmodel.model import WorldModel

    backend = await make_backend()
    store, runner_store = backend.worldmodel, backend.runner
    budgets = BudgetRegistry(runner_store, WS)
    fast = RetryPolicy(max_retries=3, backoff=0.05)

    def client(s: DataSourceConfig) -> FhirClient:
        return FhirClient(s.base_url, retry=fast, transport=budgets.transport(s.id, s.budget))

    poller = FhirPoller(WorldModel(store, WS), runner_store, client_for=client, budgets=budgets)
    runner = Runner(
        config,
        pollers={"fhir": poller},
        outcomes=runner_store,
        leases=runner_store,
        timing=Timing(lease_ttl=timedelta(seconds=1)),
    )
    return Instance(
        runner=runner, store=runner_store, poller=poller, task=asyncio.create_task(runner.run())
    )


async def stop(instances: list[Instance]) -> None:
    for instance in instances:
        instance.runner.stop()
    for instance in instances:
        await instance.task
        await instance.poller.aclose()


async def wait_until(check: Callable[[], Awaitable[bool]], seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 (the check reads the database)
            await asyncio.sleep(0.05)


async def every_type_polled_ok(store: RunnerStore, types: list[str], times: int = 1) -> bool:
    outcomes = await store.recent_outcomes(WS)
    ok = {t: sum(o.ok for o in outcomes if o.resource_type == t) for t in types}
    return all(n >= times for n in ok.values())


@pytest.fixture
async def two_runners(
    make_backend: MakeBackend, sandbox: Sandbox
) -> AsyncIterator[Callable[[RunnerConfig], Awaitable[list[Instance]]]]:
    started: list[Instance] = []

    async def run(config: RunnerConfig) -> list[Instance]:
        started.extend([await start(make_backend, config), await start(make_backend, config)])
        return started

    yield run
    await stop(started)


async def test_seventeen_tasks_of_two_runners_keep_to_the_sources_limit(
    sandbox: Sandbox, two_runners: Callable[[RunnerConfig], Awaitable[list[Instance]]]
) -> None:
    sandbox.app.faults.set(FaultPlan(rate_limit=LIMIT))
    budget = RequestBudget(rate=LIMIT, concurrency=4)
    config = RunnerConfig(
        workspace=WS,
        database="sqlite:///unused.db",
        data_sources=(source(sandbox.base_url, budget, TYPES),),
    )
    first, _ = await two_runners(config)
    await wait_until(lambda: every_type_polled_ok(first.store, TYPES))
    arrivals = list(sandbox.faults.arrivals)
    span = arrivals[-1][0] - arrivals[0][0]
    # At the limit's pace over the whole run (one window's worth of slack at its ends) ...
    assert len(arrivals) <= LIMIT * span + LIMIT + 1, (len(arrivals), span)
    # ... and in every one of the sandbox's windows, allowing one request of jitter.
    assert max(sandbox.faults.per_window().values()) <= LIMIT + 1, sandbox.faults.per_window()
    assert sandbox.app.faults.injected["rate_limit"] <= 2
    # The source is healthy: no type failed a poll.
    outcomes = await first.store.recent_outcomes(WS)
    (health,) = source_health(outcomes, datetime.now(UTC))
    assert health.status == "healthy", health
    assert all(o.ok for o in outcomes)


async def test_a_429_stops_every_task_of_every_runner_for_its_retry_after(
    make_backend: MakeBackend, sandbox: Sandbox
) -> None:
    # Two runners' budgets on two connections, as the outbound half will have them (every
    # runner drains a sink): the pace is shared through the database alone.
    budget = RequestBudget(rate=20, concurrency=3)
    registries = [BudgetRegistry((await make_backend()).runner, WS) for _ in range(2)]
    clients = [
        httpx.AsyncClient(transport=r.transport("ehr", budget)) for r in registries for _ in "abc"
    ]
    pause = 2.0
    stop_at = time.monotonic() + 3 * pause
    throttled = asyncio.Event()

    async def hammer(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            response = await client.get(f"{sandbox.base_url}/Patient")
            if response.status_code == 429:
                throttled.set()

    try:
        tasks = [asyncio.create_task(hammer(c)) for c in clients]
        await asyncio.sleep(0.5)
        sandbox.app.faults.set(FaultPlan(throttle=1, retry_after=int(pause)))
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.aclose()
    assert throttled.is_set()
    [(at_429, _)] = [(at, s) for at, s in sandbox.faults.arrivals if s == 429]
    during = [at for at, _ in sandbox.faults.arrivals if at_429 < at < at_429 + pause - 0.05]
    # Only requests already on their way when the 429 came (a seat each) arrive in the pause.
    assert all(at < at_429 + 0.25 for at in during), [round(at - at_429, 3) for at in during]
    assert len(during) <= 2 * budget.concurrency
    # Then it goes on, still at the budget's pace.
    after = [at for at, _ in sandbox.faults.arrivals if at >= at_429 + pause - 0.05]
    assert after
    before = [at for at, _ in sandbox.faults.arrivals if at < at_429]
    span = before[-1] - before[0]
    assert len(before) <= budget.rate * span + 2


async def test_the_runner_sends_nothing_during_a_pause_and_stays_healthy(
    sandbox: Sandbox, two_runners: Callable[[RunnerConfig], Awaitable[list[Instance]]]
) -> None:
    types = TYPES[:5]
    config = RunnerConfig(
        workspace=WS,
        database="sqlite:///unused.db",
        data_sources=(source(sandbox.base_url, RequestBudget(rate=20, concurrency=4), types),),
    )
    first, _ = await two_runners(config)
    await wait_until(lambda: every_type_polled_ok(first.store, types))
    sandbox.app.faults.set(FaultPlan(throttle=1, retry_after=2))
    await wait_until(lambda: _throttled(sandbox))
    at_429 = next(at for at, s in sandbox.faults.arrivals if s == 429)
    await wait_until(lambda: every_type_polled_ok(first.store, types, times=3))
    during = [at for at, _ in sandbox.faults.arrivals if at_429 < at < at_429 + 1.95]
    assert all(at < at_429 + 0.25 for at in during), [round(at - at_429, 3) for at in during]
    outcomes = await first.store.recent_outcomes(WS)
    (health,) = source_health(outcomes, datetime.now(UTC))
    assert health.status == "healthy", health
    # The throttled poll waited and went on: no poll failed.
    assert all(o.ok for o in outcomes)


async def _throttled(sandbox: Sandbox) -> bool:
    return sandbox.app.faults.injected["throttle"] == 1
