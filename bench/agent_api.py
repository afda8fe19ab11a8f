"""``python -m bench.agent_api [--patients N] [--clients C] [--requests R] [--workers W]``.

The agent API at N patients (default 100,000) on SQLite. Each patient has an EHR record, a pending
voice fact, an upcoming appointment, two past encounters, an active medication and a coverage, so
an ambient context reads what it would in a clinic (and looks up the voice fact's sync status in
the outbox, which is empty). Loaded through ``store.append`` (untimed).

- ``api_identify_caller_p50`` / ``_p99`` (ms): ``WorldModel.identify_caller`` in process, for
  random patients' mobile numbers; the target is p99 <= 2 ms.
- ``api_ambient_context_p50`` / ``_p99`` (ms): ``POST /v1/ambient/context`` over loopback HTTP to
  ``ehrbridge serve`` (its own processes: ``--workers W``, by default what ``ehrbridge serve``
  starts by default, one per CPU) from C concurrent clients, as C calls in progress would
  send them: each client waits a think time (``--think``, jittered ±50%) between its requests; R
  requests in all. Baseline: the same call in process (``AgentService.ambient_context``, one at a
  time, in this process). Target p99 <= 20 ms.
- ``api_observation_write_p50`` / ``_p99`` (ms): ``POST /v1/observations`` (a voice fact on a
  random patient) the same way; target p99 <= 25 ms.
- ``api_ambient_context_saturated`` (requests/s): the C clients without think time, so the
  server is never idle: its capacity. Baseline: the in-process rate (1 / mean in-process time).

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
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.patients import DATA_SOURCE, WORKSPACE, batches, make_patient, submission
from bench.report import Metric, emit, machine, percentile, progress
from ehrbridge.api.models import AmbientRequest, ObservationWrite
from ehrbridge.api.serve import default_workers
from ehrbridge.api.service import AgentService
from ehrbridge.api.store import Principal
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.events import Observation, RecordKey
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store

BATCH = 500
NOW = datetime.now(UTC).replace(microsecond=0)


def related(index: int, patient_id: str) -> list[Observation]:
    """The patient's appointment, encounters, medication and coverage, as the EHR sends them."""
    ref = f"Patient/{patient_id}"
    soon = NOW + timedelta(days=1 + index % 60, hours=index % 8)

    def obs(resource_type: str, suffix: str, entity_type: str, data: dict[str, Any]) -> Observation:
        return Observation(
            workspace=WORKSPACE,
            record=RecordKey(
                data_source=DATA_SOURCE,
                resource_type=resource_type,
                external_id=f"{resource_type.lower()}-{index}-{suffix}",
            ),
            entity_type=entity_type,
            data=data,
            effective_at=NOW - timedelta(days=1),
        )

    return [
        obs("Appointment", "1", "Appointment", {
            "status": "booked", "start": soon.isoformat(),
            "end": (soon + timedelta(minutes=30)).isoformat(), "appointment_type": "checkup",
            "service_type": "General practice", "patient": ref,
        }),
        *(
            obs("Encounter", str(n), "Encounter", {
                "status": "finished", "class": "AMB", "type": "Office visit",
                "period.start": (NOW - timedelta(days=40 * n + index % 30)).isoformat(),
                "patient": ref,
            })
            for n in (1, 2)
        ),
        obs("MedicationRequest", "1", "MedicationOrder", {
            "status": "active", "intent": "order",
            "medication.display": "metformin hydrochloride 500 MG Oral Tablet",
            "dosage.text": "Take 1 tablet by mouth twice daily", "patient": ref,
        }),
        obs("Coverage", "1", "InsurancePlan", {
            "status": "active", "payer": "Bayfield Health Plan", "plan_name": "Choice PPO",
            "member_id": f"BFH{index:09d}", "beneficiary": ref,
        }),
    ]  # fmt: skip


async def load(store: Store, patients: int) -> list[tuple[str, str]]:
    """Write every patient and what relates to them; returns (entity id, mobile) per patient."""
    people = [make_patient(i, seed=42) for i in range(patients)]
    ids: list[str] = [""] * patients
    started = time.perf_counter()
    for batch in batches(range(patients), BATCH):
        results = await store.append(WORKSPACE, [submission(people[i], 0, None) for i in batch])
        for i, result in zip(batch, results, strict=True):
            ids[i] = result.entity_id
        voice = [submission(people[i], 6, ids[i]) for i in batch]  # a pending voice fact
        await store.append(WORKSPACE, voice)
        await store.append(WORKSPACE, [item for i in batch for item in related(i, ids[i])])
        if batch[0] % 10_000 == 0:
            progress(f"loaded {batch[-1] + 1:,} patients ({time.perf_counter() - started:.0f} s)")
    return [(ids[i], people[i].mobile) for i in range(patients)]


async def timed(calls: Sequence[Callable[[], Awaitable[object]]]) -> list[float]:
    """Each call's milliseconds, one at a time."""
    samples = []
    for call in calls:
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def emit_latency(name: str, samples: list[float], baseline: list[float] | None) -> None:
    for pct in (50, 99):
        emit(Metric(metric=f"{name}_p{pct}", value=percentile(samples, pct), unit="ms",
                    baseline=percentile(baseline, pct) if baseline else None,
                    backend="sqlite"))  # fmt: skip


