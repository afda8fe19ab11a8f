"""``python -m bench.outbound [--backend sqlite|postgres|all] [--quick] [--facts N]``.

The outbound half (docs/design.md §9) against the sandbox EHR, served by ``ehrbridge sandbox`` in
a process of its own: verified voice facts go through the gate and the outbox to the EHR, sent by
a :class:`~ehrbridge.outbound.dispatch.Dispatcher` built as ``ehrbridge run`` builds it (the FHIR
sink under its request budget ``sink:ehr``, shared through the database). Each fact updates one
Patient's mobile number: the sink reads the record and ``PUT``\\ s it with ``If-Match``, two
requests an item.

- ``outbound_rate_ratio_r5`` / ``_r50``: the sandbox admits R requests/s (its ``rate_limit``
  fault: 429 beyond it), the sink's budget is R/s; a backlog of ``--facts`` verified facts
  (5,000; ``--quick``: about a minute of requests at each R) is queued, then drained. Value: the
  requests per second the sink sent, from the first request's start to the last one's; baseline:
  R. Beside it, ``outbound_rate_items_r<R>`` (items/s over the drain, baseline R/2: two requests
  an item) and ``outbound_rate_throttled_r<R>`` (the 429s the sandbox sent; no baseline, the
  budget should keep it near 0).
- ``outbound_latency_p50`` / ``_p99`` (ms): an unlimited sink, facts verified one at a time
  (one every :data:`PACE` seconds), from the re-grade's commit to the ``meta.lastUpdated`` of the
  version written at the EHR, the dispatcher woken by the outbox and the log (its catch-up read
  at the default 500 ms). Baseline: the seed's 30 s dispatch cycle (its polling-only mean would
  be half of it plus a send; it was not run).
- ``outbound_scaleout_ratio`` (PostgreSQL only): the same backlog, unlimited, drained by 4
  dispatcher processes; value and baseline: items/s with 4 processes and with 1. Beside it,
  ``outbound_scaleout_sandbox_cpu``: the sandbox's CPU use over the 4-process drain (cores; a
  value near 1 means the single-threaded sandbox, not ehrbridge, set the pace).
- ``outbox_overhead_ratio``: the outbox's bookkeeping alone (:mod:`bench.outbox`, its
  defaults: 5,000 items over 500 lanes).
- ``outbound_duplicates``: over every run on the backend, the versions written at the EHR beyond
  one per item (each Patient holds one fact: its seed version plus at most one of ours). Target 0.

JSON lines on stdout (``bench/report.py``), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from bench import outbound_scaleout, outbox
from bench.backends import DEFAULT_DSN
from bench.outbound_clinic import (
    WS,
    Requests,
    Sandbox,
    dispatcher,
    faults_injected,
    import_patients,
    open_items,
    queue_all,
    sandbox,
    set_faults,
    settled,
    verified_fact,
    verified_facts,
    versions_written,
)
from bench.report import Metric, emit, machine, percentile, progress
from ehrbridge.budget import MAX_RATE, RequestBudget
from ehrbridge.outbound.dispatch import Dispatcher
from ehrbridge.storage import Backend, open_backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.worldmodel.model import WorldModel

#: the backlog of the full run
FACTS = 5000
#: seconds of requests a ``--quick`` rate run takes at each R
QUICK_SECONDS = 60
#: requests per item (an update reads the record, then writes it)
REQUESTS_PER_ITEM = 2
#: the rates the sandbox admits
RATES = (50, 5)
#: facts timed for the latency, full and quick; one verified every PACE seconds (jittered)
LATENCY_SAMPLES, QUICK_LATENCY_SAMPLES, PACE = 200, 40, 0.25
#: the seed's dispatch cycle: how often it sent what was waiting (the latency's baseline)
SEED_CYCLE_MS = 30_000.0
#: requests in flight at once per process
CONCURRENCY = 8
#: an unlimited sink: the fastest budget the config takes, never reached here
UNLIMITED = RequestBudget(rate=MAX_RATE, concurrency=16)
#: the outbox bookkeeping run's items and lanes (bench/outbox.py's defaults)
OUTBOX_ITEMS, OUTBOX_LANES = 5000, 500
#: dispatcher processes of the scale-out run
WORKERS = 4


class Run:
    """One backend's databases, opened afresh per measurement, and the duplicates found."""

    def __init__(self, name: str, dsn: str, folder: Path) -> None:
        self.name = name
        self.dsn = dsn
        self.folder = folder
        self.duplicates = 0
        self.unsynced = 0

    @asynccontextmanager
    async def backend(self) -> AsyncIterator[tuple[Backend, str]]:
        """A fresh database: (its ports, its PostgreSQL schema or SQLite URL)."""
        if self.name == "sqlite":
            url = f"sqlite:///{self.folder / f'wm-{uuid4().hex[:8]}.db'}"
            backend = await open_backend(url)
            try:
                yield backend, url
            finally:
                await backend.close()
            return
        schema = f"bench_{uuid4().hex[:10]}"
        backend = await open_backend(self.dsn, schema=schema)
        try:
            yield backend, schema
        finally:
            store = backend.worldmodel
            if isinstance(store, PostgresStore):
                await store.drop_schema()
            await backend.close()

    async def check(self, backend: Backend, ehr: Sandbox, items: int) -> None:
        """Count the versions written beyond one per item, and the items not synced."""
        statuses = await settled(backend)
        versions = versions_written(ehr.db)
        extra = sum(max(count - 2, 0) for count in versions.values())
        self.duplicates += extra
        self.unsynced += items - statuses["synced"]
        if extra or statuses["synced"] != items:
            progress(f"  {extra} duplicate versions; items by status: {dict(statuses)}")


