"""``ehrbridge fhir …``: talking to a FHIR server from the command line.

Credentials are never given inline: a bearer token and a basic-auth password are read from
environment variables, a SMART Backend Services private key from a file. ``fhir backfill`` takes
a data source of the runner's config instead, with the config's secret references.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ehrbridge.cli.errors import cli_errors
from ehrbridge.cli.progress import file_progress, show_errors, summary_table
from ehrbridge.connectors.fhir.backfill import Backfill, BackfillResult
from ehrbridge.connectors.source import SecretRef
from ehrbridge.errors import ConfigError, EhrbridgeError, InvalidInput
from ehrbridge.fhir.auth import Auth, BasicAuth, BearerAuth, NoAuth, SmartBackendAuth
from ehrbridge.fhir.bulk import Manifest, OutputFile
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.push import PUSH_CHUNK, Pusher
from ehrbridge.fhir.reader import Unit, expand
from ehrbridge.fhir.report import ImportReport, dumps_errors
from ehrbridge.runner.configfile import load_config
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.model import WorldModel

app = typer.Typer(help="Talk to a FHIR R4 server.", no_args_is_help=True)
console = Console()


class AuthKind(StrEnum):
    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"
    SMART = "smart"


ServerOption = Annotated[
    str, typer.Option("--server", envvar="EHRBRIDGE_FHIR_URL", help="the FHIR base URL")
]
AuthOption = Annotated[
    AuthKind,
    typer.Option(
        "--auth",
        help="none; basic (user --user, password in $EHRBRIDGE_FHIR_PASSWORD); bearer (token "
        "in $EHRBRIDGE_FHIR_TOKEN); smart (SMART Backend Services: --client-id, --token-url, "
        "--key)",
    ),
]
UserOption = Annotated[str | None, typer.Option("--user", help="basic auth user name")]
ClientIdOption = Annotated[str | None, typer.Option("--client-id", help="SMART client id")]
TokenUrlOption = Annotated[str | None, typer.Option("--token-url", help="SMART token endpoint")]
KeyOption = Annotated[
    Path | None, typer.Option("--key", help="SMART private key (PEM file)", exists=True)
]
AlgOption = Annotated[str, typer.Option("--alg", help="SMART signing algorithm: RS384, ES384")]
ScopeOption = Annotated[str, typer.Option("--scope", help="SMART scopes")]


def make_auth(
    kind: AuthKind,
    *,
    user: str | None = None,
    client_id: str | None = None,
    token_url: str | None = None,
    key: Path | None = None,
    alg: str = "RS384",
    scope: str = "system/*.read",
) -> Auth:
    """The auth the options describe; a missing piece is an :class:`InvalidInput` naming it."""
    if kind is AuthKind.NONE:
        return NoAuth()
    if kind is AuthKind.BASIC:
        password = os.environ.get("EHRBRIDGE_FHIR_PASSWORD")
        if not user or not password:
            raise InvalidInput("--auth basic needs --user and $EHRBRIDGE_FHIR_PASSWORD")
        return BasicAuth(user, password)
    if kind is AuthKind.BEARER:
        token = os.environ.get("EHRBRIDGE_FHIR_TOKEN")
        if not token:
            raise InvalidInput("--auth bearer needs the token in $EHRBRIDGE_FHIR_TOKEN")
        return BearerAuth(token)
    if not client_id or not token_url or key is None:
        raise InvalidInput("--auth smart needs --client-id, --token-url and --key")
    return SmartBackendAuth(
        token_url=token_url, client_id=client_id, private_key=key, algorithm=alg, scope=scope
    )


@app.command()
def push(
    paths: Annotated[list[Path], typer.Argument(help="Bundles and NDJSON files, or folders")],
    server: ServerOption,
    mode: Annotated[
        str, typer.Option(help="how chunks of non-transaction input are sent: batch or transaction")
    ] = "batch",
    chunk: Annotated[int, typer.Option(help="entries per Bundle sent", min=1)] = PUSH_CHUNK,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="write every failed entry here, as NDJSON")
    ] = None,
    auth: AuthOption = AuthKind.NONE,
    user: UserOption = None,
    client_id: ClientIdOption = None,
    token_url: TokenUrlOption = None,
    key: KeyOption = None,
    alg: AlgOption = "RS384",
    scope: ScopeOption = "system/*.write",
) -> None:
    """Send FHIR files to a server: transaction Bundles whole, the rest in chunks of PUTs."""
    if mode not in ("batch", "transaction"):
        console.print("[red]error:[/red] --mode: expected batch or transaction")
        raise typer.Exit(2)
    files = expand(paths)
    if not files:
        console.print("[red]error:[/red] no .json, .ndjson or .jsonl files under the given paths")
        raise typer.Exit(2)

    async def work() -> ImportReport:
        credentials = make_auth(
            auth,
            user=user,
            client_id=client_id,
            token_url=token_url,
            key=key,
            alg=alg,
            scope=scope,
        )
        async with FhirClient(server, auth=credentials) as client:
            pusher = Pusher(client, mode="batch" if mode == "batch" else "transaction", chunk=chunk)
            with file_progress(console, files) as bar:
                return await pusher.push_paths(
                    files, on_unit=lambda unit, so_far: bar.advance(unit, so_far.resources)
                )

    started = time.perf_counter()
    with cli_errors(console, invalid=1, interrupted=None):
        report = asyncio.run(work())
    elapsed = time.perf_counter() - started
    console.print(summary_table(report.counts))
    console.print(
        f"pushed {report.resources:,} resources from {report.files} files in {elapsed:.1f} s"
    )
    show_errors(console, report.errors)
    if errors is not None:
        errors.write_bytes(dumps_errors(report.errors))
    if report.errors:
        raise typer.Exit(1)


class BackfillDisplay:
    """The live view of a backfill: a spinner with the server's ``X-Progress`` while it exports,
    then a bar over the resources of the files to import."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID = progress.add_task("kicking off the export", total=None, resources=0)

    def exporting(self, progress: str | None) -> None:
        text = f"server exporting: {progress}" if progress else "server exporting"
        self.progress.update(self.task, description=escape(text[:60]))

    def importing(self, manifest: Manifest, pending: Sequence[OutputFile]) -> None:
        counts = [f.count for f in pending]
        total = None if any(c is None for c in counts) else sum(c or 0 for c in counts)
        text = f"importing {len(pending)} of {len(manifest.output)} files"
        self.progress.update(self.task, description=text, total=total, completed=0)

    def unit(self, output: OutputFile, unit: Unit, resources: int) -> None:
        name = output.url.rsplit("/", 1)[-1]
        self.progress.update(
            self.task, description=escape(name[-40:]), completed=resources, resources=resources
        )


