"""Dispatchers in several processes draining one backlog on PostgreSQL
(``outbound_scaleout_ratio``).

Each worker is a process of its own (``multiprocessing``, spawned) with its own connection and
its own :class:`~ehrbridge.outbound.dispatch.Dispatcher`, as ``ehrbridge run`` on another machine
would have; they share the outbox (claims and leases) and the sink's request budget through the
database. The parent queues the backlog first, starts the workers, waits until every one is
ready, and times the drain from the go to the last item settled.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier, Event

from bench.outbound_clinic import cpu_seconds, dispatcher, open_items
from ehrbridge.budget import RequestBudget
from ehrbridge.storage import Backend, open_backend

#: how often the parent reads the outbox's depth while the workers drain
POLL = 0.1


@dataclass(frozen=True, kw_only=True)
class Drained:
    """One drain by ``workers`` processes."""

    workers: int
    items: int
    seconds: float
    #: CPU seconds each worker, and the sandbox, used over the drain
    worker_cpu: float
    sandbox_cpu: float

    @property
    def throughput(self) -> float:
        return self.items / self.seconds


def _worker(
    dsn: str, schema: str, base_url: str, budget: RequestBudget, holder: str,
    ready: Barrier, go: Event, stop: Event,
) -> None:  # fmt: skip
    asyncio.run(_work(dsn, schema, base_url, budget, holder, ready, go, stop))


async def _work(
    dsn: str, schema: str, base_url: str, budget: RequestBudget, holder: str,
    ready: Barrier, go: Event, stop: Event,
) -> None:  # fmt: skip
    backend = await open_backend(dsn, schema=schema)
    try:
        dispatch = dispatcher(backend, base_url, budget, holder=holder)
        await asyncio.to_thread(ready.wait)
        await asyncio.to_thread(go.wait)
        stopping = asyncio.Event()
        task = asyncio.create_task(dispatch.run(stopping))
        await asyncio.to_thread(stop.wait)
        stopping.set()
        await task
        for rt in dispatch.sinks.values():
            await rt.sink.aclose()
    finally:
        await backend.close()


async def drain(
    backend: Backend,
    dsn: str,
    schema: str,
    base_url: str,
    budget: RequestBudget,
    *,
    workers: int,
    items: int,
    sandbox_pid: int,
) -> Drained:
    """Drain the queued backlog with ``workers`` processes; returns how long it took."""
    context = multiprocessing.get_context("spawn")
    ready, go, stop = context.Barrier(workers + 1), context.Event(), context.Event()
    processes = [
        context.Process(
            target=_worker,
            args=(dsn, schema, base_url, budget, f"bench-{i}", ready, go, stop),
            name=f"dispatch-{i}",
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        await asyncio.to_thread(ready.wait, 120)
        pids = [p.pid for p in processes if p.pid is not None]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        sandbox_before = cpu_seconds(sandbox_pid)
        started = time.monotonic()
        go.set()
        while await open_items(backend):
            if not all(p.is_alive() for p in processes):
                raise SystemExit("a dispatcher process died during the drain")
            await asyncio.sleep(POLL)
        seconds = time.monotonic() - started
        worker_cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        sandbox_cpu = cpu_seconds(sandbox_pid) - sandbox_before
    finally:
        go.set()
        stop.set()
        for process in processes:
            process.join(timeout=60)
    return Drained(
        workers=workers,
        items=items,
        seconds=seconds,
        worker_cpu=worker_cpu,
        sandbox_cpu=sandbox_cpu,
    )
