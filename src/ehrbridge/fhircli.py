"""``ehrbridge fhir …``: talking to a FHIR server from the command line.

Credentials are never given inline: a bearer token and a basic-auth password are read from
environment variables, a SMART Backend Services private key from a file.
"""

from __future__ import annotations

import asyncio
import os
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ehrbridge.errors import EhrbridgeError, InvalidInput
from ehrbridge.fhir.auth import Auth, BasicAuth, BearerAuth, NoAuth, SmartBackendAuth
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import ImportReport, dumps_errors
from ehrbridge.fhir.push import PUSH_CHUNK, Pusher
from ehrbridge.fhir.reader import expand
from ehrbridge.progress import file_progress, show_errors, summary_table

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
    try:
        report = asyncio.run(work())
    except EhrbridgeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
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
