"""``python -m bench.export_backfill [--files N] [--file-size N]``.

A backfill through Bulk Data ``$export`` against importing the same data from files. The sandbox
EHR (a SQLite file, served by uvicorn on loopback) is loaded with the Synthea patient bundles
(untimed), then, in the same run:

- ``export_backfill_throughput``: ``Backfill.run`` (kick-off, status polling honouring the
  sandbox's ``Retry-After: 1``, NDJSON files streamed into the importer) into a fresh SQLite
  world model, resources per second end to end, against ``Importer.import_paths`` of the same
  bundles into another fresh SQLite world model (the baseline);
- ``export_backfill_import_throughput``: the same backfill counted from the manifest on (the
  download and import only, without the server's export and the polling), against the same
  baseline.

JSON lines on stdout (see ``bench/report.py``), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from bench.fhir_import import synthea_bundles
from bench.report import Metric, emit, machine, progress
from ehrbridge.connectors.fhir.backfill import Backfill
from ehrbridge.connectors.source import DataSourceConfig
from ehrbridge.fhir.bulk import Manifest, OutputFile
from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.reader import Unit
from ehrbridge.sandbox.app import SandboxApp
from ehrbridge.sandbox.export import FILE_SIZE
from ehrbridge.sandbox.messages import FhirRequest
from ehrbridge.sandbox.serve import running_sandbox
from ehrbridge.storage import open_backend
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.model import WorldModel

WORKSPACE = "bench"


def load_sandbox(app: SandboxApp, files: Sequence[Path]) -> int:
    """POST each bundle to the sandbox in-process, as the transaction it is; resources loaded."""
    n = 0
    for path in files:
        bundle = orjson.loads(path.read_bytes())
        response = app.server.handle(FhirRequest(method="POST", path="", body=bundle))
        if response.status != 200:
            raise SystemExit(f"the sandbox refused {path.name}: HTTP {response.status}")
        n += len(bundle["entry"])
    return n


class Clock:
    """Notes when the manifest arrived (a backfill progress watcher)."""

    def __init__(self) -> None:
        self.manifest_at: float | None = None

    def exporting(self, progress: str | None) -> None:
        pass

    def importing(self, manifest: Manifest, pending: Sequence[OutputFile]) -> None:
        self.manifest_at = time.perf_counter()

    def unit(self, output: OutputFile, unit: Unit, resources: int) -> None:
        pass


async def backfill(base_url: str, folder: Path) -> tuple[int, float, float, int]:
    """``(resources, seconds end to end, seconds from the manifest on, events)``."""
    backend = await open_backend(f"sqlite:///{folder / 'backfill.db'}")
    store = backend.worldmodel
    try:
        clock = Clock()
        job = Backfill(WorldModel(store, WORKSPACE), backend.runner, progress=clock)
        source = DataSourceConfig(id="synthea", kind="fhir", base_url=base_url)
        started = time.perf_counter()
        result = await job.run(source)
        finished = time.perf_counter()
        if not result.complete:
            raise SystemExit(f"the backfill did not complete: {result.error}")
        assert clock.manifest_at is not None
        return result.read, finished - started, finished - clock.manifest_at, result.report.events
    finally:
        await store.close()


async def baseline(files: Sequence[Path], folder: Path) -> tuple[int, float, int]:
    """``(resources, seconds, events)`` of importing the bundles from files."""
    store = await SQLiteStore.open(folder / "files.db")
    try:
        importer = Importer(WorldModel(store, WORKSPACE), source="synthea")
        started = time.perf_counter()
        report = await importer.import_paths(files)
        elapsed = time.perf_counter() - started
        if report.errors:
            raise SystemExit(f"import failed: {report.errors[:3]}")
        return report.resources, elapsed, report.events
    finally:
        await store.close()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export_backfill", description=__doc__)
    parser.add_argument("--files", type=int, help="only the first N bundles")
    parser.add_argument(
        "--file-size", type=int, default=FILE_SIZE, help="resources per exported file"
    )
    args = parser.parse_args(argv)
    files = synthea_bundles(args.files)
    emit(machine())
    with tempfile.TemporaryDirectory(prefix="ehrbridge-bench-") as tmp:
        folder = Path(tmp)
        app = SandboxApp(folder / "sandbox.db", seed=False, export_file_size=args.file_size)
        try:
            loaded = load_sandbox(app, files)
            progress(f"sandbox loaded with {loaded:,} resources from {len(files)} bundles")
            with running_sandbox(app) as base_url:
                n, seconds, importing, events = await backfill(base_url, folder)
            progress(
                f"backfill: {n:,} resources in {seconds:.1f} s ({importing:.1f} s from the "
                f"manifest on), {events:,} events"
            )
        finally:
            app.close()
        base_n, base_seconds, base_events = await baseline(files, folder)
        progress(
            f"import_paths: {base_n:,} resources in {base_seconds:.1f} s, {base_events:,} events"
        )
    base_rate = base_n / base_seconds
    emit(
        Metric(
            metric="export_backfill_throughput",
            value=n / seconds,
            unit="resources/s",
            baseline=base_rate,
            backend="sqlite",
        )
    )
    emit(
        Metric(
            metric="export_backfill_import_throughput",
            value=n / importing,
            unit="resources/s",
            baseline=base_rate,
            backend="sqlite",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
