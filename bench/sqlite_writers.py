"""``python -m bench.sqlite_writers [--processes P] [--writes W] [--hold-ms H]``.

How long a write waits for its turn when several processes write to one SQLite file, as
``ehrbridge serve --workers``, runners and the command line do. Every process opens the store
(``SQLiteDatabase``) on one file and runs write transactions through its ``transaction``:
seven 200-byte rows and some CPU work inside the transaction. Each metric's value is with the
writers queueing on the lock file (the store as shipped); its baseline is the same run when they
do not take it and only SQLite's busy wait (sleeps of 1, 2, 5, 10 ... 100 ms) separates them.

- ``sqlite_write_p50`` / ``_p99`` (ms), *even*: P processes (default 3), W transactions each
  (default 300) of about H ms (default 1 ms, like an append's planning), 0.5 ms apart.
- ``sqlite_short_write_p99`` / ``_max`` (ms), *bulk*: one process writes 60 transactions of
  50 ms back to back (an import), another 300 of 1 ms, 5 ms apart (the API): the short writer's
  times. With the busy wait alone the bulk writer can take the lock again and again before the
  sleeping short writer wakes.

JSON lines on stdout (``bench/report.py``), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from pathlib import Path

from bench.report import Metric, emit, machine, percentile, progress
from ehrbridge.storage.sqlite.database import SQLiteDatabase


def busy(hold_ms: float) -> None:
    """About ``hold_ms`` of CPU work (Python, holding the GIL, as planning does)."""
    until = time.perf_counter() + hold_ms / 1000
    while time.perf_counter() < until:
        pass


async def writer(
    path: Path, writes: int, hold_ms: float, pause: float, lock_file: bool
) -> list[float]:
    store = await SQLiteDatabase.open(path)
    if not lock_file and store._writer_lock is not None:  # SQLite's busy wait alone
        os.close(store._writer_lock)
        store._writer_lock = None

    def work(conn: sqlite3.Connection) -> None:
        conn.executemany("INSERT INTO bench_rows (body) VALUES (?)", [("x" * 200,)] * 7)
        busy(hold_ms)

    samples = []
    try:
        for _ in range(writes):
            started = time.perf_counter()
            await store.transaction(work)
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(pause)
    finally:
        await store.close()
    return samples


#: one writer process: (transactions, ms of work in each, seconds between them)
Writer = tuple[int, float, float]


def process(
    path: Path, spec: Writer, lock_file: bool, out: Queue[tuple[Writer, list[float]]]
) -> None:
    writes, hold_ms, pause = spec
    out.put((spec, asyncio.run(writer(path, writes, hold_ms, pause, lock_file))))


def run(folder: Path, name: str, specs: list[Writer], lock_file: bool) -> dict[Writer, list[float]]:
    """Each writer's transaction times (by its spec)."""
    path = folder / f"{name}-{'lock' if lock_file else 'busy'}.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, body TEXT)")
    context = multiprocessing.get_context("spawn")
    out: Queue[tuple[Writer, list[float]]] = context.Queue()
    workers = [context.Process(target=process, args=(path, spec, lock_file, out)) for spec in specs]
    for worker in workers:
        worker.start()
    samples: dict[Writer, list[float]] = {}
    for _ in workers:
        spec, times = out.get()
        samples.setdefault(spec, []).extend(times)
    for worker in workers:
        worker.join()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite_writers")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--hold-ms", type=float, default=1.0)
    args = parser.parse_args(argv)
    emit(machine())
    even: list[Writer] = [(args.writes, args.hold_ms, 0.0005)] * args.processes
    short: Writer = (300, 1.0, 0.005)
    bulk: list[Writer] = [(60, 50.0, 0.0), short]
    results: dict[tuple[str, bool], dict[Writer, list[float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, specs in (("even", even), ("bulk", bulk)):
            for lock_file in (False, True):
                progress(f"{name}: {'the lock file' if lock_file else 'the busy wait alone'}")
                results[(name, lock_file)] = run(Path(folder), name, specs, lock_file)

    def metric(name: str, value: float, baseline: float) -> None:
        emit(Metric(metric=name, value=value, unit="ms", baseline=baseline, backend="sqlite"))

    queued, alone = (
        [t for times in results[("even", lock)].values() for t in times] for lock in (True, False)
    )
    for pct in (50, 99):
        metric(f"sqlite_write_p{pct}", percentile(queued, pct), percentile(alone, pct))
    queued, alone = (results[("bulk", lf)][short] for lf in (True, False))
    metric("sqlite_short_write_p99", percentile(queued, 99), percentile(alone, 99))
    metric("sqlite_short_write_max", max(queued), max(alone))
    return 0


if __name__ == "__main__":
    sys.exit(main())
