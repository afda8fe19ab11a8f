"""``ehrbridge demo``'s sync: the sample clinic in an in-process sandbox EHR, pulled into the world
model by the connector runner, as ``ehrbridge run`` would with a config naming the sandbox.

The sandbox serves on a loopback socket from a background thread; the runner polls it with the
FHIR poller, one loop per resource type, and stops once every type has had a clean poll (a type
polled before the records it refers to fails its entries and is polled again, as in production).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from ehrbridge.connectors.fhir.poller import FhirPoller
from ehrbridge.connectors.source import DataSourceConfig, PollOutcome, ResourceConfig
from ehrbridge.errors import SyncFailed
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
from ehrbridge.outbound.outbox import FINAL, PARKED, ItemStatus
from ehrbridge.outbound.sinks.fhir import FhirSink, sink_client
from ehrbridge.review.grounding.judge import GroundingJudge
from ehrbridge.review.loop import ReviewLoop
from ehrbridge.runner.config import RunnerConfig
from ehrbridge.runner.service import Runner
from ehrbridge.runner.store import PollLog, RunnerStore
from ehrbridge.sample import SAMPLE_SOURCE, sample_bundles
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.events import EventType
from ehrbridge.worldmodel.model import WorldModel

#: how often each resource type is polled during the demo's sync
DEMO_CADENCE = timedelta(milliseconds=300)
#: the sync gives up after this long
SYNC_TIMEOUT = 60.0


def sample_counts() -> Counter[str]:
    """Resources per type in the sample clinic (what the seeded sandbox holds)."""
    counts: Counter[str] = Counter()
    for path in sample_bundles():
        bundle = orjson.loads(path.read_bytes())
        counts.update(e["resource"]["resourceType"] for e in bundle["entry"])
    return counts


@contextmanager
def sandbox_ehr() -> Iterator[str]:
    """A sandbox EHR seeded with the sample clinic, on a free loopback port; yields its base."""
    from ehrbridge.sandbox.app import SandboxApp
    from ehrbridge.sandbox.serve import running_sandbox

    with tempfile.TemporaryDirectory(prefix="ehrbridge-sandbox-") as folder:
        app = SandboxApp(Path(folder) / "sandbox.db", seed=True)
        try:
            with running_sandbox(app) as base_url:
                yield base_url
        finally:
            app.close()


def sandbox_source(base_url: str, types: list[str]) -> DataSourceConfig:
    """The data source the demo polls: the sandbox, every type at :data:`DEMO_CADENCE`."""
    return DataSourceConfig(
        id=SAMPLE_SOURCE,
        kind="fhir",
        base_url=base_url,
        resources=tuple(ResourceConfig(type=t, every=DEMO_CADENCE, page_size=50) for t in types),
    )


class _Watched:
    """A poll log that reports each outcome, and stops the runner once every type polled clean."""

    def __init__(self, inner: PollLog, types: set[str], report: Callable[[PollOutcome], None]):
        self.inner, self.waiting, self.report = inner, set(types), report
        self.runner: Runner | None = None

    async def record_outcome(self, outcome: PollOutcome) -> None:
        self.report(outcome)
        if outcome.ok:
            self.waiting.discard(outcome.resource_type)
        if not self.waiting and self.runner is not None:
            self.runner.stop()
        await self.inner.record_outcome(outcome)

    async def recent_outcomes(
        self, workspace: str, source: str | None = None, limit: int = 50
    ) -> list[PollOutcome]:
        return await self.inner.recent_outcomes(workspace, source, limit)


async def sync(
    model: WorldModel,
    runner_store: RunnerStore,
    database: str,
    base_url: str,
    types: list[str],
    report: Callable[[PollOutcome], None],
) -> None:
    """Run the connector runner against ``base_url`` until every type has polled clean."""
    source = sandbox_source(base_url, types)
    config = RunnerConfig(workspace=model.workspace, database=database, data_sources=(source,))
    poller = FhirPoller(model, runner_store)
    watched = _Watched(runner_store, set(types), report)
    runner = Runner(config, pollers={"fhir": poller}, outcomes=watched, leases=runner_store)
    watched.runner = runner
    try:
        async with asyncio.timeout(SYNC_TIMEOUT):
            await runner.run()
    except TimeoutError:
        raise SyncFailed(
            f"the sync did not finish in {SYNC_TIMEOUT:.0f} s; still waiting for "
            f"{', '.join(sorted(watched.waiting))}"
        ) from None
    finally:
        await poller.aclose()


# --- the way back: judge, gate, outbox, EHR, and the next poll ---------------------------------

#: the demo call: the caller gives a new mobile number, the agent reads it back, the caller agrees
DEMO_CALL = "call-demo-1"
DEMO_TRANSCRIPT = """Agent: Thanks for calling the clinic. Is the number we have for you still good?
Caller: No, I have a new cell. You can reach me on six one seven, five five five, oh one nine nine.
Agent: Let me read that back: six one seven, five five five, zero one nine nine?
Caller: Yes, that's right.
"""


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a fact's journey, as the demo prints it."""

    at: datetime
    what: str
    detail: str


