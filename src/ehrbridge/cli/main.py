"""The ``ehrbridge`` command."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ehrbridge.cli.errors import cli_errors
from ehrbridge.cli.fhir import app as fhir_app
from ehrbridge.cli.gates import gates_app
from ehrbridge.cli.keys import audit_app, keys_app
from ehrbridge.cli.mcp import mcp_command
from ehrbridge.cli.options import DbOption, WorkspaceOption
from ehrbridge.cli.outbox import depth_table, outbox_app
from ehrbridge.cli.progress import file_progress, show_errors, sync_progress
from ehrbridge.cli.progress import summary_table as counts_table
from ehrbridge.cli.review import review_app
from ehrbridge.cli.serve import serve_command
from ehrbridge.confidence import DEFAULT_THRESHOLDS, Level
from ehrbridge.connectors.source import PollOutcome
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import Importer, order_files
from ehrbridge.fhir.mapping import to_entity
from ehrbridge.fhir.patients import search_fhir_patients
from ehrbridge.fhir.reader import expand
from ehrbridge.fhir.report import ImportReport, dumps_errors
from ehrbridge.logs import configure_logging
from ehrbridge.outbound.outbox import OutboxItem, SinkDepth, sync_status
from ehrbridge.runner.health import SourceHealth, source_health
from ehrbridge.sample import SAMPLE_SOURCE, sample_bundles
from ehrbridge.storage import DEFAULT_URL, Backend, open_backend, redacted
from ehrbridge.worldmodel.context import PatientContext, patient_context
from ehrbridge.worldmodel.events import Event
from ehrbridge.worldmodel.model import WorldModel, parse_entity
from ehrbridge.worldmodel.projection import EntityState, FieldValue
from ehrbridge.worldmodel.queries import PatientQuery, search_patients
from ehrbridge.worldmodel.store import Counts

T = TypeVar("T")
app = typer.Typer(help="ehrbridge: voice agents <-> EHRs through an event-sourced world model.")
app.add_typer(fhir_app, name="fhir")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(gates_app, name="gates")
app.add_typer(review_app, name="review")
app.add_typer(outbox_app, name="outbox")
app.command("serve")(serve_command)
app.command("mcp")(mcp_command)
console = Console()


def _run(
    db: str, workspace: str, work: Callable[[WorldModel], Awaitable[T]], *, create: bool = False
) -> T:
    """Run ``work`` on the world model at ``db``; only commands that write (``create``: init,
    import, demo) create a database that is not there."""
    return _run_on(db, lambda backend: work(WorldModel(backend.worldmodel, workspace)), create)


def _run_on(db: str, work: Callable[[Backend], Awaitable[T]], create: bool = False) -> T:
    """Run ``work`` on every port of the database at ``db`` (see :func:`_run`)."""

    async def main() -> T:
        async with await open_backend(db, create=create) as backend:
            return await work(backend)

    # every error exits 1 here, invalid input included; Ctrl-C is left to click
    with cli_errors(console, invalid=1, interrupted=None):
        return asyncio.run(main())


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
    # One order on every backend (PostgreSQL's jsonb does not keep the stored order).
    for path, fv in sorted(state.fields.items()):
        style = _bucket_style(fv.confidence)
        table.add_row(
            path,
            _show(fv.value),
            f"[{style}]{fv.confidence:.2f}[/{style}]",
            _source(fv),
            fv.effective_at.isoformat(timespec="minutes"),
        )
    for path, waiting in sorted(state.pending.items()):
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

    _run(db, "default", work, create=True)
    console.print(f"world model ready at {escape(redacted(db))}")


@app.command("import")
def import_(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="FHIR Bundles and NDJSON files (.gz too) or folders of them"),
    ] = None,
    source: Annotated[
        str, typer.Option("--source", help="the data source the records are keyed under")
    ] = "import",
    unmapped: Annotated[
        str, typer.Option(help="resource types without a mapping: keep (as generic) or refuse")
    ] = "keep",
    errors: Annotated[
        Path | None, typer.Option("--errors", help="write every failed entry here, as NDJSON")
    ] = None,
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Import FHIR files into the world model (idempotent: unchanged resources write nothing).

    Without PATHS, imports the bundled sample clinic and its schedules (as data source
    "sandbox-ehr"). A transaction Bundle is all or nothing; other Bundles and NDJSON keep their
    good entries and report the bad ones.
    """
    if unmapped not in ("keep", "refuse"):
        console.print("[red]error:[/red] --unmapped: expected keep or refuse")
        raise typer.Exit(2)
    if not paths:
        paths, source = sample_bundles(), SAMPLE_SOURCE
    files = order_files(expand(paths))
    if not files:
        console.print("[red]error:[/red] no .json, .ndjson or .jsonl files under the given paths")
        raise typer.Exit(2)
    policy: Literal["keep", "refuse"] = "keep" if unmapped == "keep" else "refuse"
    report = _run(db, workspace, lambda model: _import(model, files, source, policy), create=True)
    if errors is not None:
        errors.write_bytes(dumps_errors(report.errors))
    if report.errors:
        raise typer.Exit(1)


