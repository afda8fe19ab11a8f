"""The runner's outbound loops, built from the config: each data source with an ``outbound:``
section becomes a sink driven by the ``dispatch`` loop, and the ``reconcile`` loop reads back
what they acknowledged (docs/sinks.md, docs/design.md §9).

A sink's requests go through its own request budget (``sink:<id>``, apart from the source's
polling budget), shared by every runner on the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ehrbridge.budget import BudgetRegistry
from ehrbridge.connectors.fhir.auth import fhir_auth
from ehrbridge.connectors.rest.sink import rest_sink
from ehrbridge.connectors.source import DataSourceConfig
from ehrbridge.errors import InvalidInput
from ehrbridge.leases import Leases
from ehrbridge.outbound.dispatch import Dispatcher, SinkRuntime
from ehrbridge.outbound.echo import SinkEcho
from ehrbridge.outbound.feed import OutboundFeed
from ehrbridge.outbound.limits import (
    AdaptiveLimiter,
    BreakerLimits,
    CircuitBreaker,
    ConcurrencyLimits,
    RetryLimits,
)
from ehrbridge.outbound.outbox import Outbox
from ehrbridge.outbound.reconcile import DEFAULT_EVERY, RECONCILE_CURSOR, Reconciler
from ehrbridge.outbound.settings import OnConflict, SinkSettings, Window
from ehrbridge.outbound.sinks import Sink
from ehrbridge.outbound.sinks.fhir import FhirSink, sink_client
from ehrbridge.outbound.steps import with_workflows
from ehrbridge.runner.config import RunnerConfig
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store


def sink_of(source: DataSourceConfig, settings: SinkSettings, budgets: BudgetRegistry) -> Sink:
    """The sink a data source's ``outbound:`` section makes."""
    if source.kind == "fhir":
        client = sink_client(
            source.id,
            source.base_url,
            auth=fhir_auth(source.auth),
            budgets=budgets,
            limit=settings.budget,
        )
        return FhirSink(source.id, client)
    if source.kind == "rest":
        return rest_sink(source, budgets=budgets)
    raise InvalidInput(f"data source {source.id}: a {source.kind} source cannot be a sink")


def _closed_for(window: Window | None) -> Callable[[datetime], timedelta]:
    def closed_for(moment: datetime) -> timedelta:
        if window is None or window.is_open(moment):
            return timedelta(0)
        return window.next_open(moment) - moment

    return closed_for


def runtimes(config: RunnerConfig, budgets: BudgetRegistry) -> list[SinkRuntime]:
    """One :class:`SinkRuntime` per configured sink."""
    out = []
    for source in config.data_sources:
        settings = source.outbound
        if settings is None:
            continue
        retries = settings.retries
        out.append(
            SinkRuntime(
                sink=sink_of(source, settings, budgets),
                policy=settings.policy(source.id),
                retry=RetryLimits(
                    max_attempts=retries.max_attempts,
                    max_age=retries.max_age,
                    backoff_base=retries.backoff.base,
                    backoff_max=retries.backoff.max,
                ),
                breaker=CircuitBreaker(BreakerLimits(), clock=lambda: datetime.now(UTC)),
                limiter=AdaptiveLimiter(ConcurrencyLimits(max=settings.budget.concurrency)),
                on_conflict="dead" if settings.on_conflict is OnConflict.DEAD else "review",
                closed_for=_closed_for(settings.business_hours),
            )
        )
    return out


@dataclass(frozen=True, kw_only=True)
class OutboundLoops:
    """The ``dispatch`` and ``reconcile`` loops of the config's sinks, and their sinks."""

    loops: tuple[Dispatcher, Reconciler] | tuple[()] = ()
    sinks: tuple[Sink, ...] = ()

    async def aclose(self) -> None:
        """Close every sink's connections."""
        for sink in self.sinks:
            await sink.aclose()


def outbound_loops(
    store: Store,
    outbox: Outbox,
    config: RunnerConfig,
    *,
    budgets: BudgetRegistry,
    leases: Leases,
    holder: str,
    reconcile_every: timedelta = DEFAULT_EVERY,
) -> OutboundLoops:
    """The ``dispatch`` and ``reconcile`` loops for the config's sinks (none without sinks)."""
    sinks = runtimes(config, budgets)
    if not sinks:
        return OutboundLoops()
    ws = config.workspace
    sinks, workflows = with_workflows(sinks, store, outbox, workspace=ws)
    dispatcher = Dispatcher(
        store,
        outbox,
        sinks,
        workspace=ws,
        holder=holder,
        echo=SinkEcho(WorldModel(store, ws)),
        leases=leases,
        workflows=workflows,
    )
    trailing = OutboundFeed(
        store,
        outbox,
        workspace=ws,
        sinks=[rt.policy for rt in sinks],
        cursor=RECONCILE_CURSOR,
        count_missing=True,
        workflows=workflows,
    )
    reconciler = Reconciler(
        outbox,
        {rt.id: rt.sink for rt in sinks},
        workspace=ws,
        feed=trailing,
        wake=dispatcher.wake,
        leases=leases,
        holder=holder,
        every=reconcile_every,
    )
    return OutboundLoops(loops=(dispatcher, reconciler), sinks=tuple(rt.sink for rt in sinks))
