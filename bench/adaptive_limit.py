"""``python -m bench.adaptive_limit [--capacities 8,3,12] [--seconds 5] [--latency 0.05]``.

The adaptive concurrency limit (``ehrbridge.outbound.limits``) against a real server: the sandbox
EHR, served by ``ehrbridge sandbox`` in a process of its own on loopback, with its ``capacity``
fault (a FHIR request beyond N in flight gets 503 at once) and ``latency`` (each request it
serves takes that long). ``--workers`` clients (more than the configured concurrency, ``--max``)
send ``GET [base]/Patient`` through one :class:`~ehrbridge.outbound.limits.AdaptiveLimiter`;
the capacity changes every ``--seconds``. Per capacity C:

- ``adaptive_limit_mean_c<C>`` (requests): the mean limit over the phase's second half.
  Baseline: C.
- ``adaptive_limit_rejected_c<C>`` (%): the share of the phase's requests answered 503.

JSON lines on stdout (``bench/report.py``), progress on stderr. Times are the machine's: this is a
demonstration, not a test (``tests/unit/outbound/limits/test_simulation.py`` is the test).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.report import Metric, emit, machine, progress
from bench.runner_poll import sandbox_process
from ehrbridge.outbound.limits import AdaptiveLimiter, ConcurrencyLimits, Outcome


@dataclass
class Phase:
    capacity: int
    started: float
    #: (seconds into the phase, the limit then) after each answer
    limits: list[tuple[float, int]] = field(default_factory=list)
    answered: int = 0
    rejected: int = 0


async def run(base_url: str, args: argparse.Namespace) -> list[Phase]:
    origin = base_url.removesuffix("/fhir/R4")
    limiter = AdaptiveLimiter(ConcurrencyLimits(max=args.max))
    phases: list[Phase] = []
    stop = asyncio.Event()

    async def worker(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            async with limiter.slot() as slot:
                response = await http.get(f"{base_url}/Patient", params={"_count": 1})
                overloaded = response.status_code == 503
                slot.done(Outcome.OVERLOADED if overloaded else Outcome.OK)
            phase = phases[-1]
            phase.answered += 1
            phase.rejected += overloaded
            phase.limits.append((time.monotonic() - phase.started, limiter.state().limit))

    limits = httpx.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        for capacity in args.capacities:
            plan = {"capacity": capacity, "latency": args.latency}
            (await http.post(f"{origin}/$faults", json=plan)).raise_for_status()
            phases.append(Phase(capacity=capacity, started=time.monotonic()))
            if len(phases) == 1:
                workers = [asyncio.create_task(worker(http)) for _ in range(args.workers)]
            progress(f"capacity {capacity} for {args.seconds:g} s")
            await asyncio.sleep(args.seconds)
        stop.set()
        await asyncio.gather(*workers)
    return phases


def report(phases: list[Phase], seconds: float) -> None:
    for phase in phases:
        late = [limit for at, limit in phase.limits if at >= seconds / 2]
        mean = sum(late) / len(late) if late else float("nan")
        emit(
            Metric(
                metric=f"adaptive_limit_mean_c{phase.capacity}",
                value=mean,
                unit="requests",
                baseline=float(phase.capacity),
                backend="sandbox",
            )
        )
        emit(
            Metric(
                metric=f"adaptive_limit_rejected_c{phase.capacity}",
                value=100 * phase.rejected / max(phase.answered, 1),
                unit="%",
                baseline=None,
                backend="sandbox",
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.adaptive_limit", description=__doc__)
    parser.add_argument(
        "--capacities",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[8, 3, 12],
        help="the sandbox's capacity, phase by phase (default: 8,3,12)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="each phase (default: 5)")
    parser.add_argument(
        "--latency", type=float, default=0.05, help="seconds each served request takes"
    )
    parser.add_argument("--max", type=int, default=16, help="the configured concurrency")
    parser.add_argument("--workers", type=int, default=24, help="clients sending at once")
    args = parser.parse_args()
    emit(machine())
    with (
        tempfile.TemporaryDirectory() as folder,
        sandbox_process(Path(folder) / "sandbox.db") as base_url,
    ):
        phases = asyncio.run(run(base_url, args))
    report(phases, args.seconds)


if __name__ == "__main__":
    main()
