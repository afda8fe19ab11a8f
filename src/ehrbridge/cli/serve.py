"""``ehrbridge serve``: the command line of the agent API's server (:mod:`ehrbridge.api.serve`).

It binds the port first (so a port in use is refused before anything starts), then serves from
this process (``--workers 1``) or supervises N worker processes, each with its own
``SO_REUSEPORT`` socket on the port. Also runnable as ``python -m ehrbridge.cli.serve``.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Annotated

import typer
from rich.console import Console

from ehrbridge.api.serve import (
    BACKLOG,
    GIL_SWITCH_INTERVAL,
    MAX_DEFAULT_WORKERS,
    Supervisor,
    default_workers,
    prepare_database,
    serve,
    url_of,
)
from ehrbridge.api.store import DEFAULT_MAX_BODY
from ehrbridge.cli.errors import cli_errors
from ehrbridge.cli.options import DbOption
from ehrbridge.logs import configure_logging
from ehrbridge.sockets import bind
from ehrbridge.storage import DEFAULT_URL

console = Console(stderr=True)

WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        max=64,
        help=f"server processes (default: one per CPU, at most {MAX_DEFAULT_WORKERS})",
        show_default=False,
    ),
]


def serve_command(
    db: DbOption = DEFAULT_URL,
    host: Annotated[str, typer.Option("--host", help="the address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0: any free port")] = 8000,
    max_body: Annotated[
        int, typer.Option("--max-body", min=1024, help="largest request body, in bytes")
    ] = DEFAULT_MAX_BODY,
    prompt_budget: Annotated[
        int | None,
        typer.Option(
            "--prompt-budget", min=200, max=50_000, help="characters of prompt-ready context"
        ),
    ] = None,
    workers: WorkersOption = None,
) -> None:
    """Serve the agent API over HTTP (OpenAPI at /openapi.json; MCP at /mcp)."""
    try:
        sock = bind(host, port)
    except OSError as exc:
        console.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror}")
        raise typer.Exit(1) from None
    url = url_of(sock, host)

    def listening() -> None:
        # stdout: the one line a script (or a test) reads to find the server
        print(f"ehrbridge API listening on {url} (OpenAPI: {url}/openapi.json)", flush=True)

    configure_logging()
    count = default_workers() if workers is None else workers
    try:
        with cli_errors(console):
            if count == 1:
                sys.setswitchinterval(GIL_SWITCH_INTERVAL)
                asyncio.run(
                    serve(
                        db,
                        sock,
                        max_body=max_body,
                        prompt_budget=prompt_budget,
                        on_listening=listening,
                    )
                )
                return
            shared = _shared_sockets(sock, host, count)
            try:
                asyncio.run(prepare_database(db))
                supervisor = Supervisor(
                    db,
                    shared,
                    max_body=max_body,
                    prompt_budget=prompt_budget,
                    on_listening=listening,
                )
                status = supervisor.run()
            finally:
                for each in shared:
                    each.close()
            if status:
                raise typer.Exit(status)
    finally:
        sock.close()


def _shared_sockets(probe: socket.socket, host: str, count: int) -> list[socket.socket]:
    """``count`` listening ``SO_REUSEPORT`` sockets on the port ``probe`` holds.

    ``probe`` was bound without ``SO_REUSEPORT``, so a port in use was refused (even by another
    ``ehrbridge serve``, which would otherwise join the group and share the port); it is
    released for the workers' sockets."""
    port = probe.getsockname()[1]
    probe.close()
    shared: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = bind(host, port, reuse_port=True)
            shared.append(sock)
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in shared:
            sock.close()
        console.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror}")
        raise typer.Exit(1) from None
    return shared


if __name__ == "__main__":
    typer.run(serve_command)
