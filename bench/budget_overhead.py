"""``python -m bench.budget_overhead [--requests N] [--dsn DSN]``: what a request budget costs.

Every poll request of a data source goes through its budget (``ehrbridge.budget``): a seat,
and a slot taken from the database (one conditional upsert) so that every runner keeps to the
source's rate together. This measures that bookkeeping with a budget far above what is sent
(a million a second, more than the config allows, so no request ever waits for its slot), on
each backend:

- ``budget_request_latency_loopback``: the mean time of one ``GET [base]/Patient`` to the sandbox
  EHR, served by ``ehrbridge sandbox`` in a process of its own on loopback (a very fast EHR: a
  real one answers in tens to hundreds of milliseconds), sequentially. Baseline: the same
  requests through the same client without a budget, in the same run.
- ``budget_bookkeeping_in_process``: the same against an in-process ``httpx.MockTransport`` (no
  network at all), so the ratio is the bookkeeping against the bare client: an upper bound.

JSON lines on stdout (``bench/report.py``), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from bench.backends import DEFAULT_DSN
from bench.report import Metric, emit, machine, progress
from bench.runner_poll import sandbox_process
from ehrbridge.budget import BudgetRegistry, RequestBudget
from ehrbridge.storage import Backend, open_backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore

#: far above what one sequential client sends: measures the bookkeeping, never a wait
UNBOUNDED = RequestBudget(rate=1_000_000, concurrency=4)


async def mean_ms(client: httpx.AsyncClient, url: str, requests: int) -> float:
    for _ in range(min(50, requests)):  # warm the connection and the statement cache
        (await client.get(url)).raise_for_status()
    started = time.perf_counter()
    for _ in range(requests):
        (await client.get(url)).raise_for_status()
    return (time.perf_counter() - started) * 1000 / requests


@asynccontextmanager
async def opened(backend: str, folder: Path, dsn: str) -> AsyncIterator[Backend]:
    if backend == "sqlite":
        async with await open_backend(f"sqlite:///{folder / 'wm.db'}") as ports:
            yield ports
        return
    schema = f"bench_{os.urandom(4).hex()}"
    async with await open_backend(dsn, schema=schema) as ports:
        try:
            yield ports
        finally:
            assert isinstance(ports.worldmodel, PostgresStore)
            await ports.worldmodel.drop_schema()


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})


async def measure(backend: str, base_url: str, requests: int, folder: Path, dsn: str) -> None:
    async with opened(backend, folder, dsn) as ports:
        budgets = BudgetRegistry(ports.runner, "bench")
        url = f"{base_url}/Patient"
        async with httpx.AsyncClient() as bare:
            baseline = await mean_ms(bare, url, requests)
        async with httpx.AsyncClient(transport=budgets.transport("ehr", UNBOUNDED)) as paced:
            value = await mean_ms(paced, url, requests)
        emit(_metric("budget_request_latency_loopback", value, baseline, backend))
        local = "http://ehr.test/fhir/Patient"
        async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as bare:
            baseline = await mean_ms(bare, local, requests)
        inner = httpx.MockTransport(ok)
        transport = budgets.transport("local", UNBOUNDED, inner)
        async with httpx.AsyncClient(transport=transport) as paced:
            value = await mean_ms(paced, local, requests)
        emit(_metric("budget_bookkeeping_in_process", value, baseline, backend))


def _metric(name: str, value: float, baseline: float, backend: str) -> Metric:
    return Metric(metric=name, value=value, unit="ms", baseline=baseline, backend=backend)


async def main(requests: int, dsn: str, backends: list[str]) -> None:
    emit(machine())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with sandbox_process(folder / "sandbox.db") as base_url:
            for backend in backends:
                progress(f"{backend}: {requests:,} requests with and without a budget")
                await measure(backend, base_url, requests, folder, dsn)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.budget_overhead", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    return parser


if __name__ == "__main__":
    args = _parser().parse_args()
    chosen = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    asyncio.run(main(args.requests, args.dsn, chosen))
    sys.exit(0)
