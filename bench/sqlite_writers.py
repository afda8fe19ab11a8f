"""``python -m bench.sqlite_writers [--processes P] [--writes W] [--hold-ms H]``.

How long a write waits for its turn when several processes write to one SQLite file, as
``ehrbridge serve --workers``, runners and the command line do. Each of P processes (default 3)
opens the store (``SQLiteStore``) on one file and runs W write transactions (default 300) through
``SQLiteStore.transaction``: seven 200-byte rows and about H ms of work inside the transaction
(default 1 ms, like an append's planning), then a 0.5 ms pause.

- ``sqlite_write_p50`` / ``_p99`` (ms): the time of one such transaction, waiting included, with
  the writers queueing on the lock file (the store as shipped). Baseline: the same transactions
  when the writers do not take the lock file and only SQLite's busy wait (which sleeps in steps
  of 1, 2, 5, 10 ... 100 ms) separates them.

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
from ehrbridge.worldmodel.sqlite import SQLiteStore


def busy(hold_ms: float) -> None:
    """About ``hold_ms`` of CPU work (Python, holding the GIL, as planning does)."""
    until = time.perf_counter() + hold_ms / 1000
    while time.perf_counter() < until:
        pass


async def writer(path: Path, writes: int, hold_ms: float, lock_file: bool) -> list[float]:
    store = await SQLiteStore.open(path)
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
            await asyncio.sleep(0.0005)
    finally:
        await store.close()
    return samples


def process(
    path: Path, writes: int, hold_ms: float, lock_file: bool, out: Queue[list[float]]
) -> None:
    out.put(asyncio.run(writer(path, writes, hold_ms, lock_file)))


def run(folder: Path, processes: int, writes: int, hold_ms: float, lock_file: bool) -> list[float]:
    path = folder / f"writers-{'lock' if lock_file else 'busy'}.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, body TEXT)")
    context = multiprocessing.get_context("spawn")
    out: Queue[list[float]] = context.Queue()
    workers = [
        context.Process(target=process, args=(path, writes, hold_ms, lock_file, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    samples = [sample for _ in workers for sample in out.get()]
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
    with tempfile.TemporaryDirectory() as folder:
        progress("busy wait alone (baseline)")
        baseline = run(Path(folder), args.processes, args.writes, args.hold_ms, lock_file=False)
        progress("writers queueing on the lock file")
        queued = run(Path(folder), args.processes, args.writes, args.hold_ms, lock_file=True)
    for pct in (50, 99):
        emit(
            Metric(
                metric=f"sqlite_write_p{pct}",
                value=percentile(queued, pct),
                unit="ms",
                baseline=percentile(baseline, pct),
                backend="sqlite",
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
