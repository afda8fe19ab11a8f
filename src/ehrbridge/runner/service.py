"""The runner service: named loops under one supervisor (docs/design.md §7).

::

    config-refresh   reloads the config file on change and periodically; keeps the old config
                     (and logs why) when the new one is invalid
    poll             one task per (data source, resource type), at its cadence, inside the
                     source's business hours, under the source's lease
    metrics          only with ``runner.metrics``: reloads the recent poll outcomes that the
                     ``/metrics`` health gauges are derived from (polls by other runners count)
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
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ehrbridge.errors import ConfigError, EhrbridgeError, InvalidInput, LoopFailed, StorageError
from ehrbridge.leases import Leases, new_holder
from ehrbridge.runner.config import (
    DataSourceConfig,
    ResourceConfig,
    RunnerConfig,
    Timing,
    load_config,
)
from ehrbridge.runner.metrics import MetricsServer, RunnerMetrics
from ehrbridge.runner.poller import Poller
from ehrbridge.runner.storage import PollLog

log = logging.getLogger("ehrbridge.runner")
#: the loops that come later; each holds its name until then
RESERVED_LOOPS = ("review", "dispatch", "reconcile")
#: how often the ``metrics`` loop reloads the recent poll outcomes (a usual scrape interval)
METRICS_REFRESH = timedelta(seconds=15)


class Runner:
    """The long-running service; :meth:`run` returns when it has stopped."""

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
    ) -> None:
        self.config = config
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
        self.stopping = asyncio.Event()
        self._config_changed = asyncio.Event()
        self._warned: set[str] = set()

    def stop(self) -> None:
        """Ask every loop to finish its current step and return."""
        self.stopping.set()

    async def run(self) -> None:
        """Run until stopped (returns) or until a loop dies (raises :class:`LoopFailed`)."""
        loops: dict[str, Coroutine[Any, Any, None]] = {
            "config-refresh": self._refresh_loop(),
            "poll": self._poll_supervisor(),
        }
        loops.update({name: self._reserved(name) for name in RESERVED_LOOPS})
        try:
            self._serve_metrics()
        except InvalidInput:
            for coro in loops.values():
                coro.close()
            raise
        if self.metrics_server is not None:
            loops["metrics"] = self._metrics_loop()
        tasks = {asyncio.create_task(coro, name=name): name for name, coro in loops.items()}
        log.info("runner %s started: %s", self.holder, ", ".join(loops))
        try:
            await _supervise(tasks)
        finally:
            await self._release_leases()
            await self._stop_metrics()
        log.info("runner %s stopped", self.holder)

    def _serve_metrics(self) -> None:
        wanted = self.config.metrics
        if wanted is None:
            return
        try:
            token = None if wanted.token is None else wanted.token.resolve()
            self.metrics_server = self.metrics.serve(wanted.host, wanted.port, token=token)
        except OSError as exc:
            raise InvalidInput(
                f"runner.metrics: cannot serve on {wanted.host}:{wanted.port}: {exc.strerror}"
            ) from exc
        log.info("metrics on http://%s:%d/metrics", wanted.host, self.metrics_server.port)

    async def _stop_metrics(self) -> None:
        server, self.metrics_server = self.metrics_server, None
        if server is not None:
            # shutdown() waits for the server thread's poll loop: not on the event loop.
            await asyncio.to_thread(server.close)

    # --- loops -------------------------------------------------------------------------------

    async def _reserved(self, name: str) -> None:
        # A slot for a loop that comes later: it only waits for the stop.
        del name
        await self.stopping.wait()

    async def _metrics_loop(self) -> None:
        while True:
            try:
                self.metrics.seed(await self.outcomes.recent_outcomes(self.config.workspace))
            except StorageError as exc:
                log.warning("metrics: could not read the poll outcomes: %s", exc)
            if await self._sleep(METRICS_REFRESH):
                return

    async def _refresh_loop(self) -> None:
        if self.config_path is None:
            await self.stopping.wait()
            return
        seen = _mtime(self.config_path)
        last_read = self.clock()
        while not await self._sleep(self.timing.watch_every):
            mtime = _mtime(self.config_path)
            due = self.clock() - last_read >= self.timing.refresh_every
            if mtime == seen and not due:
                continue
            seen, last_read = mtime, self.clock()
            await self._reload(self.config_path)

    async def _reload(self, path: Path) -> None:
        try:
            # Reading is bounded (runner.yamlfile), and off the event loop, so no file can hold
            # up the poll loops while it is read.
            fresh = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            # The problems name file, line and key, never a value.
            log.error("config %s is not valid; keeping the running config:\n%s", path, exc)
            return
        if fresh == self.config:
            return
        if (fresh.database, fresh.workspace, fresh.metrics) != (
            self.config.database,
            self.config.workspace,
            self.config.metrics,
        ):
            log.warning(
                "config %s: a new database, workspace or metrics address takes effect on restart",
                path,
            )
            fresh = replace(
                fresh,
                workspace=self.config.workspace,
                database=self.config.database,
                metrics=self.config.metrics,
            )
        log.info("config %s reloaded: %d data sources", path, len(fresh.data_sources))
        self.config = fresh
        self._config_changed.set()

    async def _poll_supervisor(self) -> None:
        children: dict[tuple[str, str], tuple[ResourceConfig, DataSourceConfig, _Child]] = {}
        #: tasks of a changed or removed (source, type), finishing their step before a new one
        retiring: dict[tuple[str, str], _Child] = {}
        try:
            while not self.stopping.is_set():
                self._config_changed.clear()
                wanted = self._wanted()
                for key, (resource, source, child) in list(children.items()):
                    if wanted.get(key) != (resource, source):
                        child.stop.set()
                        retiring[key] = child
                        del children[key]
                for key, child in list(retiring.items()):
                    if child.task.done():
                        _raise_if_failed(child.task)
                        del retiring[key]
                for key, (resource, source) in wanted.items():
                    if key not in children and key not in retiring:
                        children[key] = (resource, source, self._start(source, resource))
                waits = [asyncio.ensure_future(e.wait()) for e in self._wake_events()]
                running = [c.task for _, _, c in children.values()]
                running += [c.task for c in retiring.values()]
                done, _ = await asyncio.wait(
                    [*waits, *running], return_when=asyncio.FIRST_COMPLETED
                )
                for waiter in waits:
                    waiter.cancel()
                for task in done:
                    if task in running:
                        _raise_if_failed(task)  # type: ignore[arg-type]
        finally:
            every = [c for _, _, c in children.values()] + list(retiring.values())
            for child in every:
                child.stop.set()
            results = await asyncio.gather(*(c.task for c in every), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    log.error("a poll task failed while stopping: %r", result)

    def _wake_events(self) -> list[asyncio.Event]:
        return [self.stopping, self._config_changed]

    def _wanted(self) -> dict[tuple[str, str], tuple[ResourceConfig, DataSourceConfig]]:
        wanted = {}
        for source in self.config.data_sources:
            if source.kind not in self.pollers:
                if source.id not in self._warned:
                    self._warned.add(source.id)
                    log.warning("data source %s: no poller for kind %s yet", source.id, source.kind)
                continue
            for resource in source.resources:
                wanted[(source.id, resource.type)] = (resource, source)
        return wanted

    def _start(self, source: DataSourceConfig, resource: ResourceConfig) -> _Child:
        stop = asyncio.Event()
        name = f"poll:{source.id}:{resource.type}"
        task = asyncio.create_task(self._poll_loop(source, resource, stop), name=name)
        return _Child(task=task, stop=stop)

    async def _poll_loop(
        self, source: DataSourceConfig, resource: ResourceConfig, stop: asyncio.Event
    ) -> None:
        poller = self.pollers[source.kind]
        ttl = max(self.timing.lease_ttl, 2 * resource.every)
        lease = f"poll:{source.id}"
        while not (stop.is_set() or self.stopping.is_set()):
            hours = source.business_hours
            now = self.clock()
            if hours is not None and not hours.is_open(now):
                wait = min(hours.next_open(now) - now, timedelta(minutes=1))
                if await self._sleep(max(wait, timedelta(seconds=1)), stop):
                    return
                continue
            try:
                await self._poll_step(poller, source, resource, lease, ttl)
            except StorageError as exc:
                # The database is away for a moment: try again at the next cadence.
                log.error("poll %s %s: storage failed: %s", source.id, resource.type, exc)
            if await self._sleep(resource.every, stop):
                return

    async def _poll_step(
        self,
        poller: Poller,
        source: DataSourceConfig,
        resource: ResourceConfig,
        lease: str,
        ttl: timedelta,
    ) -> None:
        ws = self.config.workspace
        if await self.leases.acquire(ws, lease, self.holder, ttl) is None:
            return
        renewal = asyncio.create_task(self._renew(lease, ttl), name=f"renew:{lease}")
        try:
            outcome = await poller.poll(source, resource)
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
        await self.outcomes.record_outcome(outcome)
        self.metrics.record(outcome)
        log.log(
            logging.INFO if outcome.ok else logging.WARNING,
            "poll %s %s: ok=%s fetched=%d unchanged=%d events=%d%s",
            source.id,
            resource.type,
            outcome.ok,
            outcome.fetched,
            outcome.unchanged,
            outcome.events,
            f" error={outcome.error}" if outcome.error else "",
        )

    async def _renew(self, lease: str, ttl: timedelta) -> None:
        """Keep the lease while a long poll runs (a third of its time to live at a time)."""
        while True:
            await asyncio.sleep(ttl.total_seconds() / 3)
            try:
                held = await self.leases.acquire(self.config.workspace, lease, self.holder, ttl)
            except StorageError as exc:
                log.warning("could not renew lease %s: %s", lease, exc)
                continue
            if held is None:
                log.warning("lease %s was lost during a poll", lease)
                return

    async def _sleep(self, delay: timedelta, stop: asyncio.Event | None = None) -> bool:
        """Wait ``delay`` or until a stop; True when stopping."""
        events = [self.stopping] if stop is None else [self.stopping, stop]
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=delay.total_seconds())
        finally:
            for waiter in waits:
                waiter.cancel()
        return any(e.is_set() for e in events)

    async def _release_leases(self) -> None:
        for source in self.config.data_sources:
            try:
                await self.leases.release(self.config.workspace, f"poll:{source.id}", self.holder)
            except EhrbridgeError as exc:
                log.warning("could not release the lease of %s: %s", source.id, exc)


@dataclass(frozen=True, kw_only=True)
class _Child:
    task: asyncio.Task[None]
    stop: asyncio.Event


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


def _raise_if_failed(task: asyncio.Task[None]) -> None:
    exc = None if task.cancelled() else task.exception()
    if exc is not None:
        raise LoopFailed(task.get_name(), exc)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