async def backlog(backend: Backend, ehr: Sandbox) -> None:
    """Every Patient polled in, then given a verified new mobile number."""
    started = time.monotonic()
    ids = await import_patients(backend, ehr.patients)
    await verified_facts(WorldModel(backend.worldmodel, WS), ids)
    progress(f"  {len(ids):,} verified facts in {time.monotonic() - started:.1f} s")


async def drain(backend: Backend, dispatch: Dispatcher) -> float:
    """Run the dispatcher until nothing is pending or in flight; returns the seconds taken."""
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(dispatch.run(stop))
    try:
        while await open_items(backend):
            if task.done():
                task.result()
            await asyncio.sleep(0.1)
        return time.monotonic() - started
    finally:
        stop.set()
        await task
        for rt in dispatch.sinks.values():
            await rt.sink.aclose()


async def rate(run: Run, limit: int, facts: int) -> None:
    progress(f"{run.name}: rate {limit}/s, {facts:,} facts")
    with sandbox(run.folder, facts) as ehr:
        async with run.backend() as (backend, _):
            await backlog(backend, ehr)
            requests = Requests()
            budget = RequestBudget(rate=limit, concurrency=CONCURRENCY)
            dispatch = dispatcher(backend, ehr.base_url, budget, requests=requests)
            await queue_all(dispatch)
            await set_faults(ehr.base_url, rate_limit=limit)
            seconds = await drain(backend, dispatch)
            injected = await faults_injected(ehr.base_url)
            await run.check(backend, ehr, facts)
    sent = requests.rate()
    throttled = injected.get("rate_limit", 0)
    progress(
        f"  {len(requests.started):,} requests in {seconds:.1f} s: {sent:.2f} requests/s, "
        f"{facts / seconds:.2f} items/s, {throttled} 429s; statuses {dict(requests.statuses)}"
    )
    emit(Metric(metric=f"outbound_rate_ratio_r{limit}", value=sent, unit="requests/s",
                baseline=float(limit), backend=run.name))  # fmt: skip
    emit(Metric(metric=f"outbound_rate_items_r{limit}", value=facts / seconds, unit="items/s",
                baseline=limit / REQUESTS_PER_ITEM, backend=run.name))  # fmt: skip
    emit(Metric(metric=f"outbound_rate_throttled_r{limit}", value=float(throttled),
                unit="429s", baseline=None, backend=run.name))  # fmt: skip