async def _import(
    model: WorldModel, files: list[Path], source: str, unmapped: Literal["keep", "refuse"]
) -> ImportReport:
    """Import with a progress bar, then print the summary and the first errors."""
    importer = Importer(model, source=source, unmapped=unmapped)
    started = time.perf_counter()
    with file_progress(console, files) as bar:
        report = await importer.import_paths(
            files, on_unit=lambda unit, so_far: bar.advance(unit, so_far.resources)
        )
    elapsed = time.perf_counter() - started
    console.print(counts_table(report.counts))
    console.print(import_summary(report, elapsed))
    show_errors(console, report.errors)
    return report


def import_summary(report: ImportReport, elapsed: float) -> str:
    """The line under the import's table: what was read and imported, what failed.

    >>> r = ImportReport(files=1)
    >>> r.count("(file)", "failed")
    >>> import_summary(r, 0.04)
    'imported 0 resources from 1 file in 0.0 s: 0 events written; 1 file could not be read'
    >>> r = ImportReport(files=2, events=3)
    >>> r.count("Patient", "created", 3); r.count("Patient", "failed")
    >>> import_summary(r, 1.25)
    'imported 3 of 4 resources from 2 files in 1.2 s: 3 events written; 1 resource failed'
    """
    unreadable = report.counts.get("(file)", Counter())["failed"]
    read = report.resources - unreadable
    failed = report.total("failed") - unreadable
    imported = read - failed
    of = f"{imported:,} of {read:,}" if failed else f"{imported:,}"
    line = (
        f"imported {of} {_plural(read, 'resource')} from {report.files:,} "
        f"{_plural(report.files, 'file')} in {elapsed:.1f} s: {report.events:,} "
        f"{_plural(report.events, 'event')} written"
    )
    problems = [f"{failed:,} {_plural(failed, 'resource')} failed"] if failed else []
    if unreadable:
        problems.append(f"{unreadable:,} {_plural(unreadable, 'file')} could not be read")
    return "; ".join([line, *problems])


def _plural(n: int, noun: str) -> str:
    return noun if n == 1 else f"{noun}s"


