"""``python -m bench.ndjson_import [--resources N] [--backend sqlite|postgres]``.

Bulk NDJSON import at scale, with bounded memory. The 60 Synthea bundles are replicated with new
ids into gzipped NDJSON files, one per resource type (Bulk Data style), until there are at least
``--resources`` resources (default 1,000,000). Each replica is a different set of people: ids,
identifiers, NPIs, names, birth dates and phone numbers are changed, so the world model's identity
resolution does not fold the copies into one person. References are rewritten to ``Type/id``.

Then a fresh process imports the folder into a fresh world model and reports:

- ``ndjson_import_throughput``: resources per second, against the raw limit on the same files
  measured in the same run (parse, canonicalise, hash and bulk-insert; no projections);
- ``ndjson_import_peak_rss``: the importing process's peak resident memory in MB, against the
  issue's ceiling of 300 MB (ratio <= 1 meets it).

JSON lines on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import re
import resource
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench.backends import DEFAULT_DSN
from bench.fhir_import import raw_row, raw_sqlite, synthea_bundles
from bench.report import Metric, emit, machine, progress
from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.reader import expand, read_units
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store

WORKSPACE = "bench"
#: Peak RSS the issue allows for the import of a million resources.
RSS_CEILING_MB = 300.0
#: Types that others refer to come first (file names sort in this order), as a Bulk Data
#: client would import them.
ORDER = (
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "Encounter",
    "Condition",
    "Procedure",
    "Immunization",
    "MedicationRequest",
    "Observation",
    "DiagnosticReport",
    "Goal",
    "CarePlan",
    "AllergyIntolerance",
    "ImagingStudy",
    "Claim",
    "ExplanationOfBenefit",
)
_URN = re.compile(rb"urn:uuid:([0-9a-f-]{36})")


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n)).capitalize()


def _person(resource_: dict[str, Any], replica: int, rng: random.Random) -> None:
    """Make a replica of a Patient or Practitioner another person."""
    for name in resource_.get("name") or []:
        name["family"] = _letters(rng, 9)
        name["given"] = [_letters(rng, 7)]
    for ident in resource_.get("identifier") or []:
        if isinstance(ident.get("value"), str):
            ident["value"] = f"{ident['value']}r{replica}"
    if isinstance(resource_.get("birthDate"), str):
        year = int(resource_["birthDate"][:4]) - replica % 60
        resource_["birthDate"] = f"{year:04d}{resource_['birthDate'][4:]}"
    for telecom in resource_.get("telecom") or []:
        if telecom.get("system") == "phone":
            telecom["value"] = f"617-555-{rng.randrange(10000):04d}"


def replicas(target: int) -> Iterator[tuple[str, bytes]]:
    """``(resource type, NDJSON line)`` until ``target`` resources have been made."""
    bundles = synthea_bundles()
    made = 0
    replica = 0
    rng = random.Random(7)
    while made < target:
        suffix = f"-r{replica}"
        for path in bundles:
            doc = orjson.loads(path.read_bytes())
            types = {
                e["fullUrl"].removeprefix("urn:uuid:"): e["resource"]["resourceType"]
                for e in doc["entry"]
            }

            def ref(
                match: re.Match[bytes], types: dict[str, str] = types, suffix: str = suffix
            ) -> bytes:
                uid = match.group(1).decode()
                return f"{types[uid]}/{uid}{suffix}".encode()

            for entry in doc["entry"]:
                res = entry["resource"]
                res["id"] = f"{res['id']}{suffix}"
                if res["resourceType"] in ("Patient", "Practitioner"):
                    _person(res, replica, rng)
                yield res["resourceType"], _URN.sub(ref, orjson.dumps(res))
                made += 1
        replica += 1
        progress(f"generated {made:,} resources ({replica} replicas)")


def generate(folder: Path, target: int) -> int:
    """Write ``folder/NN-<Type>.ndjson.gz`` files; returns the number of resources."""
    files: dict[str, gzip.GzipFile] = {}
    n = 0
    try:
        for resource_type, line in replicas(target):
            if resource_type not in files:
                rank = ORDER.index(resource_type) if resource_type in ORDER else len(ORDER)
                path = folder / f"{rank:02d}-{resource_type}.ndjson.gz"
                files[resource_type] = gzip.open(path, "wb", compresslevel=1)  # noqa: SIM115
            files[resource_type].write(line + b"\n")
            n += 1
    finally:
        for handle in files.values():
            handle.close()
    return n


def raw_limit(folder: Path, scratch: Path) -> tuple[int, float]:
    """Parse, canonicalise, hash and bulk-insert every line into one plain SQLite table."""
    batches = (
        [raw_row(e.resource) for e in unit.entries if e.resource is not None]
        for unit in read_units(expand([folder]))
    )
    return raw_sqlite(batches, scratch)


async def import_folder(folder: Path, backend: str, db: Path, dsn: str) -> dict[str, Any]:
    """Import in this process; returns counts, seconds and peak RSS."""
    store: Store
    drop = None
    if backend == "sqlite":
        store = await SQLiteStore.open(db)
    else:
        from ehrbridge.storage.postgres.worldmodel import PostgresStore

        pg = await PostgresStore.open(dsn, schema=f"bench_{os.urandom(4).hex()}")
        store, drop = pg, pg.drop_schema
    try:
        importer = Importer(WorldModel(store, WORKSPACE), source="bulk")
        started = time.perf_counter()
        last = [started]

        def tick(_unit: object, report: Any) -> None:
            if time.perf_counter() - last[0] > 30:
                last[0] = time.perf_counter()
                rate = report.resources / (last[0] - started)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                progress(f"imported {report.resources:,} ({rate:,.0f}/s, peak RSS {rss:.0f} MB)")

        report = await importer.import_paths([folder], on_unit=tick)
        elapsed = time.perf_counter() - started
    finally:
        if drop is not None:
            await drop()
        await store.close()
    return {
        "resources": report.resources,
        "events": report.events,
        "errors": len(report.errors),
        "first_errors": [str(e) for e in report.errors[:3]],
        "seconds": elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ndjson_import", description=__doc__)
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--import-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.import_only:
        result = asyncio.run(import_folder(args.import_only, args.backend, args.db, args.dsn))
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
        return 0
    emit(machine())
    with tempfile.TemporaryDirectory(prefix="ehrbridge-ndjson-") as tmp:
        folder = Path(tmp) / "export"
        folder.mkdir()
        total = generate(folder, args.resources)
        size = sum(p.stat().st_size for p in folder.iterdir())
        progress(f"{total:,} resources in {size / 2**20:.0f} MB of gzipped NDJSON")
        n, seconds = raw_limit(folder, Path(tmp) / "raw.db")
        progress(f"raw limit: {n:,} resources in {seconds:.0f} s")
        # A fresh process, so its peak RSS is the import's alone.
        child = subprocess.run(  # noqa: S603 (our own module)
            [
                sys.executable,
                "-m",
                "bench.ndjson_import",
                "--import-only",
                str(folder),
                "--db",
                str(Path(tmp) / "wm.db"),
                "--backend",
                args.backend,
                "--dsn",
                args.dsn,
            ],
            check=True,
            stdout=subprocess.PIPE,
        )
        result = orjson.loads(child.stdout.splitlines()[-1])
    progress(f"import: {result}")
    emit(
        Metric(
            metric="ndjson_import_throughput",
            value=result["resources"] / result["seconds"],
            unit="resources/s",
            baseline=n / seconds,
            backend=args.backend,
        )
    )
    emit(
        Metric(
            metric="ndjson_import_peak_rss",
            value=result["peak_rss_mb"],
            unit="MB",
            baseline=RSS_CEILING_MB,
            backend=args.backend,
        )
    )
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