@contextmanager
def api_process(db: Path, workers: int | None = None) -> Iterator[str]:
    """``ehrbridge serve`` on a free loopback port over ``db`` (with ``--workers`` when given);
    yields its base URL."""
    command = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "serve"]
    options = [] if workers is None else ["--workers", str(workers)]
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*command, "--db", f"sqlite:///{db}", "--port", "0", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "http://" in line:
                url = line[line.index("http://") :].split()[0].rstrip("/")
                break
        else:
            raise SystemExit("ehrbridge serve did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON: the load generator's client.

    httpx spends about 3 ms of CPU per request here, more than the server does, so with both on
    two cores it measured itself; this sends prebuilt bytes and reads ``Content-Length`` bodies.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length")
        )
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def post_bytes(url: str, secret: str, path: str, body: dict[str, Any]) -> bytes:
    payload = orjson.dumps(body)
    host = urlsplit(url).netloc
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def over_http(
    url: str,
    secret: str,
    path: str,
    bodies: Sequence[dict[str, Any]],
    clients: int,
    think: float,
) -> list[float]:
    """Each request's milliseconds, ``clients`` at once, each waiting about ``think`` seconds
    between its requests (0: one right after another)."""
    samples: list[float] = []
    rng = random.Random(11)
    queue = [post_bytes(url, secret, path, body) for body in reversed(bodies)]

    async def client() -> None:
        connection = await Connection.open(url)
        # Calls do not all start at one instant: neither do the clients.
        await asyncio.sleep(think * rng.random())
        try:
            while queue:
                request = queue.pop()
                started = time.perf_counter()
                status, body = await connection.post(request)
                samples.append((time.perf_counter() - started) * 1000)
                if status >= 400:
                    raise SystemExit(f"{path}: HTTP {status}: {body[:300]!r}")
                if think:
                    await asyncio.sleep(think * rng.uniform(0.5, 1.5))
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return samples


def observation(patient_id: str, n: int) -> dict[str, Any]:
    return {
        "entity_type": "Patient",
        "entity_id": patient_id,
        "fields": {"phone.work": f"+1781555{n % 10_000:04d}"},
        "level": "confirmed",
        "call_id": f"bench-call-{n}",
        "evidence": {"transcript_span": "you can reach me at work on that number"},
    }


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_api", description=__doc__)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--lookups", type=int, default=2_000, help="in-process calls per metric")
    parser.add_argument(
        "--think", type=float, default=0.25, help="seconds each client waits between requests"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="ehrbridge serve --workers (default: its default, one process per CPU)",
    )
    args = parser.parse_args(argv)
    emit(machine())
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="ehrbridge-bench-") as tmp:
        db = Path(tmp) / "api.db"
        backend = await open_backend(f"sqlite:///{db}")
        store = backend.worldmodel
        try:
            progress(f"loading {args.patients:,} patients with their related records")
            people = await load(store, args.patients)
            security = backend.security
            secret, key = await security.create_key(WORKSPACE, "agent", name="bench")
            principal = Principal(workspace=WORKSPACE, key_id=key.key_id, role="agent")
            model = WorldModel(store, WORKSPACE)
            # with the outbox, as ``ehrbridge serve`` builds it: each context holds a voice fact,
            # so each looks up its sync status (one more query)
            service = AgentService(
                lambda ws: WorldModel(store, ws), security, outbox=backend.outbox
            )
            picks = [rng.choice(people) for _ in range(args.lookups)]
            for _, phone in picks[:200]:  # warm-up
                await model.identify_caller(phone)

            async def identify(phone: str) -> object:
                return await model.identify_caller(phone)

            async def ambient(phone: str) -> object:
                return await service.ambient_context(principal, AmbientRequest(phone=phone))

            async def write(patient_id: str, n: int) -> object:
                body = ObservationWrite.model_validate(observation(patient_id, n))
                return await service.write_observation(principal, body)

            identified = await timed([partial(identify, p) for _, p in picks])
            emit_latency("api_identify_caller", identified, None)
            ambient_local = await timed([partial(ambient, p) for _, p in picks])
            writes_local = await timed([partial(write, i, n) for n, (i, _) in enumerate(picks)])
            progress(
                f"in process: ambient p50 {percentile(ambient_local, 50):.2f} ms, "
                f"write p50 {percentile(writes_local, 50):.2f} ms"
            )
        finally:
            await store.close()
        workers = default_workers() if args.workers is None else args.workers
        progress(f"ehrbridge serve with {workers} worker process(es)")
        with api_process(db, args.workers) as url:
            bodies = [{"phone": rng.choice(people)[1]} for _ in range(args.requests)]
            path = "/v1/ambient/context"
            ambient_http = await over_http(url, secret, path, bodies, args.clients, args.think)
            emit_latency("api_ambient_context", ambient_http, ambient_local)
            writes = [
                observation(rng.choice(people)[0], args.lookups + n) for n in range(args.requests)
            ]
            written = await over_http(
                url, secret, "/v1/observations", writes, args.clients, args.think
            )
            emit_latency("api_observation_write", written, writes_local)
            started = time.perf_counter()
            await over_http(url, secret, path, bodies, args.clients, 0)
            rate = len(bodies) / (time.perf_counter() - started)
            local_rate = 1000 / (sum(ambient_local) / len(ambient_local))
            emit(Metric(metric="api_ambient_context_saturated", value=rate, unit="requests/s",
                        baseline=local_rate, backend="sqlite"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
