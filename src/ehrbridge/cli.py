"""The ``ehrbridge`` command."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ehrbridge.confidence import DEFAULT_THRESHOLDS, Level
from ehrbridge.errors import EhrbridgeError
from ehrbridge.sampledata import ImportSummary, import_sample, read_sample
from ehrbridge.worldmodel.backends import DEFAULT_URL, open_store
from ehrbridge.worldmodel.context import PatientContext, patient_context
from ehrbridge.worldmodel.model import WorldModel, parse_entity
from ehrbridge.worldmodel.projection import EntityState, FieldValue

T = TypeVar("T")
app = typer.Typer(help="ehrbridge: voice agents <-> EHRs through an event-sourced world model.")
console = Console()

DbOption = Annotated[
    str, typer.Option("--db", envvar="EHRBRIDGE_DB", help="sqlite:///file.db or postgresql://...")
]
WorkspaceOption = Annotated[
    str, typer.Option("--workspace", "-w", envvar="EHRBRIDGE_WORKSPACE", help="the tenant")
]


def _run(db: str, workspace: str, work: Callable[[WorldModel], Awaitable[T]]) -> T:
    async def main() -> T:
        store = await open_store(db)
        try:
            return await work(WorldModel(store, workspace))
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except EhrbridgeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _source(fv: FieldValue) -> str:
    return f"{fv.source.kind}:{fv.source.id}"


def _bucket_style(confidence: float) -> str:
    return {"authoritative": "green", "trusted": "cyan", "raw": "yellow"}[
        DEFAULT_THRESHOLDS.bucket(confidence)
    ]


def state_table(state: EntityState, title: str | None = None) -> Table:
    """An entity's fields with provenance, and its pending values."""
    table = Table(title=title or f"{state.entity_type}/{state.entity_id} (v{state.version})")
    for column in ("field", "value", "confidence", "source", "effective at"):
        table.add_column(column)
    for path, fv in state.fields.items():
        style = _bucket_style(fv.confidence)
        table.add_row(
            path,
            _show(fv.value),
            f"[{style}]{fv.confidence:.2f}[/{style}]",
            _source(fv),
            fv.effective_at.isoformat(timespec="minutes"),
        )
    for path, waiting in state.pending.items():
        for fv in waiting:
            table.add_row(
                f"[yellow]{path} (pending)[/yellow]",
                _show(fv.value),
                f"[yellow]{fv.confidence:.2f}[/yellow]",
                _source(fv),
                fv.effective_at.isoformat(timespec="minutes"),
            )
    return table


