"""``python -m bench.runner_poll [--records N] [--changes N] [--cadence SECONDS]``.

The connector runner's FHIR poller against the sandbox EHR, served by ``ehrbridge sandbox`` in a
process of its own (as a real EHR would be), into a fresh SQLite world model:

- ``poll_initial_throughput``: the first poll of N Patients (default 100,000); for reference.
- ``repoll_unchanged_throughput``: a poll that reads all N again (its overlap covers them) and
  finds every version already stored: records per second, zero events written. The baseline,
  measured in the same run, is the raw hashing rate of the same records: canonical JSON and its
  digest, in memory, as the world model hashes a record to notice a change.
- ``repoll_unchanged_content_hash``: the same re-poll with the id + version dedup switched off,
  so every record is mapped and compared by content hash in the world model (what the version
  check saves), against the same baseline.
- ``change_to_projection_latency_p50`` / ``_p99``: the runner polls every ``--cadence`` seconds;
  a Patient's phone is changed at the sandbox (``PUT``), and the time until the world model
  identifies a caller by the new number is measured, ``--changes`` times. Baseline: the cadence
  (with polling, the expected wait is half a cadence plus one poll).

JSON lines on stdout (``bench/report.py``), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.report import Metric, emit, machine, percentile, progress
from ehrbridge.connectors.fhir.poller import FhirPoller
from ehrbridge.connectors.source import DataSourceConfig, PollOutcome, ResourceConfig
from ehrbridge.runner.config import RunnerConfig
from ehrbridge.runner.polling import poll_once
from ehrbridge.runner.service import Runner
from ehrbridge.runner.store import RunnerStore
from ehrbridge.sandbox.store import ResourceStore
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.canonical import canonical_json, digest
from ehrbridge.worldmodel.model import WorldModel

WORKSPACE = "bench"
PAGE_SIZE = 1000
#: family names are three of these, so 100,000 patients share names about as often as real ones
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "se",
    "ta",
    "ru",
    "ne",
    "bo",
    "vi",
    "da",
    "ho",
    "le",
    "pa",
    "zu",
    "ri",
    "fe",
    "go",
    "na",
    "te",
    "wu",
]
GIVEN = ["Maria", "James", "Aisha", "Chen", "Olga", "Ravi", "Lucia", "Tomas", "Noor", "Emeka"]


def family(n: int) -> str:
    """One of 8,000 made-up family names."""
    parts = (SYLLABLES[n % 20], SYLLABLES[(n // 20) % 20], SYLLABLES[(n // 400) % 20])
    return "".join(parts).capitalize()


def patient(n: int) -> dict[str, Any]:
    """A made-up Patient, different for every ``n``."""
    return {
        "resourceType": "Patient",
        "id": f"p{n:07d}",
        "identifier": [{"system": "https://sandbox-ehr.example.org/mrn", "value": f"MRN-{n}"}],
        "name": [{"family": family(n), "given": [GIVEN[n % 7], GIVEN[n % 10]]}],
        "gender": ("female", "male")[n % 2],
        "birthDate": f"{1940 + n % 70}-{1 + n // 70 % 12:02d}-{1 + n // 840 % 28:02d}",
        "telecom": [{"system": "phone", "value": phone(n), "use": "mobile"}],
        "address": [{"city": "Boston", "state": "MA", "postalCode": f"02{n % 1000:03d}"}],
    }


def phone(n: int, generation: int = 0) -> str:
    return f"+1617{(n + 7919 * generation) % 10_000_000:07d}"


def seed(db: Path, records: int) -> list[dict[str, Any]]:
    """Write ``records`` Patients into a sandbox database; returns them as stored."""
    store = ResourceStore(db)
    stored = []
    try:
        with store.atomic():
            for n in range(records):
                version = store.put("Patient", f"p{n:07d}", patient(n))
                assert version.resource is not None
                stored.append(version.resource)
    finally:
        store.close()
    return stored


@contextmanager
def sandbox_process(db: Path) -> Iterator[str]:
    """``ehrbridge sandbox`` on a free port over ``db``; yields its FHIR base URL."""
    command = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "sandbox"]
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*command, "--port", "0", "--db", str(db), "--no-seed"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening "):
            raise SystemExit(f"the sandbox did not start: {line!r}")
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=30)


def hashing_rate(records: list[dict[str, Any]]) -> float:
    """Records per second of canonical JSON plus digest, in memory."""
    started = time.perf_counter()
    for record in records:
        digest(canonical_json(record))
    return len(records) / (time.perf_counter() - started)


class _Forgetful:
    """Poll state that remembers no versions: every record goes to the world model's hash."""

    def __init__(self, inner: RunnerStore) -> None:
        self.inner = inner

    async def get_cursor(self, workspace: str, source: str, resource_type: str) -> str | None:
        return await self.inner.get_cursor(workspace, source, resource_type)

    async def set_cursor(
        self, workspace: str, source: str, resource_type: str, cursor: str
    ) -> None:
        await self.inner.set_cursor(workspace, source, resource_type, cursor)

    async def known_versions(
        self, workspace: str, source: str, resource_type: str, record_ids: Collection[str]
    ) -> dict[str, str]:
        return {}

    async def remember_versions(
        self, workspace: str, source: str, resource_type: str, tokens: Mapping[str, str]
    ) -> None:
        return None


