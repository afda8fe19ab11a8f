"""``ehrbridge review ...``: the human review queue and the judges from the command line
(docs/review-queue.md, docs/review.md).

``ehrbridge review eval FILE.jsonl [--judge grounding]`` runs a judge over labelled cases (the
call-facts format) and prints one JSON line per case, ``{"id", "verdict", "route"}``, then one
summary line: the confusion matrix (label by route), the share of supported facts verified
without a human, and the unsafe passes (contradicted or unsupported facts routed to
``verified``).

``list``, ``show``, ``claim``, ``unclaim``, ``approve``, ``reject``, ``correct`` and ``stats``
act on the database directly, as the ``keys`` commands do, with the operator named by
``--operator`` (or ``$EHRBRIDGE_OPERATOR``); every action and every read of an item is recorded
in the audit trail (key ``cli``, the operator in its details). An item that could not be
decided (claimed by another operator, already decided, not found) exits 3 with the reason;
``approve`` and ``reject`` take several items and decide each on its own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ehrbridge.audit import AuditEntry
from ehrbridge.cli.errors import cli_errors
from ehrbridge.cli.options import DbOption, WorkspaceOption
from ehrbridge.errors import InvalidInput, ReviewConflict
from ehrbridge.review.desk import ReviewDesk
from ehrbridge.review.evaluation import evaluate, load_cases, summarise
from ehrbridge.review.judges import judge_named
from ehrbridge.review.llm import LlmSettings
from ehrbridge.review.queue import ItemQuery, ReviewItem
from ehrbridge.storage import DEFAULT_URL, Backend, open_backend
from ehrbridge.worldmodel.model import WorldModel

T = TypeVar("T")
review_app = typer.Typer(
    help="The human review queue (list, show, decide) and the judges (eval).", no_args_is_help=True
)
console = Console()
#: eval's errors go to stderr: its stdout is JSON lines
errors = Console(stderr=True, soft_wrap=True)

#: the exit code of a conflict with another operator
CONFLICT = 3
OperatorOption = Annotated[
    str,
    typer.Option("--operator", envvar="EHRBRIDGE_OPERATOR", help="who decides (recorded)"),
]
ItemArgument = Annotated[str, typer.Argument(help="the review item's id (ehrbridge review list)")]


def _run(db: str, workspace: str, work: Callable[[ReviewDesk, Backend], Awaitable[T]]) -> T:
    async def main() -> T:
        async with await open_backend(db, create=False) as backend:
            desk = ReviewDesk(WorldModel(backend.worldmodel, workspace), backend.review)
            return await work(desk, backend)

    with cli_errors(console, escaped=True, interrupted=None):
        return asyncio.run(main())


def _audited(
    action: str, operator: str, work: Callable[[ReviewDesk], Awaitable[ReviewItem]]
) -> Callable[[ReviewDesk, Backend], Awaitable[ReviewItem | ReviewConflict]]:
    """``work`` on the desk, with its audit entry; a conflict is returned, not raised."""

    async def audited(desk: ReviewDesk, backend: Backend) -> ReviewItem | ReviewConflict:
        try:
            item = await work(desk)
        except ReviewConflict as exc:
            await backend.security.record_audit([_entry(desk, action, operator, "invalid")])
            return exc
        entry = _entry(desk, action, operator, "ok", item.entity_type, item.entity_id)
        await backend.security.record_audit([entry])
        return item

    return audited


def _entry(
    desk: ReviewDesk,
    action: str,
    operator: str,
    outcome: str,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> AuditEntry:
    return AuditEntry(
        workspace=desk.workspace,
        at=datetime.now(UTC),
        key_id="cli",
        role="operator",
        action=action,
        outcome=outcome,  # type: ignore[arg-type]
        entity_type=entity_type,
        entity_id=entity_id,
        phi=entity_type is not None,
        details={"channel": "cli", "operator": operator},
    )


def _decided(answer: ReviewItem | ReviewConflict) -> ReviewItem:
    if isinstance(answer, ReviewConflict):
        console.print(f"[red]conflict:[/red] {escape(str(answer))}")
        raise typer.Exit(CONFLICT)
    decision = answer.decision
    if decision is not None:
        console.print(f"{answer.item_id}: {decision.outcome} by {escape(decision.operator)}")
    else:
        holder = answer.claim.operator if answer.claim else "nobody"
        console.print(f"{answer.item_id}: open, held by {escape(holder)}")
    return answer


def _operator(operator: str) -> str:
    if not operator.strip():
        raise typer.BadParameter("name the operator (--operator or $EHRBRIDGE_OPERATOR)")
    return operator.strip()


@review_app.command("list")
def list_items(
    status: Annotated[str, typer.Option("--status", help="open, decided or all")] = "open",
    entity_type: Annotated[str | None, typer.Option("--type", help="an entity type")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="a part of the reason")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line")] = False,
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """The queue: most urgent first, then oldest first."""
    if status not in ("open", "decided", "all"):
        raise typer.BadParameter("open, decided or all", param_hint="--status")
    query = ItemQuery(
        status=None if status == "all" else status,  # type: ignore[arg-type]
        entity_type=entity_type,
        reason=reason,
        limit=limit,
    )

    async def work(desk: ReviewDesk, backend: Backend) -> list[ReviewItem]:
        return await desk.queue.items(desk.workspace, query)

    items = _run(db, workspace, work)
    if as_json:
        for item in items:
            typer.echo(orjson.dumps(_item_json(item)).decode())
        return
    table = Table(title=f"review queue ({len(items)})")
    for column in ("item", "entity", "priority", "status", "age", "reason"):
        table.add_column(column)
    now = datetime.now(UTC)
    for item in items:
        age = now - item.created_at
        table.add_row(
            item.item_id,
            f"{item.entity_type}/{item.entity_id}",
            str(item.priority),
            item.status if item.decision is None else item.decision.outcome,
            f"{int(age.total_seconds() // 60)} min",
            escape(item.reason),
        )
    console.print(table)


def _item_json(item: ReviewItem) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "entity": f"{item.entity_type}/{item.entity_id}",
        "status": item.status,
        "priority": item.priority,
        "reason": item.reason,
        "created_at": item.created_at.isoformat(),
        **item.body(),
    }


@review_app.command("show")
def show(
    item_id: ItemArgument,
    operator: OperatorOption = "",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """An item: the entity's fields, the flagged facts and the verdicts on them."""
    who = _operator(operator)

    async def work(desk: ReviewDesk, backend: Backend) -> Any:
        detail = await desk.detail(item_id)
        item = detail.item
        entry = _entry(desk, "review.show", who, "ok", item.entity_type, item.entity_id)
        await backend.security.record_audit([entry])
        return detail

    detail = _run(db, workspace, work)
    item = detail.item
    console.print(f"[bold]{item.item_id}[/bold] {item.entity_type}/{item.entity_id}: {item.status}")
    for reason in item.reasons:
        console.print(f"  flagged: {escape(reason)}")
    for event in detail.flagged:
        values = ", ".join(f"{k} = {v!r}" for k, v in event.data.items())
        console.print(f"  fact {event.id} at {event.confidence:g}: {escape(values)}")
    for grade in detail.grades:
        verdict = (grade.evidence or {}).get("verdict") or {}
        said = verdict.get("outcome", "") if isinstance(verdict, dict) else ""
        why = escape(str(grade.data.get("reason", "")))
        console.print(
            f"  {grade.source.kind}:{grade.source.id} → {grade.confidence:g} {said} {why}"
        )


