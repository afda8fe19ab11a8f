"""``python -m bench.fhir_import [--backend sqlite|postgres|all] [--files N] [--no-medplum]``.

Imports the Synthea bundles into a fresh world model and reports resources per second against:

- ``fhir_import_throughput``: the raw limit, measured in the same run: parse each bundle,
  canonicalise and hash every resource, and bulk-insert ``(type, id, hash, json)`` rows into one
  plain table, one transaction per bundle, with no projections (SQLite ``executemany``,
  PostgreSQL ``COPY``). Target ratio >= 0.5.
- ``fhir_import_vs_medplum``: Medplum's FHIR router (the test server in ``tests/fhirserver``,
  in memory) loading the same bundles as transactions over loopback HTTP. Target >= 2.
- ``fhir_reimport_throughput``: importing the same files again (every resource unchanged, zero
  events written), against the same raw limit.

JSON lines on stdout (see ``bench/report.py``), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from tests.fhir_server import running_server

from bench.backends import DEFAULT_DSN
from bench.report import Metric, emit, machine, progress
from ehrbridge.fhir.importer import Importer
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.canonical import canonical_json, digest
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store

WORKSPACE = "bench"
_SYNTHEA = (
    os.environ.get("EHRBRIDGE_SYNTHEA", ""),
    str(Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea-r4"),
    "/work/shared/data/synthea-r4",
)


def synthea_bundles(limit: int | None = None) -> list[Path]:
    """The Synthea patient bundles (the hospital and practitioner bundles are left out: every
    patient bundle carries the organizations and practitioners it refers to)."""
    for folder in _SYNTHEA:
        if folder and (Path(folder) / "SHA256SUMS").is_file():
            files = sorted(
                p
                for p in Path(folder).glob("*.json")
                if not p.name.startswith(("hospitalInformation", "practitionerInformation"))
            )
            return files[:limit] if limit else files
    raise SystemExit("the Synthea bundles are missing: set EHRBRIDGE_SYNTHEA to their folder")


Row = tuple[str, str, str, str]


def raw_row(resource: dict[str, Any]) -> Row:
    """What the raw limit stores of a resource: type, id, content hash, canonical JSON."""
    body = canonical_json(resource)
    return (resource["resourceType"], resource["id"], digest(body), body.decode())


def _rows(path: Path) -> list[Row]:
    return [raw_row(entry["resource"]) for entry in orjson.loads(path.read_bytes())["entry"]]


def raw_sqlite(batches: Iterable[list[Row]], db: Path) -> tuple[int, float]:
    """The raw limit on SQLite, with the store's own pragmas: each batch (made inside the timed
    loop, so parsing and hashing count) is one transaction of bulk inserts."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE resources (resource_type TEXT, id TEXT, hash TEXT, body TEXT)")
    n = 0
    started = time.perf_counter()
    for rows in batches:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO resources VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        n += len(rows)
    elapsed = time.perf_counter() - started
    conn.close()
    return n, elapsed


async def raw_postgres(files: Sequence[Path], dsn: str) -> tuple[int, float]:
    """The raw limit on PostgreSQL: ``COPY`` into a plain table, one transaction per bundle."""
    schema = f"bench_raw_{os.urandom(4).hex()}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            await conn.execute(
                f'CREATE TABLE "{schema}".resources (resource_type TEXT, id TEXT, hash TEXT, '
                "body JSONB)"
            )
            n = 0
            started = time.perf_counter()
            for path in files:
                rows = _rows(path)
                copy_sql = f'COPY "{schema}".resources FROM STDIN'
                async with conn.transaction(), conn.cursor().copy(copy_sql) as copy:
                    for row in rows:
                        await copy.write_row(row)
                n += len(rows)
            elapsed = time.perf_counter() - started
        finally:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return n, elapsed


def medplum_load(files: Sequence[Path]) -> tuple[int, float]:
    """Medplum's FHIR router loading the bundles as transactions over loopback HTTP."""
    with running_server() as server, httpx.Client(timeout=600) as http:
        n = 0
        started = time.perf_counter()
        for path in files:
            body = path.read_bytes()
            response = http.post(
                server.base_url,
                content=body,
                headers={"content-type": "application/fhir+json"},
            )
            if response.status_code >= 400:
                raise SystemExit(f"medplum refused {path.name}: {response.status_code}")
            n += len(orjson.loads(body)["entry"])
        return n, time.perf_counter() - started


async def _open(backend: str, folder: Path, dsn: str) -> tuple[Store, Any]:
    if backend == "sqlite":
        return await SQLiteStore.open(folder / "wm.db"), None
    from ehrbridge.storage.postgres.worldmodel import PostgresStore

    store = await PostgresStore.open(dsn, schema=f"bench_{os.urandom(4).hex()}")
    return store, store.drop_schema


async def world_model_import(
    backend: str, files: Sequence[Path], folder: Path, dsn: str
) -> tuple[tuple[int, float, int], tuple[int, float, int]]:
    """``(resources, seconds, events)`` of the first import and of the re-import."""
    store, drop = await _open(backend, folder, dsn)
    try:
        runs = []
        for _ in range(2):
            importer = Importer(WorldModel(store, WORKSPACE), source="synthea")
            started = time.perf_counter()
            report = await importer.import_paths(files)
            elapsed = time.perf_counter() - started
            if report.errors:
                raise SystemExit(f"import failed: {report.errors[:3]}")
            runs.append((report.resources, elapsed, report.events))
        return runs[0], runs[1]
    finally:
        if drop is not None:
            await drop()
        await store.close()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fhir_import", description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="sqlite")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--files", type=int, help="only the first N bundles")
    parser.add_argument("--no-medplum", action="store_true", help="skip the Medplum baseline")
    args = parser.parse_args(argv)
    files = synthea_bundles(args.files)
    emit(machine())
    medplum_rate = None
    if not args.no_medplum:
        n, seconds = medplum_load(files)
        medplum_rate = n / seconds
        progress(f"medplum: {n:,} resources in {seconds:.1f} s")
    for backend in ("sqlite", "postgres") if args.backend == "all" else (args.backend,):
        with tempfile.TemporaryDirectory(prefix="ehrbridge-bench-") as tmp:
            folder = Path(tmp)
            if backend == "sqlite":
                n, seconds = raw_sqlite((_rows(p) for p in files), folder / "raw.db")
            else:
                n, seconds = await raw_postgres(files, args.dsn)
            raw_rate = n / seconds
            progress(f"{backend} raw: {n:,} resources in {seconds:.1f} s")
            first, again = await world_model_import(backend, files, folder, args.dsn)
            progress(
                f"{backend} import: {first[0]:,} resources in {first[1]:.1f} s, "
                f"{first[2]:,} events; re-import {again[1]:.1f} s, {again[2]} events"
            )
            rate = first[0] / first[1]
            emit(
                Metric(
                    metric="fhir_import_throughput",
                    value=rate,
                    unit="resources/s",
                    baseline=raw_rate,
                    backend=backend,
                )
            )
            if medplum_rate is not None:
                emit(
                    Metric(
                        metric="fhir_import_vs_medplum",
                        value=rate,
                        unit="resources/s",
                        baseline=medplum_rate,
                        backend=backend,
                    )
                )
            emit(
                Metric(
                    metric="fhir_reimport_throughput",
                    value=again[0] / again[1],
                    unit="resources/s",
                    baseline=raw_rate,
                    backend=backend,
                )
            )
            emit(
                Metric(
                    metric="fhir_reimport_events",
                    value=again[2],
                    unit="events",
                    baseline=None,
                    backend=backend,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