@app.command()
def patients(
    name: Annotated[str | None, typer.Option(help="family and/or given names")] = None,
    birth_date: Annotated[str | None, typer.Option(help="YYYY, YYYY-MM or YYYY-MM-DD")] = None,
    identifier: Annotated[str | None, typer.Option(help="system|value, or an MRN")] = None,
    phone: Annotated[str | None, typer.Option(help="as dialled or E.164")] = None,
    gender: Annotated[str | None, typer.Option(help="male, female, other, unknown")] = None,
    address: Annotated[str | None, typer.Option(help="start of a street, city or ZIP")] = None,
    server: Annotated[
        str | None,
        typer.Option("--server", help="search this FHIR server instead of the world model"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Find patients by demographics, in the world model or (with --server) on a FHIR server."""
    # any error in the query's options is a usage error: exit 2
    with cli_errors(console, failed=2, interrupted=None):
        query = PatientQuery(
            name=name,
            birth_date=birth_date,
            identifier=identifier,
            phone=phone,
            gender=gender,
            address=address,
        )
    table = Table(title=f"patients matching {query.fhir_params()}")
    for column in ("id", "name", "birth date", "gender", "phone"):
        table.add_column(column)
    if server is not None:
        resources = _fhir_search(server, query, limit)
        for r in resources:
            mapped = to_entity(r).data
            table.add_row(f"Patient/{r.get('id', '')}", *_patient_cells(mapped))
    else:
        found = _run(db, workspace, lambda model: search_patients(model, query, limit=limit))
        for state in found:
            table.add_row(f"Patient/{state.entity_id}", *_patient_cells(state.values))
    console.print(table)


def _fhir_search(server: str, query: PatientQuery, limit: int) -> list[dict[str, Any]]:
    async def work() -> list[dict[str, Any]]:
        async with FhirClient(server) as client:
            return await search_fhir_patients(client, query, limit=limit)

    with cli_errors(console, invalid=1, interrupted=None):
        return asyncio.run(work())


def _patient_cells(values: Mapping[str, Any]) -> tuple[str, str, str, str]:
    given = " ".join(str(g) for g in values.get("name.given") or [])
    phones = [str(v) for k, v in sorted(values.items()) if k.startswith("phone.") and v]
    return (
        f"{given} {values.get('name.family') or ''}".strip(),
        str(values.get("birth_date") or ""),
        str(values.get("gender") or ""),
        ", ".join(phones),
    )


@app.command()
def status(db: DbOption = DEFAULT_URL, workspace: WorkspaceOption = "default") -> None:
    """Entities per type, events, open conflicts, the health of each polled data source, and
    each sink's queue (depth, oldest item, dead letters, circuit, concurrency in use)."""

    async def work(
        backend: Backend,
    ) -> tuple[Counts, list[SourceHealth], list[SinkDepth], dict[str, dict[str, object]]]:
        outcomes = await backend.runner.recent_outcomes(workspace, limit=20)
        counts = await backend.worldmodel.counts(workspace)
        depths = await backend.outbox.depth(workspace)
        states = {s.sink: dict(s.state) for s in await backend.outbox.sink_states(workspace)}
        return counts, source_health(outcomes, datetime.now(UTC)), depths, states

    counts, health, depths, states = _run_on(db, work)
    table = Table(title=f"workspace {workspace}")
    table.add_column("entity type")
    table.add_column("entities", justify="right")
    for entity_type, n in sorted(counts.entities.items()):
        table.add_row(entity_type, str(n))
    console.print(table)
    console.print(f"events: {counts.events}   open conflicts: {counts.open_conflicts}")
    if health:
        console.print(health_table(health))
        failing = failing_types_table(health)
        if failing is not None:
            console.print(failing)
    if depths:
        console.print(depth_table(depths, states))


_HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "down": "red"}


def health_table(health: list[SourceHealth]) -> Table:
    """Health per data source, from the runner's recorded polls; a degraded one names the
    resource types that are failing."""
    table = Table(title="data sources")
    columns = ("source", "health", "failing types", "last poll", "lag", "errors in a row")
    for column in (*columns, "last error"):
        table.add_column(column)
    for h in health:
        table.add_row(
            h.source,
            _styled(h.status),
            ", ".join(h.failing),
            h.last_poll.isoformat(timespec="seconds") if h.last_poll else "never",
            _lag(h.lag),
            str(h.consecutive_errors),
            h.last_error or "",
        )
    return table


def failing_types_table(health: list[SourceHealth]) -> Table | None:
    """The resource types that are not healthy, one row each (None when all are)."""
    failing = [t for h in health for t in h.types if t.status != "healthy"]
    if not failing:
        return None
    table = Table(title="failing resource types")
    for column in ("source", "resource type", "health", "lag", "errors in a row", "last error"):
        table.add_column(column)
    for t in failing:
        table.add_row(
            t.source,
            t.resource_type,
            _styled(t.status),
            _lag(t.lag),
            str(t.consecutive_errors),
            t.last_error or "",
        )
    return table


def _styled(status: str) -> str:
    return f"[{_HEALTH_STYLE[status]}]{status}[/{_HEALTH_STYLE[status]}]"


def _lag(lag: timedelta | None) -> str:
    return str(lag).split(".")[0] if lag is not None else "no success yet"


@app.command()
def show(
    entity: Annotated[str, typer.Argument(help="Type/id, e.g. Patient/01a2...")],
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="state as known at this time")
    ] = None,
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """An entity's state with provenance (optionally as of a past time), and where each value
    the agent heard or an operator set stands at the sinks."""
    when = as_of.replace(tzinfo=UTC) if as_of and as_of.tzinfo is None else as_of
    entity_type, entity_id = _entity(entity)

    async def work(backend: Backend) -> tuple[EntityState | None, dict[str, list[OutboxItem]]]:
        model = WorldModel(backend.worldmodel, workspace)
        state = await model.state(entity_type, entity_id, as_of=when)
        if state is None:
            return None, {}
        heard = [fv.event_id for fv in state.fields.values() if fv.source.kind != "ehr"]
        return state, await backend.outbox.of_events(workspace, heard) if heard else {}

    state, items = _run_on(db, work)
    if state is None:
        console.print(f"[red]no {entity} in workspace {workspace}[/red]")
        raise typer.Exit(1)
    console.print(state_table(state))
    for field, fv in sorted(state.fields.items()):
        if items.get(fv.event_id):
            console.print(f"sync: {field}: {sync_text(items[fv.event_id])}")
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

    async def work(backend: Backend) -> tuple[list[Event], dict[str, list[OutboxItem]]]:
        model = WorldModel(backend.worldmodel, workspace)
        timeline = await model.events(entity_type, entity_id)
        items = await backend.outbox.of_events(workspace, [e.id for e in timeline])
        return timeline, items

    timeline, items = _run_on(db, work)
    table = Table(title=f"{entity} timeline")
    columns = ("v", "recorded", "type", "source", "confidence", "fields", "sync", "event id")
    for column in columns:
        table.add_column(column)
    for e in timeline:
        table.add_row(
            str(e.version),
            e.recorded_at.isoformat(timespec="seconds"),
            e.event_type.value,
            f"{e.source.kind}:{e.source.id}",
            f"{e.confidence:.2f}",
            ", ".join(e.fields),
            sync_text(items.get(e.id, [])),
            e.id,
        )
    console.print(table)


def sync_text(items: list[OutboxItem]) -> str:
    """An event's sync status at each sink it goes to: ``ehr: synced``."""
    return ", ".join(f"{i.sink}: {sync_status(i.status).value}" for i in items)


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
    """Sync the sample clinic from an in-process sandbox EHR through the connector runner into a
    fresh world model, then take a call: identify the caller, record what the agent heard, and
    show the patient's context."""
    from ehrbridge.cli.demo import (
        DEMO_CALL,
        DEMO_TRANSCRIPT,
        Step,
        sample_counts,
        sandbox_ehr,
        sync,
        write_back,
    )

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    totals = sample_counts()

    async def work(backend: Backend) -> PatientContext | None:
        model = WorldModel(backend.worldmodel, "default")
        with sandbox_ehr() as base_url:
            with sync_progress(console, totals) as report:
                console.print(f"sandbox EHR at {base_url}; the connector runner is polling it")
                await sync(model, backend.runner, url, base_url, list(totals), report)
            counts = await model.store.counts(model.workspace)
            console.print(
                f"world model: {sum(counts.entities.values())} entities, {counts.events} events"
            )
            dialled = "(617) 555-0142"
            console.rule(f"incoming call from {dialled}")
            callers = await model.identify_caller(dialled)
            if not callers:
                console.print("[red]no patient matches this caller[/red]")
                return None
            patient = callers[0]
            console.print(f"identified: Patient/{patient.entity_id}")
            heard_at = datetime.now(UTC)
            await model.write_voice(
                "Call",
                DEMO_CALL,
                {"started_at": heard_at.isoformat(), "transcript": DEMO_TRANSCRIPT},
                level=Level.VOICE_CONFIRMED,
                agent="demo-agent",
                call_id=DEMO_CALL,
            )
            written = await model.write_voice(
                "Patient",
                patient.entity_id,
                {"phone.mobile": "+16175550199"},
                level=Level.VOICE_CONFIRMED,
                agent="demo-agent",
                call_id=DEMO_CALL,
            )
            fact = written.events[0]
            console.print(
                "the agent heard a new mobile number and recorded it at voice confidence 0.50"
            )
            console.rule("the way back: judge, gate, outbox, EHR")
            entity = f"Patient/{patient.entity_id}"
            steps = [Step(at=fact.recorded_at, what="heard", detail="voice fact at 0.50")]
            steps += await write_back(backend, model, base_url, fact.id, entity)
            polled: list[PollOutcome] = []
            await sync(model, backend.runner, url, base_url, ["Patient"], polled.append)
            new = sum(o.events for o in polled)
            state = await model.state("Patient", patient.entity_id)
            conflicts = len(state.conflicts) if state else 0
            steps.append(
                Step(
                    at=datetime.now(UTC),
                    what="read back",
                    detail=f"the next poll of the EHR: {new} new events, {conflicts} conflicts",
                )
            )
            for step in sorted(steps, key=lambda s: s.at):
                console.print(
                    f"{step.at.astimezone(UTC):%H:%M:%S.%f}"[:-3]
                    + f"  {step.what:<10} {escape(step.detail)}"
                )
        return await patient_context(model, patient.entity_id)

    # The runner logs each poll; the progress display says the same, so keep the log quiet.
    runner_log = logging.getLogger("ehrbridge.runner")
    level = runner_log.level
    runner_log.setLevel(logging.ERROR)
    try:
        ctx = _run_on(url, work, create=True)
    finally:
        runner_log.setLevel(level)
    if ctx is None:
        raise typer.Exit(1)
    context_view(ctx)
    console.print(
        f"\nworld model in {path}; try: ehrbridge status --db {url}   "
        f"ehrbridge events Patient/{ctx.patient.entity_id} --db {url}"
    )


@app.command()
def sandbox(
    port: Annotated[int, typer.Option("--port", help="TCP port on 127.0.0.1 (0: any free)")] = 8080,
    db: Annotated[
        Path, typer.Option("--db", help="the sandbox's SQLite file (kept across runs)")
    ] = Path("ehrbridge-sandbox.db"),
    seed: Annotated[
        bool, typer.Option("--seed/--no-seed", help="load the sample clinic into an empty sandbox")
    ] = True,
    host: Annotated[str, typer.Option("--host", help="the address to listen on")] = "127.0.0.1",
) -> None:
    """Run the sandbox EHR: a FHIR R4 server over SQLite with fault injection (POST /$faults)."""
    from ehrbridge.sandbox.app import SandboxApp
    from ehrbridge.sandbox.serve import serve

    sandbox_app = SandboxApp(db, seed=seed)
    try:
        serve(
            sandbox_app,
            host=host,
            port=port,
            on_listening=lambda url: print(f"listening {url}", flush=True),
        )
    finally:
        sandbox_app.close()


@app.command()
def run(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="the runner's YAML config (data sources)")
    ],
) -> None:
    """Run the connector runner until SIGTERM/SIGINT: poll every configured data source."""
    from ehrbridge.runner.serve import serve

    configure_logging()
    raise typer.Exit(asyncio.run(serve(config)))


def _entity(ref: str) -> tuple[str, str]:
    with cli_errors(console, failed=2, interrupted=None):
        return parse_entity(ref)


def main() -> None:
    """Entry point of the ``ehrbridge`` script."""
    os.environ.setdefault("COLUMNS", "120")
    app()
