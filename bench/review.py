"""``python -m bench.review [--rounds N] [--facts N] [--samples S] [--backend sqlite|all]``.

Every review metric of issue 12: the judge's (below) and the review loop's,
``review_throughput`` and ``review_event_to_verdict_p99`` (:mod:`bench.review_loop`, with the
grounding judge, on the backends asked for).

The transcript-grounding judge on the call-facts development set
(``$EHRBRIDGE_CALL_FACTS``, else ``../shared/data/call-facts/dev.jsonl`` beside the repository):

- ``review_eval_unsafe_passes`` (cases): contradicted or unsupported facts routed to verified
  (the target is 0). No baseline.
- ``review_eval_supported_verified`` (fraction): supported facts verified without a human
  (the goal is at least 0.9). No baseline.
- ``judge_grounding_latency_p99`` (ms): one fact judged, the 99th percentile over every case,
  ``--rounds`` times, the number and drug-name caches cleared before each round so every
  transcript reads as new (the drug dictionary, loaded once, stays loaded). Baseline: the same
  transcripts only cut into tokens and read for spoken digits and letters
  (``spoken.runs`` over every turn), the least any reading of the transcript costs, so the ratio
  is what the rules add.

JSON lines on stdout (``bench/report.py``), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench import review_loop
from bench.backends import DEFAULT_DSN
from bench.report import Metric, emit, machine, percentile, progress
from ehrbridge.review.evaluation import LabelledCase, evaluate, load_cases, summarise
from ehrbridge.review.grounding import dialogue
from ehrbridge.review.grounding.clinical import drug_name, drug_names
from ehrbridge.review.grounding.judge import GroundingJudge
from ehrbridge.review.grounding.spoken import clear_cache, runs

REPO = Path(__file__).resolve().parent.parent
#: the judge reads no database
BACKEND = "none"


def dev_set() -> Path:
    """Where the development cases are."""
    env = os.environ.get("EHRBRIDGE_CALL_FACTS")
    return Path(env) if env else REPO.parent / "shared" / "data" / "call-facts" / "dev.jsonl"


def _latencies(judge: GroundingJudge, cases: list[LabelledCase], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        # as if every transcript were new: only the drug dictionary stays loaded
        clear_cache()
        dialogue.clear_cache()
        drug_name.cache_clear()
        drug_names.cache_clear()
        for labelled in cases:
            started = time.perf_counter()
            judge.judge_now(labelled.case)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def _baseline(cases: list[LabelledCase], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        clear_cache()
        for labelled in cases:
            started = time.perf_counter()
            for turn in labelled.case.transcript:
                runs(turn.text)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.review", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="timed passes over the cases")
    parser.add_argument("--facts", type=int, default=2000, help="facts the loop judges")
    parser.add_argument("--samples", type=int, default=50, help="facts timed to a verdict")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="sqlite")
    args = parser.parse_args()
    path = dev_set()
    cases = load_cases(path)
    progress(f"{len(cases)} cases from {path}")
    emit(machine())
    judge = GroundingJudge()
    summary = summarise(asyncio.run(evaluate(judge, cases)))
    emit(Metric(metric="review_eval_unsafe_passes", value=len(summary.unsafe_passes),
                unit="cases", baseline=None, backend=BACKEND))  # fmt: skip
    emit(Metric(metric="review_eval_supported_verified", value=summary.supported_verified or 0.0,
                unit="fraction", baseline=None, backend=BACKEND))  # fmt: skip
    samples = _latencies(judge, cases, args.rounds)
    base = _baseline(cases, args.rounds)
    emit(Metric(metric="judge_grounding_latency_p99", value=percentile(samples, 99), unit="ms",
                baseline=percentile(base, 99), backend=BACKEND))  # fmt: skip
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    asyncio.run(_loop_metrics(args.facts, args.samples, args.dsn, backends))


async def _loop_metrics(facts: int, samples: int, dsn: str, backends: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            await review_loop.measure(backend, facts, samples, Path(tmp), dsn)


if __name__ == "__main__":
    main()