def _action(
    name: str,
    run: Callable[[ReviewDesk, str], Awaitable[ReviewItem]],
    operator: str,
    db: str,
    workspace: str,
) -> None:
    who = _operator(operator)
    _decided(_run(db, workspace, _audited(f"review.{name}", who, lambda d: run(d, who))))


@review_app.command("claim")
def claim(
    item_id: ItemArgument,
    operator: OperatorOption = "",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Hold an item so no other operator works it (for 15 minutes, renewed by claiming again)."""
    _action("claim", lambda d, who: d.claim(item_id, who), operator, db, workspace)


@review_app.command("unclaim")
def unclaim(
    item_id: ItemArgument,
    operator: OperatorOption = "",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Give an item back."""
    _action("unclaim", lambda d, who: d.unclaim(item_id, who), operator, db, workspace)


def _batch(
    item_ids: list[str], outcome: str, note: str, operator: str, db: str, workspace: str
) -> None:
    """Decide every item in one session; each answers on its own, a conflict exits 3."""
    who = _operator(operator)
    action = "review.approve" if outcome == "approved" else "review.reject"

    async def work(desk: ReviewDesk, backend: Backend) -> dict[str, Any]:
        answers = await desk.batch(item_ids, who, outcome, note)
        entries = []
        for answer in answers.values():
            if isinstance(answer, ReviewItem):
                entries.append(
                    _entry(desk, action, who, "ok", answer.entity_type, answer.entity_id)
                )
            else:
                entries.append(_entry(desk, action, who, "invalid"))
        await backend.security.record_audit(entries)
        return answers

    answers = _run(db, workspace, work)
    failed = False
    for item_id, answer in answers.items():
        if isinstance(answer, ReviewItem):
            _decided(answer)
        else:
            failed = True
            console.print(f"[red]{escape(item_id)}:[/red] {escape(str(answer))}")
    if failed:
        raise typer.Exit(CONFLICT)


@review_app.command("approve")
def approve(
    item_ids: Annotated[list[str], typer.Argument(help="one or more item ids")],
    note: Annotated[str, typer.Option("--note")] = "",
    operator: OperatorOption = "",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Approve the flagged facts (0.95) of one or more items."""
    _batch(item_ids, "approved", note, operator, db, workspace)


@review_app.command("reject")
def reject(
    item_ids: Annotated[list[str], typer.Argument(help="one or more item ids")],
    reason: Annotated[str, typer.Option("--reason", help="why (required)")] = "",
    operator: OperatorOption = "",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Reject the flagged facts (0.0) of one or more items, with the reason."""
    if not reason.strip():
        raise typer.BadParameter("a rejection needs a reason", param_hint="--reason")
    _batch(item_ids, "rejected", reason, operator, db, workspace)


@review_app.command("correct")
def correct(
    item_id: ItemArgument,
    values: Annotated[
        list[str], typer.Option("--set", help="field=value, e.g. phone.mobile=+16175550127")
    ],
    note: Annotated[str, typer.Option("--note")] = "",
    operator: OperatorOption = "",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Write the right values (1.0) over the flagged fact they are about."""
    pairs: dict[str, Any] = {}
    for pair in values:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter("expected field=value", param_hint="--set")
        pairs[name.strip()] = value
    if not pairs:
        raise InvalidInput("a correction names at least one field")
    _action("correct", lambda d, who: d.correct(item_id, who, pairs, note), operator, db, workspace)


@review_app.command("stats")
def stats(db: DbOption = DEFAULT_URL, workspace: WorkspaceOption = "default") -> None:
    """The open queue by priority, with the oldest item of each."""

    async def work(desk: ReviewDesk, backend: Backend) -> Any:
        return await desk.depth(), await desk.decided_per_day()

    depth, days = _run(db, workspace, work)
    total = sum(d.count for d in depth)
    console.print(f"{total} open")
    for d in depth:
        console.print(f"  priority {d.priority}: {d.count} (oldest {d.oldest.isoformat()})")
    for day, count in days:
        console.print(f"  {day.isoformat()}: {count} decided")


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
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="the LLM's OpenAI-compatible API base")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="the LLM's model")] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="the variable that holds the LLM's key")
    ] = None,
    json_object: Annotated[
        bool, typer.Option("--json-object", help="ask for json_object (llama-cpp-python)")
    ] = False,
) -> None:
    """Run a judge over labelled cases: one JSON line per case, then the summary."""
    settings = None
    if judge is not JudgeChoice.GROUNDING:
        if not base_url or not model:
            errors.print(f"[red]error:[/red] the {judge.value} judge needs --base-url and --model")
            raise typer.Exit(2)
        settings = LlmSettings(
            base_url=base_url,
            model=model,
            api_key=os.environ.get(api_key_env) if api_key_env else None,
            response_format="json_object" if json_object else "json_schema",
        )
    with cli_errors(errors, escaped=True):
        cases = load_cases(file)
        chosen = judge_named(judge.value, settings)
        results = asyncio.run(evaluate(chosen, cases))
    for result in results:
        typer.echo(orjson.dumps(result.as_json()).decode())
    typer.echo(orjson.dumps(summarise(results).as_json()).decode())