async def write_back(
    backend: Backend, model: WorldModel, base_url: str, fact: str, entity: str
) -> list[Step]:
    """Take the voice fact ``fact`` of ``entity`` (``Patient/<id>``) the whole way back: the
    grounding judge reads the call's transcript, the gate lets the verified fact through, the
    dispatcher writes it to the sandbox EHR through the outbox. Returns the steps, timed."""
    steps: list[Step] = []
    loop = ReviewLoop(
        backend.worldmodel,
        backend.review,
        backend.runner,
        GroundingJudge(),
        workspace=model.workspace,
    )
    while (await loop.step()).read:
        pass
    entity_type, entity_id = entity.split("/")
    for event in await model.events(entity_type, entity_id):
        if event.event_type is EventType.REGRADED and event.data.get("target") == fact:
            verdict = (event.evidence or {}).get("verdict", {})
            steps.append(
                Step(
                    at=event.recorded_at,
                    what="judged",
                    detail=f"{event.source.id}: {verdict.get('outcome', '?')}, re-graded to "
                    f"{event.confidence:.2f} ({verdict.get('reason', '')})",
                )
            )
    sink = FhirSink(SAMPLE_SOURCE, sink_client(SAMPLE_SOURCE, base_url))
    runtime = SinkRuntime(
        sink=sink,
        policy=SinkPolicy(sink=SAMPLE_SOURCE, entity_types=frozenset({"Patient"})),
        retry=RetryLimits(),
        breaker=CircuitBreaker(BreakerLimits(), clock=lambda: datetime.now(UTC)),
        limiter=AdaptiveLimiter(ConcurrencyLimits()),
    )
    dispatcher = Dispatcher(
        backend.worldmodel,
        backend.outbox,
        [runtime],
        workspace=model.workspace,
        holder="demo",
        echo=SinkEcho(model),
        catch_up=timedelta(milliseconds=50),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        async with asyncio.timeout(SYNC_TIMEOUT):
            while True:
                items = (await backend.outbox.of_events(model.workspace, [fact])).get(fact, [])
                if items and all(i.status in FINAL | PARKED for i in items):
                    break
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise SyncFailed(f"the write-back did not finish in {SYNC_TIMEOUT:.0f} s") from None
    finally:
        stop.set()
        await task
        await sink.aclose()
    for item in items:
        steps.append(
            Step(at=item.created_at, what="queued", detail=f"outbox item {item.id} for {item.sink}")
        )
        result = item.result or {}
        detail = (
            f"{item.status.value}: {result.get('ref')} is now version {result.get('version')} "
            "at the EHR"
            if item.status is ItemStatus.SYNCED
            else f"{item.status.value}: {item.last_error}"
        )
        steps.append(Step(at=item.updated_at, what="written", detail=detail))
    return steps