def _instant(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


async def latency(run: Run, samples: int) -> None:
    progress(f"{run.name}: latency, {samples} facts one at a time")
    committed: dict[str, datetime] = {}
    with sandbox(run.folder, samples) as ehr:
        async with run.backend() as (backend, _):
            ids = await import_patients(backend, ehr.patients)
            model = WorldModel(backend.worldmodel, WS)
            dispatch = dispatcher(backend, ehr.base_url, UNLIMITED)
            stop = asyncio.Event()
            task = asyncio.create_task(dispatch.run(stop))
            pace = random.Random(7)
            try:
                for n, entity_id in enumerate(ids):
                    committed[ehr.patients[n]["id"]] = await verified_fact(model, entity_id, n)
                    await asyncio.sleep(pace.uniform(0.5, 1.5) * PACE)
                while await open_items(backend):  # noqa: ASYNC110 (the outbox is in the database)
                    await asyncio.sleep(0.1)
            finally:
                stop.set()
                await task
                for rt in dispatch.sinks.values():
                    await rt.sink.aclose()
            await run.check(backend, ehr, samples)
        written = _last_updated(ehr)
    waits = [(written[pid] - at).total_seconds() * 1000 for pid, at in committed.items()]
    progress(f"  p50 {percentile(waits, 50):.1f} ms, p99 {percentile(waits, 99):.1f} ms")
    for pct in (50, 99):
        emit(Metric(metric=f"outbound_latency_p{pct}", value=percentile(waits, pct), unit="ms",
                    baseline=SEED_CYCLE_MS, backend=run.name))  # fmt: skip


def _last_updated(ehr: Sandbox) -> dict[str, datetime]:
    import sqlite3

    with sqlite3.connect(f"file:{ehr.db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT id, last_updated FROM resource_current WHERE type = 'Patient'"
        ).fetchall()
    return {row[0]: _instant(row[1]) for row in rows}


async def scaleout(run: Run, facts: int) -> None:
    drained = {}
    for workers in (1, WORKERS):
        progress(f"{run.name}: scale-out, {workers} dispatcher processes, {facts:,} facts")
        with sandbox(run.folder, facts) as ehr:
            async with run.backend() as (backend, schema):
                await backlog(backend, ehr)
                await queue_all(dispatcher(backend, ehr.base_url, UNLIMITED))
                done = await outbound_scaleout.drain(
                    backend, run.dsn, schema, ehr.base_url, UNLIMITED,
                    workers=workers, items=facts, sandbox_pid=ehr.pid,
                )  # fmt: skip
                await run.check(backend, ehr, facts)
        progress(
            f"  {done.throughput:.1f} items/s ({done.seconds:.1f} s); CPU over the drain: "
            f"dispatchers {done.worker_cpu / done.seconds:.2f} cores, "
            f"sandbox {done.sandbox_cpu / done.seconds:.2f} cores"
        )
        drained[workers] = done
    one, many = drained[1], drained[WORKERS]
    emit(Metric(metric="outbound_scaleout_ratio", value=many.throughput, unit="items/s",
                baseline=one.throughput, backend=run.name))  # fmt: skip
    emit(Metric(metric="outbound_scaleout_sandbox_cpu", value=many.sandbox_cpu / many.seconds,
                unit="cores", baseline=None, backend=run.name))  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.outbound", description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="about a minute per rate run")
    parser.add_argument("--facts", type=int, help=f"the backlog (default {FACTS:,})")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL (default: %(default)s)")
    parser.add_argument(
        "--only",
        choices=("rate", "latency", "scaleout", "outbox"),
        action="append",
        help="run only these",
    )
    parser.add_argument(
        "--rate", type=int, choices=RATES, action="append", help="only these rate runs"
    )
    return parser


async def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = ("sqlite", "postgres") if args.backend == "all" else (args.backend,)
    only = set(args.only or ("rate", "latency", "scaleout", "outbox"))
    emit(machine())
    for name in names:
        with tempfile.TemporaryDirectory(prefix="ehrbridge-bench-outbound-") as folder:
            run = Run(name, args.dsn, Path(folder))
            if "outbox" in only:
                emit(await outbox.measure(name, items_n=OUTBOX_ITEMS, lanes=OUTBOX_LANES,
                                          dsn=args.dsn, folder=Path(folder)))  # fmt: skip
            if "latency" in only:
                await latency(run, QUICK_LATENCY_SAMPLES if args.quick else LATENCY_SAMPLES)
            if "scaleout" in only and name == "postgres":
                await scaleout(run, args.facts or (1000 if args.quick else FACTS))
            if "rate" in only:
                for limit in args.rate or RATES:
                    quick = QUICK_SECONDS * limit // REQUESTS_PER_ITEM
                    await rate(run, limit, args.facts or (quick if args.quick else FACTS))
            emit(Metric(metric="outbound_duplicates", value=float(run.duplicates),
                        unit="versions", baseline=None, backend=name))  # fmt: skip
            if run.unsynced:
                progress(f"{name}: {run.unsynced} items did not sync")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
