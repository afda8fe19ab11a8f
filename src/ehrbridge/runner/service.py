"""The runner service: named loops under one supervisor (docs/design.md §7).

::

    config-refresh   reloads the config file on change and periodically; keeps the old config
                     (and logs why) when the new one is invalid (:mod:`.loops.refresh`)
    poll             one task per (data source, resource type), at its cadence, inside the
                     source's business hours, under the source's lease (:mod:`.loops.poll`)
    metrics          only with ``runner.metrics``: reloads the recent poll outcomes that the
                     ``/metrics`` health gauges are derived from (polls by other runners count),
                     and the outbox's depth and sink states for the outbound metrics
                     (:mod:`.loops.metrics`)
    review, dispatch, reconcile
                     named slots for the loops that come later

With ``runner.metrics`` the runner serves ``GET /metrics`` for its lifetime (:mod:`.metrics`).

SIGTERM or SIGINT sets the stop event: each loop finishes the step it is in and returns, and
the service exits 0. A loop that raises is a bug: the error is logged with the loop's name, the
other loops are cancelled and the service exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ehrbridge.connectors.source import Poller
from ehrbridge.errors import LoopFailed
from ehrbridge.leases import Leases, new_holder
from ehrbridge.outbound.outbox import Outbox
from ehrbridge.runner.config import RunnerConfig, Timing
from ehrbridge.runner.loops import Loop, Waiting
from ehrbridge.runner.loops.metrics import MetricsLoop, serve_metrics
from ehrbridge.runner.loops.poll import PollLoop
from ehrbridge.runner.loops.refresh import ConfigRefresh, LiveConfig
from ehrbridge.runner.metrics import MetricsServer, RunnerMetrics
from ehrbridge.runner.store import PollLog

log = logging.getLogger("ehrbridge.runner")
#: the loops that come later; each holds its name (a :class:`Waiting` slot) until registered
RESERVED_LOOPS = ("review", "dispatch", "reconcile")


class Runner:
    """The long-running service; :meth:`run` returns when it has stopped.

    It runs each :class:`~ehrbridge.runner.loops.Loop` as a task named for the loop, under one
    stop event: the first loop that raises stops all the others (:class:`LoopFailed`), and
    :meth:`stop` lets each finish its step. Registering a loop written in its own package is one
    line in :meth:`loops` (or, from a composition root, ``Runner(..., loops=[DispatchLoop(...)])``);
    a loop named for one of :data:`RESERVED_LOOPS` takes that slot's place.
    """

    def __init__(
        self,
        config: RunnerConfig,
        *,
        pollers: Mapping[str, Poller],
        outcomes: PollLog,
        leases: Leases,
        config_path: Path | None = None,
        timing: Timing | None = None,
        holder: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: RunnerMetrics | None = None,
        loops: Sequence[Loop] = (),
        outbox: Outbox | None = None,
    ) -> None:
        #: the running config, replaced by the ``config-refresh`` loop
        self.live = LiveConfig(config)
        #: a poller per data source kind (``fhir``, ...)
        self.pollers = dict(pollers)
        self.outcomes = outcomes
        self.leases = leases
        self.config_path = config_path
        #: the config's ``runner:`` section unless given
        self.timing = timing or config.timing
        self.holder = holder or new_holder()
        self.clock = clock
        #: poll counters and health gauges, served on ``/metrics`` when the config asks for it
        self.metrics = metrics or RunnerMetrics(clock=clock)
        #: the ``/metrics`` endpoint while :meth:`run` runs (with ``runner.metrics``)
        self.metrics_server: MetricsServer | None = None
        #: loops registered beyond the runner's own (see the class docstring)
        self.registered = list(loops)
        #: the outbox whose depth and sink states ``/metrics`` shows (None: no outbound metrics)
        self.outbox = outbox
        self.stopping = asyncio.Event()

    @property
    def config(self) -> RunnerConfig:
        """The running config (the last valid one read)."""
        return self.live.current

    def stop(self) -> None:
        """Ask every loop to finish its current step and return."""
        self.stopping.set()

    def loops(self) -> list[Loop]:
        """The loops :meth:`run` runs, in order; register a new one here (one line)."""
        own: list[Loop] = [
            ConfigRefresh(self.live, self.config_path, timing=self.timing, clock=self.clock),
            PollLoop(
                self.live,
                pollers=self.pollers,
                outcomes=self.outcomes,
                leases=self.leases,
                timing=self.timing,
                holder=self.holder,
                clock=self.clock,
                metrics=self.metrics,
            ),
        ]
        named = {loop.name: loop for loop in self.registered}
        own += [named.pop(name) if name in named else Waiting(name) for name in RESERVED_LOOPS]
        own += named.values()
        if self.metrics_server is not None:
            own.append(MetricsLoop(self.metrics, self.outcomes, self.config.workspace, self.outbox))
        return own

    async def run(self) -> None:
        """Run until stopped (returns) or until a loop dies (raises :class:`LoopFailed`)."""
        if self.config.metrics is not None:
            self.metrics_server = serve_metrics(self.config.metrics, self.metrics)
        loops = self.loops()
        tasks = {asyncio.create_task(lp.run(self.stopping), name=lp.name): lp.name for lp in loops}
        log.info("runner %s started: %s", self.holder, ", ".join(tasks.values()))
        try:
            await _supervise(tasks)
        finally:
            await self._stop_metrics()
        log.info("runner %s stopped", self.holder)

    async def _stop_metrics(self) -> None:
        server, self.metrics_server = self.metrics_server, None
        if server is not None:
            # shutdown() waits for the server thread's poll loop: not on the event loop.
            await asyncio.to_thread(server.close)


async def _supervise(tasks: dict[asyncio.Task[None], str]) -> None:
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    log.error("loop %s died: %s: %s", tasks[task], type(exc).__name__, exc)
                    raise exc if isinstance(exc, LoopFailed) else LoopFailed(tasks[task], exc)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
