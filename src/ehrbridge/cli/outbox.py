"""``ehrbridge outbox ...``: what is waiting to go to the sinks, and the dead letters
(docs/outbox.md, docs/design.md §9).

``list`` and ``dead`` show items newest first (``--sink``, ``--status``, ``--workflow``);
``workflow ID`` shows a workflow's steps (docs/workflows.md): done, the one that stopped it and
why, the one being worked, those not started; ``show ITEM`` shows one item with its attempts and
the sink's answers; ``retry ITEM`` puts a parked item (dead or conflict)
back in its lane, due now; ``skip ITEM --reason`` gives up on it, freeing its lane. They act on
the database directly, as the ``review`` commands do, with ``--operator`` (or
``$EHRBRIDGE_OPERATOR``); reads and actions are recorded in the audit trail. An item that is not
parked exits 3 with the reason. No field value is printed: items name entities by id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ehrbridge.audit import AuditEntry
from ehrbridge.cli.errors import cli_errors
from ehrbridge.cli.options import DbOption, WorkspaceOption
from ehrbridge.errors import NotFound, OutboxConflict
from ehrbridge.outbound.outbox import ItemQuery, ItemStatus, OutboxItem, SinkDepth
from ehrbridge.outbound.workflows import WorkflowStatus, workflow_of, workflow_status
from ehrbridge.storage import DEFAULT_URL, Backend, open_backend

T = TypeVar("T")
outbox_app = typer.Typer(
    help="The outbox: items waiting for the sinks, dead letters, retry and skip.",
    no_args_is_help=True,
)
console = Console()
#: the exit code of an action the item cannot take now
CONFLICT = 3
OperatorOption = Annotated[
    str,
    typer.Option("--operator", envvar="EHRBRIDGE_OPERATOR", help="who acts (recorded)"),
]
ItemArgument = Annotated[str, typer.Argument(help="the outbox item's id (ehrbridge outbox list)")]
SinkOption = Annotated[str | None, typer.Option("--sink", help="only this sink's items")]
LimitOption = Annotated[int, typer.Option("--limit", min=1, max=1000, help="at most this many")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")]
WorkflowOption = Annotated[
    str | None, typer.Option("--workflow", help="only this workflow's steps (book/<id>)")
]


def _run(db: str, work: Callable[[Backend], Awaitable[T]]) -> T:
    async def main() -> T:
        async with await open_backend(db, create=False) as backend:
            return await work(backend)

    with cli_errors(console, escaped=True, interrupted=None):
        return asyncio.run(main())


def _audit(
    workspace: str, action: str, operator: str, outcome: str, item: OutboxItem | None
) -> AuditEntry:
    return AuditEntry(
        workspace=workspace,
        at=datetime.now(UTC),
        key_id="cli",
        role="operator",
        action=action,
        outcome=outcome,  # type: ignore[arg-type]
        entity_type=None if item is None else item.entity_type,
        entity_id=None if item is None else item.entity_id,
        phi=item is not None,
        details={"channel": "cli", "operator": operator},
    )


def item_json(item: OutboxItem) -> dict[str, object]:
    """An item as operators see it: ids, status and times, never the payload's values."""
    return {
        "id": item.id,
        "sink": item.sink,
        "status": item.status.value,
        "entity": f"{item.entity_type}/{item.entity_id}",
        "event_id": item.event_id,
        "operation": item.operation,
        "workflow": item.workflow,
        "step": item.step,
        "fields": sorted(item.payload.get("fields", {})),
        "attempts": item.attempts,
        "in_doubt": item.in_doubt,
        "created_at": item.created_at.isoformat(),
        "next_attempt_at": item.next_attempt_at.isoformat(),
        "last_error": item.last_error,
        "result": dict(item.result) if item.result else None,
        "confirmed_at": item.confirmed_at.isoformat() if item.confirmed_at else None,
    }