def _show(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def summary_table(summary: ImportSummary) -> Table:
    table = Table(title=f"import: {summary.events} events written")
    for column in ("entity type", "created", "updated", "unchanged"):
        table.add_column(column, justify="right" if column != "entity type" else "left")
    for entity_type, counts in sorted(summary.counts.items()):
        table.add_row(
            entity_type, *(str(counts.get(k, 0)) for k in ("created", "updated", "unchanged"))
        )
    return table


def context_view(ctx: PatientContext) -> None:
    p = ctx.patient
    console.print(state_table(p, title=f"Patient/{p.entity_id}: demographics with provenance"))
    if ctx.pending:
        for path, values in ctx.pending.items():
            shown = ", ".join(map(str, values))
            console.print(f"[yellow]pending, being verified:[/yellow] {path} = {shown}")
    for title, items, fields in (
        (
            "upcoming appointments",
            ctx.upcoming_appointments,
            ("start", "appointment_type", "status"),
        ),
        ("recent encounters", ctx.recent_encounters, ("period.start", "type", "status")),
        ("active medications", ctx.active_medications, ("medication.display", "dosage.text")),
        ("coverage", ctx.coverage, ("payer", "plan_name", "member_id")),
    ):
        table = Table(title=title)
        for name in fields:
            table.add_column(name)
        table.add_column("confidence")
        for state in items:
            lowest = min((fv.confidence for fv in state.fields.values()), default=0.0)
            table.add_row(
                *(_show(state.fields[n].value) if n in state.fields else "" for n in fields),
                f"{lowest:.2f}",
            )
        console.print(table)


@app.command()
def init(db: DbOption = DEFAULT_URL) -> None:
    """Create (or migrate) the world model database."""

    async def work(model: WorldModel) -> None:
        del model

    _run(db, "default", work)
    console.print(f"world model ready at {db}")


@app.command("import")
def import_(
    path: Annotated[Path | None, typer.Argument(help="a sample-format JSON file")] = None,
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Import the project's sample data (or a file in the same format); idempotent."""
    try:
        doc = read_sample(path)
    except EhrbridgeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    summary = _run(db, workspace, lambda model: import_sample(model, doc))
    console.print(summary_table(summary))


@app.command()
def status(db: DbOption = DEFAULT_URL, workspace: WorkspaceOption = "default") -> None:
    """Entities per type, events and open conflicts."""
    counts = _run(db, workspace, lambda model: model.store.counts(workspace))
    table = Table(title=f"workspace {workspace}")
    table.add_column("entity type")
    table.add_column("entities", justify="right")
    for entity_type, n in sorted(counts.entities.items()):
        table.add_row(entity_type, str(n))
    console.print(table)
    console.print(f"events: {counts.events}   open conflicts: {counts.open_conflicts}")


@app.command()
def show(
    entity: Annotated[str, typer.Argument(help="Type/id, e.g. Patient/01a2...")],
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="state as known at this time")
    ] = None,
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """An entity's state with provenance (optionally as of a past time)."""
    when = as_of.replace(tzinfo=UTC) if as_of and as_of.tzinfo is None else as_of
    entity_type, entity_id = _entity(entity)
    state = _run(db, workspace, lambda model: model.state(entity_type, entity_id, as_of=when))
    if state is None:
        console.print(f"[red]no {entity} in workspace {workspace}[/red]")
        raise typer.Exit(1)
    console.print(state_table(state))
    for conflict in state.conflicts:
        console.print(f"[red]open conflict[/red] {conflict.conflict_id} on {conflict.field}")


@app.command()
def events(
    entity: Annotated[str, typer.Argument(help="Type/id")],
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """An entity's timeline."""
    entity_type, entity_id = _entity(entity)
    timeline = _run(db, workspace, lambda model: model.events(entity_type, entity_id))
    table = Table(title=f"{entity} timeline")
    for column in ("v", "recorded", "type", "source", "confidence", "fields", "event id"):
        table.add_column(column)
    for e in timeline:
        table.add_row(
            str(e.version),
            e.recorded_at.isoformat(timespec="seconds"),
            e.event_type.value,
            f"{e.source.kind}:{e.source.id}",
            f"{e.confidence:.2f}",
            ", ".join(e.fields),
            e.id,
        )
    console.print(table)


@app.command()
def rebuild(db: DbOption = DEFAULT_URL, workspace: WorkspaceOption = "default") -> None:
    """Recompute every projection of the workspace from the log."""
    n = _run(db, workspace, lambda model: model.store.rebuild(workspace))
    console.print(f"rebuilt {n} entities from the log")


@app.command()
def demo(
    path: Annotated[Path, typer.Option("--file", help="the demo's SQLite file")] = Path(
        "ehrbridge-demo.db"
    ),
) -> None:
    """Load the sample clinic into a fresh world model and show a caller's context."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    doc = read_sample(None)

    async def work(model: WorldModel) -> PatientContext | None:
        summary = await import_sample(model, doc)
        console.print(summary_table(summary))
        dialled = "(617) 555-0142"
        console.rule(f"incoming call from {dialled}")
        callers = await model.identify_caller(dialled)
        if not callers:
            console.print("[red]no patient matches this caller[/red]")
            return None
        patient = callers[0]
        console.print(f"identified: Patient/{patient.entity_id}")
        said = "you can reach me on my new cell, 617 555 0199"
        await model.write_voice(
            "Patient",
            patient.entity_id,
            {"phone.mobile": "+16175550199"},
            level=Level.VOICE_CONFIRMED,
            agent="demo-agent",
            call_id="call-demo-1",
            evidence={"transcript_span": said},
        )
        console.print(
            "the agent heard a new mobile number and recorded it at voice confidence 0.50"
        )
        return await patient_context(model, patient.entity_id)

    ctx = _run(f"sqlite:///{path}", "default", work)
    if ctx is None:
        raise typer.Exit(1)
    context_view(ctx)
    console.print(
        f"\nworld model in {path}; try: ehrbridge status --db sqlite:///{path}   "
        f"ehrbridge events Patient/{ctx.patient.entity_id} --db sqlite:///{path}"
    )


def _entity(ref: str) -> tuple[str, str]:
    try:
        return parse_entity(ref)
    except EhrbridgeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def main() -> None:
    """Entry point of the ``ehrbridge`` script."""
    os.environ.setdefault("COLUMNS", "120")
    app()
