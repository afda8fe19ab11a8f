"""The LLM judge over a labelled call-facts file on any OpenAI-compatible endpoint
(docs/llm-judge.md): outcome against label, why answers were unsure, and time per case.

    .venv/bin/python -m bench.llm_dev --base-url http://127.0.0.1:8000/v1 --model smollm2 \\
        --response-format json_object /work/shared/data/call-facts/dev.jsonl

Prints one JSON object per line: ``case`` lines (id, label, outcome, seconds, reason for an
unsure), then a ``summary`` (the label-to-outcome counts, the README's critical count: contradicted
cases verified, wrong writes: unsupported cases verified, coverage of supported cases, the unsure
reasons by kind, and the median and worst seconds). A measurement, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from ehrbridge.review.llm import LlmJudge, LlmSettings
from ehrbridge.review.verdicts import Case, Fact, Outcome, Turn


def case_from_json(row: dict[str, Any]) -> Case:
    """One line of the call-facts format (``shared/data/call-facts/README.md``)."""
    fact = row["fact"]
    return Case(
        fact=Fact(
            entity_type=fact["entity_type"],
            field=fact["field"],
            value=fact["value"],
            level=fact.get("level", "mentioned"),
            evidence_turns=tuple(fact.get("evidence_turns", ())),
        ),
        transcript=tuple(
            Turn(turn=t["turn"], speaker=t["speaker"], text=t["text"]) for t in row["transcript"]
        ),
        call_started_at=datetime.fromisoformat(row["call"]["started_at"]),
        clinic_timezone=row["call"]["clinic_timezone"],
        known=row.get("known", {}),
    )


def _kind(reason: str) -> str:
    """A reason without its numbers and field names, for counting."""
    return re.sub(r"\d+(\.\d+)?", "N", reason.split(":")[0].split(" (")[0])


async def run(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    settings = LlmSettings(
        base_url=args.base_url,
        model=args.model,
        api_key=os.environ.get(args.api_key_env) if args.api_key_env else None,
        timeout=args.timeout,
        max_transcript_chars=args.max_transcript_chars,
        response_format=args.response_format,
    )
    judge = LlmJudge(settings)
    matrix: Counter[tuple[str, str]] = Counter()
    unsure: Counter[str] = Counter()
    seconds: list[float] = []
    for row in rows:
        started = time.perf_counter()
        verdict = await judge.judge(case_from_json(row))
        seconds.append(time.perf_counter() - started)
        matrix[(row["label"], verdict.outcome.value)] += 1
        if verdict.outcome is Outcome.UNSURE:
            unsure[_kind(verdict.reason)] += 1
        reason = verdict.reason if verdict.outcome is Outcome.UNSURE else None
        line_out = {"metric": "case", "id": row["id"], "label": row["label"]}
        line_out |= {"outcome": verdict.outcome.value, "seconds": round(seconds[-1], 2)}
        print(json.dumps(line_out | {"reason": reason}))
    supported = sum(n for (label, _), n in matrix.items() if label == "supported")
    summary = {
        "metric": "summary",
        "judge": judge.version,
        "cases": len(seconds),
        "matrix": {f"{label}->{outcome}": n for (label, outcome), n in sorted(matrix.items())},
        "critical": matrix[("contradicted", "supported")],
        "wrong_writes": matrix[("unsupported", "supported")],
        "coverage": round(matrix[("supported", "supported")] / supported, 3) if supported else None,
        "unsure_reasons": dict(unsure.most_common()),
        "median_seconds": round(statistics.median(seconds), 2) if seconds else None,
        "max_seconds": round(max(seconds), 2) if seconds else None,
    }
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="a call-facts JSON Lines file")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key-env", help="the environment variable holding the API key")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--max-transcript-chars", type=int, default=12_000)
    parser.add_argument(
        "--response-format", choices=["json_schema", "json_object"], default="json_schema"
    )
    args = parser.parse_args()
    lines = Path(args.data).read_text(encoding="utf-8").splitlines()
    asyncio.run(run(args, [json.loads(line) for line in lines if line.strip()]))


if __name__ == "__main__":
    main()