def _step(item: OutboxItem) -> str:
    """An item's place in its workflow, ``book #1 update-patient`` (empty for a plain item)."""
    if item.workflow is None:
        return ""
    try:
        workflow = workflow_of(item.workflow)
        name = f"{workflow.name} #{item.step} {workflow.steps[item.step].name}"
    except (KeyError, IndexError):
        name = f"{item.workflow} #{item.step} {item.operation}"
    return escape(name)


def _table(items: list[OutboxItem], title: str) -> Table:
    table = Table(title=title)
    columns = ("item", "sink", "status", "entity", "step", "fields", "attempts", "queued")
    for name in (*columns, "last error"):
        table.add_column(name)
    for i in items:
        table.add_row(
            i.id,
            escape(i.sink),
            i.status.value + (" (in doubt)" if i.in_doubt else ""),
            f"{i.entity_type}/{i.entity_id}",
            _step(i),
            escape(", ".join(sorted(i.payload.get("fields", {})))),
            str(i.attempts),
            i.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape((i.last_error or "")[:80]),
        )
    return table


def _list(
    db: str, workspace: str, query: ItemQuery, as_json: bool, operator: str, title: str
) -> None:
    async def work(backend: Backend) -> list[OutboxItem]:
        items = await backend.outbox.items(workspace, query)
        await backend.security.record_audit(
            [_audit(workspace, "outbox.list", operator, "ok", None)]
        )
        return items

    items = _run(db, work)
    if as_json:
        for item in items:
            typer.echo(orjson.dumps(item_json(item)).decode())
    else:
        console.print(_table(items, title))