def _backfill_summary(result: BackfillResult, elapsed: float) -> None:
    console.print(summary_table(result.report.counts))
    skipped = f", {result.skipped_files} imported before a restart" if result.skipped_files else ""
    restarted = f", started again {result.restarts}x" if result.restarts else ""
    console.print(
        f"{result.source}: {result.files} files{skipped}{restarted}; "
        f"{result.read:,} resources read, {result.report.events:,} events written "
        f"in {elapsed:.1f} s; transactionTime {result.transaction_time}"
    )
    for text in result.server_errors[:20]:
        console.print(f"[yellow]the server could not export[/yellow] {escape(text)}")
    show_errors(console, result.report.errors)
    if result.complete:
        moved = ", ".join(sorted(result.cursors)) or "none (already later)"
        console.print(f"[green]complete[/green]: polling continues from there; cursors: {moved}")
    else:
        console.print(f"[red]not complete:[/red] {escape(result.error or '')}")


@app.command()
def backfill(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="the runner's YAML config (data sources)")
    ],
    source: Annotated[str, typer.Option("--source", help="the id of a fhir data source")],
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="a resource type to export (repeat); default: the polled ones"),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="export everything, not only what changed since")
    ] = False,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="write every failed entry here, as NDJSON")
    ] = None,
) -> None:
    """Backfill a FHIR data source through Bulk Data $export; resumes an unfinished one."""
    try:
        settings = load_config(config)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    found = [s for s in settings.data_sources if s.id == source]
    if not found or found[0].kind != "fhir":
        fhir_ids = ", ".join(s.id for s in settings.data_sources if s.kind == "fhir") or "none"
        what = "is not a fhir data source" if found else "is not a data source"
        console.print(f"[red]error:[/red] --source {source} {what} in {config} (fhir: {fhir_ids})")
        raise typer.Exit(2)

    async def work() -> BackfillResult:
        url = settings.database
        backend = await open_backend(url.resolve() if isinstance(url, SecretRef) else url)
        try:
            columns = (
                SpinnerColumn(),
                TextColumn("{task.description:<40}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[resources]:>9,} resources"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=True) as progress:
                job = Backfill(
                    WorldModel(backend.worldmodel, settings.workspace),
                    backend.runner,
                    leases=backend.runner,
                    progress=BackfillDisplay(progress),
                )
                return await job.run(found[0], types=types or (), full=full)
        finally:
            await backend.close()

    started = time.perf_counter()
    try:
        result = asyncio.run(work())
    except EhrbridgeError as exc:
        console.print(f"[red]error:[/red] backfill of {source} failed: {escape(str(exc))}")
        console.print("run the same command again to resume it")
        raise typer.Exit(1) from None
    _backfill_summary(result, time.perf_counter() - started)
    if errors is not None:
        errors.write_bytes(dumps_errors(result.report.errors))
    if not result.complete:
        raise typer.Exit(1)
