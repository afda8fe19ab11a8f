"""``python -m bench.review_loop [--facts N] [--samples S] [--backend sqlite|postgres|all]``.

The review loop's two numbers (docs/benchmarks.md), JSON lines like the other benchmarks:

- ``review_throughput`` (facts/s): the loop judging ``N`` voice facts of one call already in
  the log, step after step, verdict events and queue flags written. Baseline: reading the same
  events from the log alone, page by page (what no review can be faster than).
- ``review_event_to_verdict_p99`` (ms): from an append of a voice fact returning to its verdict
  being stored, with the loop woken by the append (``Store.watch``). Baseline: the same with the
  loop reading on its catch-up alone (the polling fallback, 500 ms), measured in the same run.

The judge is the grounding judge when it is installed, else a judge that answers at once (so
the numbers are the loop's and the storage's, the judge's own cost aside).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.backends import DEFAULT_DSN
from bench.report import Metric, emit, machine, percentile, progress
from ehrbridge.confidence import Level
from ehrbridge.review.loop import ReviewLoop, ReviewPolicy
from ehrbridge.review.verdicts import Case, Judge, Outcome, Verdict
from ehrbridge.storage import Backend, open_backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.worldmodel.events import EventType
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import START

WS = "bench"
TRANSCRIPT = (
    "Agent: What's the best number to reach you?\n"
    "Caller: It's six one seven, five five five, oh one two seven.\n"
    "Agent: Six one seven, five five five, zero one two seven. Is that right?\n"
    "Caller: Yes, that's right.\n"
)


class Instant:
    """A judge that answers supported at once."""

    name, version = "instant", "1"

    async def judge(self, case: Case) -> Verdict:
        return Verdict(outcome=Outcome.SUPPORTED, judge=self.name, version=self.version, reason="")


def judge() -> Judge:
    try:
        from ehrbridge.review.grounding.judge import GroundingJudge
    except ImportError:
        return Instant()
    found: Judge = GroundingJudge()
    return found


async def opened(backend: str, folder: Path, dsn: str, name: str) -> Backend:
    if backend == "sqlite":
        return await open_backend(f"sqlite:///{folder / name}.db")
    return await open_backend(dsn, schema=f"bench_{os.urandom(4).hex()}")


async def closed(ports: Backend) -> None:
    if isinstance(ports.worldmodel, PostgresStore):
        await ports.worldmodel.drop_schema()
    await ports.close()


async def voice(model: WorldModel, n: int) -> None:
    await model.write_voice(
        "Patient",
        f"p{n}",
        {"phone.mobile": "+16175550127"},
        level=Level.VOICE_CONFIRMED,
        agent="agent-1",
        call_id="call-1",
    )


async def throughput(ports: Backend, facts: int) -> tuple[float, float]:
    """(facts judged per second, log events read per second alone)."""
    model = WorldModel(ports.worldmodel, WS)
    await model.write_voice(
        "Call", "call-1", {"transcript": TRANSCRIPT}, level=Level.VOICE_CONFIRMED, agent="a"
    )
    for n in range(facts):
        await voice(model, n)
    started = time.perf_counter()
    position, read = START, 0
    while True:
        page = await ports.worldmodel.read_log(WS, position, 200)
        read += len(page.events)
        if not page.events:
            break
        position = page.position
    raw = read / (time.perf_counter() - started)
    loop = ReviewLoop(ports.worldmodel, ports.review, ports.runner, judge(), workspace=WS)
    started, judged = time.perf_counter(), 0
    while (result := await loop.step()).read:
        judged += result.judged
    return judged / (time.perf_counter() - started), raw


async def latency(ports: Backend, samples: int, *, woken: bool) -> list[float]:
    """Milliseconds from an append returning to its verdict stored, ``samples`` times."""
    model = WorldModel(ports.worldmodel, WS)
    policy = ReviewPolicy(catch_up=timedelta(milliseconds=500))
    loop = ReviewLoop(
        ports.worldmodel, ports.review, ports.runner, judge(), workspace=WS, policy=policy
    )
    if not woken:
        loop.store = _Unwatched(ports.worldmodel)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.1)
    found: list[float] = []
    try:
        for n in range(samples):
            entity = f"l{'w' if woken else 'p'}{n}"
            started = time.perf_counter()
            result = await model.write_voice(
                "Patient", entity, {"language": "es"}, level=Level.VOICE_CONFIRMED,
                agent="agent-1", call_id="call-1",
            )  # fmt: skip
            target = result.events[0].id
            while True:
                events = await ports.worldmodel.read_entity(WS, "Patient", entity)
                if any(e.event_type is EventType.REGRADED and e.data.get("target") == target
                       for e in events):  # fmt: skip
                    break
                await asyncio.sleep(0.002)
            found.append((time.perf_counter() - started) * 1000)
    finally:
        stop.set()
        await task
    return found


class _Unwatched:
    """A world-model store whose appends wake no one: the polling fallback."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def watch(self, workspace: str, wake: Any) -> Any:
        async def stop() -> None:
            return None

        return stop


async def measure(backend: str, facts: int, samples: int, folder: Path, dsn: str) -> None:
    ports = await opened(backend, folder, dsn, "throughput")
    try:
        progress(f"{backend}: the loop over {facts:,} voice facts")
        rate, raw = await throughput(ports, facts)
        emit(Metric(metric="review_throughput", value=rate, unit="facts/s", baseline=raw,
                    backend=backend))  # fmt: skip
    finally:
        await closed(ports)
    ports = await opened(backend, folder, dsn, "latency")
    try:
        model = WorldModel(ports.worldmodel, WS)
        await model.write_voice(
            "Call", "call-1", {"transcript": TRANSCRIPT}, level=Level.VOICE_CONFIRMED, agent="a"
        )
        progress(f"{backend}: {samples} facts to a verdict, woken and polled")
        woken = await latency(ports, samples, woken=True)
        polled = await latency(ports, samples, woken=False)
        emit(Metric(metric="review_event_to_verdict_p99", value=percentile(woken, 99), unit="ms",
                    baseline=percentile(polled, 99), backend=backend))  # fmt: skip
        progress(
            f"{backend}: p50 woken {statistics.median(woken):.1f} ms, "
            f"polled {statistics.median(polled):.1f} ms"
        )
    finally:
        await closed(ports)


async def main(facts: int, samples: int, dsn: str, backends: list[str]) -> None:
    emit(machine())
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            await measure(backend, facts, samples, Path(tmp), dsn)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.review_loop", description=__doc__)
    parser.add_argument("--facts", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="sqlite")
    return parser


if __name__ == "__main__":
    args = _parser().parse_args()
    chosen = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    asyncio.run(main(args.facts, args.samples, args.dsn, chosen))
    sys.exit(0)