@outbox_app.command("list")
def list_items(
    sink: SinkOption = None,
    status: Annotated[
        ItemStatus | None, typer.Option("--status", help="only items in this status")
    ] = None,
    workflow: WorkflowOption = None,
    limit: LimitOption = 100,
    as_json: JsonOption = False,
    operator: OperatorOption = "cli",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Outbox items, newest first."""
    query = ItemQuery(sink=sink, status=status, workflow=workflow, limit=limit)
    _list(db, workspace, query, as_json, operator, "outbox")


def status_lines(status: WorkflowStatus) -> list[str]:
    """A workflow's status as operators read it: what succeeded and what did not."""
    lines = [f"workflow {escape(status.workflow)} at {escape(status.sink)}: {status.state.value}"]
    lines += [f"  done         {escape(step)}" for step in status.done]
    lines += [f"  skipped      {escape(step)}" for step in status.skipped]
    if status.failed is not None:
        why = escape((status.failed_error or "")[:200])
        state = "" if status.failed_status is None else status.failed_status.value
        lines.append(f"  {state:<12} {escape(status.failed)}  {why}")
    if status.current is not None:
        lines.append(f"  in progress  {escape(status.current)}")
    lines += [f"  not started  {escape(step)}" for step in status.not_started]
    return lines


@outbox_app.command("workflow")
def workflow_command(
    workflow: Annotated[str, typer.Argument(help="the workflow's id (book/<appointment id>)")],
    as_json: JsonOption = False,
    operator: OperatorOption = "cli",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """A workflow's steps at each sink: done, stopped (and why), in progress, not started."""

    async def work(backend: Backend) -> list[OutboxItem]:
        items = await backend.outbox.items(workspace, ItemQuery(workflow=workflow, limit=1000))
        if not items:
            raise NotFound(f"no outbox items of workflow {workflow}")
        await backend.security.record_audit(
            [_audit(workspace, "outbox.workflow", operator, "ok", None)]
        )
        return items

    items = _run(db, work)
    statuses = workflow_status(items)
    if as_json:
        for status in statuses:
            typer.echo(orjson.dumps(status.as_json()).decode())
        return
    console.print(_table(sorted(items, key=lambda i: (i.sink, i.step)), f"workflow {workflow}"))
    for status in statuses:
        for line in status_lines(status):
            console.print(line)


@outbox_app.command()
def dead(
    sink: SinkOption = None,
    limit: LimitOption = 100,
    as_json: JsonOption = False,
    operator: OperatorOption = "cli",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Dead letters: items refused for good or out of retries, each holding its lane."""
    query = ItemQuery(sink=sink, status=ItemStatus.DEAD, limit=limit)
    _list(db, workspace, query, as_json, operator, "dead letters")


@outbox_app.command()
def show(
    item_id: ItemArgument,
    as_json: JsonOption = False,
    operator: OperatorOption = "cli",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """One item and its attempts."""

    async def work(backend: Backend) -> tuple[OutboxItem, list[dict[str, object]]]:
        item = await backend.outbox.item(workspace, item_id)
        if item is None:
            raise NotFound(f"no outbox item {item_id}")
        attempts: list[dict[str, object]] = [
            {
                "epoch": a.epoch,
                "started_at": a.started_at.isoformat(),
                "finished_at": a.finished_at.isoformat(),
                "outcome": a.outcome,
                "status": a.status,
                "detail": a.detail,
            }
            for a in await backend.outbox.attempts(workspace, item_id)
        ]
        await backend.security.record_audit(
            [_audit(workspace, "outbox.show", operator, "ok", item)]
        )
        return item, attempts

    item, attempts = _run(db, work)
    body = item_json(item) | {"attempts": attempts}
    if as_json:
        typer.echo(orjson.dumps(body).decode())
        return
    console.print(_table([item], f"outbox item {item.id}"))
    for a in attempts:
        console.print(
            f"  epoch {a['epoch']}  {a['started_at']}  {a['outcome']}"
            f"  {a['status'] or ''}  {escape(str(a['detail']))}"
        )


def _act(
    db: str,
    workspace: str,
    action: str,
    operator: str,
    work: Callable[[Backend], Awaitable[OutboxItem]],
) -> None:
    async def acted(backend: Backend) -> OutboxItem | OutboxConflict:
        try:
            item = await work(backend)
        except OutboxConflict as exc:
            await backend.security.record_audit(
                [_audit(workspace, action, operator, "invalid", None)]
            )
            return exc
        await backend.security.record_audit([_audit(workspace, action, operator, "ok", item)])
        return item

    answer = _run(db, acted)
    if isinstance(answer, OutboxConflict):
        console.print(f"[red]conflict:[/red] {escape(str(answer))}")
        raise typer.Exit(CONFLICT)
    console.print(f"{answer.id}: {answer.status.value}")


@outbox_app.command()
def retry(
    item_id: ItemArgument,
    operator: OperatorOption = "cli",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Put a dead or conflicting item back in its lane, due now, its attempts reset."""
    _act(
        db,
        workspace,
        "outbox.retry",
        operator,
        lambda b: b.outbox.retry(workspace, item_id, operator),
    )


@outbox_app.command()
def skip(
    item_id: ItemArgument,
    reason: Annotated[str, typer.Option("--reason", help="why it is given up (recorded)")],
    operator: OperatorOption = "cli",
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Give up on a dead or conflicting item: skipped for good, its lane goes on."""
    if not reason.strip():
        console.print("[red]a reason is required[/red]")
        raise typer.Exit(2)
    _act(
        db,
        workspace,
        "outbox.skip",
        operator,
        lambda b: b.outbox.skip(workspace, item_id, operator, reason),
    )


def depth_table(depths: list[SinkDepth], states: dict[str, dict[str, object]]) -> Table:
    """Per sink: queue depth, oldest item, dead letters, conflicts, and the dispatcher's state
    (circuit, concurrency and rate in use) as the runners last saved it."""
    table = Table(title="sinks")
    for name in ("sink", "pending", "processing", "dead", "conflict", "oldest", "circuit", "limit"):
        table.add_column(name)
    now = datetime.now(UTC)
    for d in depths:
        state = states.get(d.sink, {})
        oldest = "" if d.oldest is None else f"{(now - d.oldest).total_seconds():.0f} s ago"
        table.add_row(
            escape(d.sink),
            str(d.pending),
            str(d.processing),
            str(d.dead),
            str(d.conflict),
            oldest,
            str(state.get("circuit", "")),
            str(state.get("limit", "")),
        )
    return table