async def timed_poll(
    poller: FhirPoller, source: DataSourceConfig, resource: ResourceConfig
) -> tuple[PollOutcome, float]:
    started = time.perf_counter()
    outcome = await poll_once(
        poller, source, resource, workspace=poller.model.workspace, clock=poller.clock
    )
    if not outcome.ok:
        raise SystemExit(f"the poll failed: {outcome.error}")
    return outcome, time.perf_counter() - started


async def repoll(records: int, folder: Path) -> None:
    progress(f"seeding the sandbox with {records:,} Patients")
    stored = seed(folder / "sandbox.db", records)
    baseline = hashing_rate(stored)
    progress(f"raw hashing: {baseline:,.0f} records/s")
    # Every poll reads everything again: the overlap reaches back past the first record.
    resource = ResourceConfig(type="Patient", every=timedelta(minutes=1), page_size=PAGE_SIZE)
    with sandbox_process(folder / "sandbox.db") as base_url:
        source = DataSourceConfig(
            id="ehr",
            kind="fhir",
            base_url=base_url,
            overlap=timedelta(days=3650),
            resources=(resource,),
        )
        backend = await open_backend(f"sqlite:///{folder / 'wm.db'}")
        store = backend.worldmodel
        try:
            model = WorldModel(store, WORKSPACE)
            state = backend.runner
            poller = FhirPoller(model, state)
            first, seconds = await timed_poll(poller, source, resource)
            progress(f"first poll: {first.fetched:,} in {seconds:.1f} s, {first.events:,} events")
            emit(Metric(metric="poll_initial_throughput", value=first.fetched / seconds,
                        unit="records/s", baseline=None, backend="sqlite"))  # fmt: skip
            again, seconds = await timed_poll(poller, source, resource)
            progress(
                f"re-poll: {again.fetched:,} in {seconds:.1f} s, {again.unchanged:,} unchanged, "
                f"{again.events} events"
            )
            assert again.events == 0 and again.unchanged == records
            emit(Metric(metric="repoll_unchanged_throughput", value=again.fetched / seconds,
                        unit="records/s", baseline=baseline, backend="sqlite"))  # fmt: skip
            await poller.aclose()
            hashed = FhirPoller(model, _Forgetful(state))
            by_hash, seconds = await timed_poll(hashed, source, resource)
            await hashed.aclose()
            progress(f"re-poll by content hash: {seconds:.1f} s, {by_hash.events} events")
            assert by_hash.events == 0
            emit(Metric(metric="repoll_unchanged_content_hash", value=by_hash.fetched / seconds,
                        unit="records/s", baseline=baseline, backend="sqlite"))  # fmt: skip
        finally:
            await store.close()


async def latency(changes: int, cadence: float, folder: Path) -> None:
    records = 1000
    seed(folder / "latency-sandbox.db", records)
    every = timedelta(seconds=cadence)
    resource = ResourceConfig(type="Patient", every=every, page_size=PAGE_SIZE)
    with sandbox_process(folder / "latency-sandbox.db") as base_url:
        source = DataSourceConfig(id="ehr", kind="fhir", base_url=base_url, resources=(resource,))
        backend = await open_backend(f"sqlite:///{folder / 'latency-wm.db'}")
        store = backend.worldmodel
        model = WorldModel(store, WORKSPACE)
        state = backend.runner
        config = RunnerConfig(workspace=WORKSPACE, database="sqlite:///", data_sources=(source,))
        poller = FhirPoller(model, state)
        runner = Runner(config, pollers={"fhir": poller}, outcomes=state, leases=state)
        task = asyncio.create_task(runner.run())
        samples = []
        try:
            while True:  # until the first sync is done
                if (await store.counts(WORKSPACE)).entities.get("Patient", 0) == records:
                    break
                await asyncio.sleep(0.05)
            progress(f"runner in sync; changing {changes} Patients, polling every {cadence} s")
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                for i in range(changes):
                    n = random.randrange(records)
                    new = phone(n, generation=i + 1)
                    telecom = [{"system": "phone", "value": new, "use": "mobile"}]
                    body = {**patient(n), "telecom": telecom}
                    response = await http.put(
                        f"/Patient/{body['id']}",
                        content=orjson.dumps(body),
                        headers={"content-type": "application/fhir+json"},
                    )
                    response.raise_for_status()
                    changed = time.perf_counter()
                    while True:  # until an agent would find the caller by the new number
                        if await model.identify_caller(new):
                            break
                        await asyncio.sleep(0.002)
                    samples.append((time.perf_counter() - changed) * 1000)
                    await asyncio.sleep(random.uniform(0, cadence))
        finally:
            runner.stop()
            await task
            await poller.aclose()
            await store.close()
    for pct in (50, 99):
        emit(Metric(metric=f"change_to_projection_latency_p{pct}", value=percentile(samples, pct),
                    unit="ms", baseline=cadence * 1000, backend="sqlite"))  # fmt: skip


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runner_poll", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--cadence", type=float, default=1.0, help="seconds between polls")
    args = parser.parse_args(argv)
    emit(machine())
    with tempfile.TemporaryDirectory(prefix="ehrbridge-bench-") as tmp:
        await repoll(args.records, Path(tmp))
        await latency(args.changes, args.cadence, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
