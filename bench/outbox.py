"""``python -m bench.outbox [--items N] [--lanes L] [--backend sqlite|postgres|all]``.

What the outbox's bookkeeping costs (docs/outbox.md), one JSON line per backend:

- ``outbox_overhead_ratio`` (items/s): ``N`` items over ``L`` lanes queued in batches of
  :data:`BATCH` (as the feeder queues them), then claimed :data:`CLAIM` at a time and settled
  one by one (as a dispatcher with no sink to wait for would), until every item is synced: each
  item inserted, claimed and settled once. Baseline: the same rows inserted into a plain table
  of the same columns (no key, no index) in batches of the same size, on the raw driver in the
  same database, in the same run. The ratio is the throughput of the whole cycle against one
  plain insert of the row.

:func:`measure` is what ``python -m bench.outbound`` calls. JSON lines on stdout
(``bench/report.py``), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench.backends import DEFAULT_DSN
from bench.report import Metric, emit, machine, progress
from ehrbridge.outbound.outbox import Attempt, ItemStatus, NewItem, Settle, item_key
from ehrbridge.storage import Backend, open_backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore

WS = "bench"
SINK = "ehr"
#: items per enqueue, and rows per baseline transaction
BATCH = 100
#: items per claim
CLAIM = 50
LEASE = timedelta(minutes=5)
_PLAIN = (
    "CREATE TABLE outbox_plain (id TEXT, workspace TEXT, sink TEXT, key TEXT, lane TEXT, "
    "entity_type TEXT, entity_id TEXT, event_id TEXT, operation TEXT, payload TEXT, "
    "workflow TEXT, step INTEGER, status TEXT, created_at TEXT, updated_at TEXT, "
    "next_attempt_at TEXT)"
)


def items(n: int, lanes: int) -> list[NewItem]:
    """``n`` items of a phone change each, round-robin over ``lanes`` patients."""
    return [
        NewItem(
            sink=SINK,
            key=item_key(SINK, f"event-{k}"),
            lane=f"Patient/p{k % lanes}",
            entity_type="Patient",
            entity_id=f"p{k % lanes}",
            event_id=f"event-{k}",
            operation="upsert",
            payload={"fields": {"phone.mobile": f"+1617555{k % 10_000:04d}"}, "base": "3"},
        )
        for k in range(n)
    ]


def plain_rows(batch: Sequence[NewItem]) -> list[tuple[Any, ...]]:
    """The rows the outbox stores for ``batch``, as the baseline inserts them."""
    now = datetime.now(UTC).isoformat()
    return [
        (
            os.urandom(13).hex(),
            WS,
            i.sink,
            i.key,
            i.lane,
            i.entity_type,
            i.entity_id,
            i.event_id,
            i.operation,
            orjson.dumps(i.payload).decode(),
            i.workflow,
            i.step,
            "pending",
            now,
            now,
            now,
        )
        for i in batch
    ]


async def cycle(ports: Backend, queued: list[NewItem]) -> float:
    """Seconds to queue, claim and settle every item of ``queued``."""
    outbox = ports.outbox
    started = time.perf_counter()
    for at in range(0, len(queued), BATCH):
        await outbox.enqueue(WS, queued[at : at + BATCH])
    settled = 0
    while settled < len(queued):
        claims = await outbox.claim(WS, SINK, "bench", limit=CLAIM, lease=LEASE)
        if not claims:
            raise RuntimeError("the outbox has nothing ready while items are open")
        for claim in claims:
            now = datetime.now(UTC)
            attempt = Attempt(
                item_id=claim.item.id,
                epoch=claim.epoch,
                started_at=now,
                finished_at=now,
                outcome="synced",
                status=200,
            )
            result = {"ref": f"Patient/{claim.item.entity_id}", "version": "4"}
            done = Settle(status=ItemStatus.SYNCED, attempt=attempt, result=result)
            if not await outbox.settle(WS, claim.item.id, claim.epoch, done):
                raise RuntimeError("a claim was lost in a run with one dispatcher")
            settled += 1
    return time.perf_counter() - started


def _sqlite_baseline(path: Path, batches: list[list[tuple[Any, ...]]]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # the store's pragmas, on a file of its own
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_PLAIN)
        marks = ",".join("?" * len(batches[0][0]))
        started = time.perf_counter()
        for rows in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO outbox_plain VALUES ({marks})", rows)
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


async def _postgres_baseline(dsn: str, schema: str, batches: list[list[tuple[Any, ...]]]) -> float:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f'SET search_path TO "{schema}"'.encode())
        await conn.execute(_PLAIN.encode())
        marks = ",".join(["%s"] * len(batches[0][0]))
        started = time.perf_counter()
        for rows in batches:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(f"INSERT INTO outbox_plain VALUES ({marks})".encode(), rows)
        return time.perf_counter() - started


@asynccontextmanager
async def opened(backend: str, folder: Path, dsn: str) -> AsyncIterator[Backend]:
    """Every port on a fresh SQLite file in ``folder``, or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        async with await open_backend(f"sqlite:///{folder / 'outbox.db'}") as ports:
            yield ports
        return
    async with await open_backend(dsn, schema=f"bench_{os.urandom(4).hex()}") as ports:
        try:
            yield ports
        finally:
            assert isinstance(ports.worldmodel, PostgresStore)
            await ports.worldmodel.drop_schema()


async def measure(backend: str, *, items_n: int, lanes: int, dsn: str, folder: Path) -> Metric:
    """``outbox_overhead_ratio`` on ``backend`` (``sqlite`` or ``postgres``)."""
    queued = items(items_n, lanes)
    batches = [plain_rows(queued[at : at + BATCH]) for at in range(0, len(queued), BATCH)]
    async with opened(backend, folder, dsn) as ports:
        took = await cycle(ports, queued)
        if backend == "sqlite":
            raw = await asyncio.to_thread(_sqlite_baseline, folder / "plain.db", batches)
        else:
            assert isinstance(ports.worldmodel, PostgresStore)
            schema = ports.worldmodel.schema
            assert schema is not None
            raw = await _postgres_baseline(dsn, schema, batches)
    return Metric(
        metric="outbox_overhead_ratio",
        value=items_n / took,
        unit="items/s",
        baseline=items_n / raw,
        backend=backend,
    )


async def main(items_n: int, lanes: int, dsn: str, backends: list[str]) -> None:
    emit(machine())
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            progress(f"{backend}: {items_n:,} items over {lanes:,} lanes, queued, claimed, settled")
            folder = Path(tmp) / backend
            folder.mkdir()
            emit(await measure(backend, items_n=items_n, lanes=lanes, dsn=dsn, folder=folder))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.add_argument("--items", type=int, default=5000, help="items queued and delivered")
    parser.add_argument("--lanes", type=int, default=500, help="patients the items write")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    return parser


if __name__ == "__main__":
    args = _parser().parse_args()
    chosen = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    asyncio.run(main(args.items, args.lanes, args.dsn, chosen))
    sys.exit(0)
