"""``python -m bench [--quick] [--backend sqlite|postgres|all] [--patients N]``.

Prints one JSON object per line on stdout (the machine first, then each metric as it is
measured) and progress on stderr. See ``docs/benchmarks.md`` for what each metric means.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.backends import DEFAULT_DSN, Backend, PostgresBackend, PostgresUnavailable, SQLiteBackend
from bench.report import emit, machine, progress
from bench.scenario import FULL, QUICK, Size, measure


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="10,000 patients / 100,000 events (under a minute)"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="sqlite")
    parser.add_argument(
        "--dsn", default=DEFAULT_DSN, help="PostgreSQL server (default: %(default)s)"
    )
    parser.add_argument("--patients", type=int, help="override the number of patients")
    parser.add_argument(
        "--events-per-patient", type=int, help="override the events written per patient"
    )
    parser.add_argument("--seed", type=int, default=42)
    return parser


async def _run_one(name: str, size: Size, dsn: str, folder: Path) -> bool:
    backend: Backend
    if name == "sqlite":
        backend = await SQLiteBackend.open(folder)
    else:
        try:
            backend = await PostgresBackend.open(dsn)
        except PostgresUnavailable as exc:
            progress(f"postgres skipped: {exc}")
            return False
    try:
        async for metric in measure(backend, size):
            emit(metric)
    finally:
        await backend.close()
    return True


async def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    size = QUICK if args.quick else FULL
    if args.patients:
        size = replace(size, patients=args.patients)
    if args.events_per_patient:
        size = replace(size, events_per_patient=args.events_per_patient)
    size = replace(size, seed=args.seed)
    names = ("sqlite", "postgres") if args.backend == "all" else (args.backend,)
    emit(machine())
    progress(f"{size.patients:,} patients x {size.events_per_patient} events on {', '.join(names)}")
    ok = True
    for name in names:
        with tempfile.TemporaryDirectory(prefix="ehrbridge-bench-") as folder:
            ok = await _run_one(name, size, args.dsn, Path(folder)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
