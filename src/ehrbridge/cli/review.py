"""``ehrbridge review …``: the review loop's judges from the command line.

``ehrbridge review eval FILE.jsonl [--judge grounding]`` runs a judge over labelled cases (the
call-facts format) and prints one JSON line per case, ``{"id", "verdict", "route"}``, then one
summary line: the confusion matrix (label by route), the share of supported facts verified without
a human, and the unsafe passes (contradicted or unsupported facts routed to ``verified``).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from ehrbridge.cli.errors import cli_errors
from ehrbridge.review.evaluation import evaluate, load_cases, summarise
from ehrbridge.review.grounding.judge import GroundingJudge

review_app = typer.Typer(help="Judge voice facts against their call transcripts.")
console = Console(stderr=True, soft_wrap=True)


class JudgeChoice(StrEnum):
    GROUNDING = "grounding"
    LLM = "llm"
    POLICY = "policy"


@review_app.command("eval")
def eval_command(
    file: Annotated[Path, typer.Argument(help="labelled cases, JSON Lines (call-facts format)")],
    judge: Annotated[
        JudgeChoice, typer.Option("--judge", help="which judge to run")
    ] = JudgeChoice.GROUNDING,
) -> None:
    """Run a judge over labelled cases: one JSON line per case, then the summary."""
    if judge is not JudgeChoice.GROUNDING:
        console.print(f"[red]error:[/red] the {judge.value} judge is not available yet")
        raise typer.Exit(2)
    with cli_errors(console, escaped=True):
        cases = load_cases(file)
        results = asyncio.run(evaluate(GroundingJudge(), cases))
    for result in results:
        typer.echo(orjson.dumps(result.as_json()).decode())
    typer.echo(orjson.dumps(summarise(results).as_json()).decode())
