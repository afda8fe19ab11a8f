"""The ``poll`` loop: one task per (data source, resource type) (docs/design.md §7).

Each task polls at its resource's cadence, inside the source's business hours, under the
source's lease (renewed while a long poll runs), records the outcome and feeds the metrics. A
config refresh stops the tasks of a changed or removed (source, type) after their step and starts
the new ones. The leases are given back when the loop ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ehrbridge.connectors.source import DataSourceConfig, Poller, ResourceConfig
from ehrbridge.errors import EhrbridgeError, LoopFailed, StorageError
from ehrbridge.leases import Leases
from ehrbridge.runner.config import RunnerConfig, Timing
from ehrbridge.runner.loops.refresh import LiveConfig
from ehrbridge.runner.metrics import RunnerMetrics
from ehrbridge.runner.polling import poll_once
from ehrbridge.runner.store import PollLog
from ehrbridge.times import pause

log = logging.getLogger("ehrbridge.runner")


class PollLoop:
    """Supervises a poll task (``poll:<source>:<type>``) per wanted (source, resource type)."""

    name = "poll"

    def __init__(
        self,
        live: LiveConfig,
        *,
        pollers: Mapping[str, Poller],
        outcomes: PollLog,
        leases: Leases,
        timing: Timing,
        holder: str,
        clock: Callable[[], datetime],
        metrics: RunnerMetrics,
    ) -> None:
        self.live = live
        self.pollers = pollers
        self.outcomes = outcomes
        self.leases = leases
        self.timing = timing
        self.holder = holder
        self.clock = clock
        self.metrics = metrics
        self.stopping = asyncio.Event()
        self._warned: set[str] = set()

    @property
    def config(self) -> RunnerConfig:
        return self.live.current

    @property
    def _config_changed(self) -> asyncio.Event:
        return self.live.changed

    async def run(self, stop: asyncio.Event) -> None:
        self.stopping = stop
        try:
            await self._poll_supervisor()
        finally:
            await self._release_leases()

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
            outcome = await poll_once(poller, source, resource, workspace=ws, clock=self.clock)
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

    async def _sleep(self, delay: timedelta, stop: asyncio.Event) -> bool:
        """Wait ``delay`` or until a stop; True when stopping."""
        return await pause(delay, self.stopping, stop)

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


def _raise_if_failed(task: asyncio.Task[None]) -> None:
    exc = None if task.cancelled() else task.exception()
    if exc is not None:
        raise LoopFailed(task.get_name(), exc)
