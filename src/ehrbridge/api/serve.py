"""``ehrbridge serve``: the agent API over HTTP (and MCP at ``/mcp``) under uvicorn.

It opens the world model's store and, on the same database, the API keys and the audit trail,
builds :class:`~ehrbridge.api.service.AgentService` and :func:`~ehrbridge.api.http.create_app`
with the MCP endpoint mounted at ``/mcp`` when :mod:`ehrbridge.api.mcp` offers one, and serves
until SIGINT or SIGTERM. Once the socket is bound it prints the URL it listens on (``--port 0``
picks a free port).

uvicorn's access log is off: it writes every request's path and query, and paths carry entity
and call ids. The app logs one line per request itself (method, route template, status,
duration, request id). Also runnable as ``python -m ehrbridge.api.serve``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvicorn
from rich.console import Console
from starlette.types import ASGIApp

from ehrbridge.api.ports import DEFAULT_MAX_BODY, ApiKeys
from ehrbridge.errors import EhrbridgeError, InvalidInput
from ehrbridge.logs import configure_logging
from ehrbridge.sockets import bind
from ehrbridge.worldmodel.backends import DEFAULT_URL, open_store

if TYPE_CHECKING:
    from ehrbridge.api.service import AgentService

#: where the MCP endpoint is mounted
MCP_PATH = "/mcp"

console = Console(stderr=True)
logger = logging.getLogger(__name__)

DbOption = Annotated[
    str, typer.Option("--db", envvar="EHRBRIDGE_DB", help="sqlite:///file.db or postgresql://...")
]


def mcp_mounts(service: AgentService, keys: ApiKeys) -> list[tuple[str, ASGIApp]]:
    """``[("/mcp", the MCP endpoint)]`` when :mod:`ehrbridge.api.mcp` offers a streamable-HTTP
    app; empty (and a warning) when it cannot be imported."""
    try:
        from ehrbridge.api.mcp import streamable_http_app
    except ImportError as exc:
        logger.warning("MCP not mounted: ehrbridge.api.mcp is unavailable (%s)", exc.name)
        return []
    return [(MCP_PATH, streamable_http_app(service, keys))]


def url_of(sock: socket.socket, host: str) -> str:
    """The base URL a client uses for the bound ``sock``."""
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def uvicorn_config(app: ASGIApp, **logging_options: Any) -> uvicorn.Config:
    """How the API is served: no access log (uvicorn would log paths and queries), no lifespan
    (a mounted MCP app starts its session manager on its first request), no Server header.
    ``logging_options`` (``log_level``, ``log_config``) change how uvicorn logs, nothing else."""
    options: dict[str, Any] = {"log_level": "warning", **logging_options}
    return uvicorn.Config(
        app, access_log=False, lifespan="off", server_header=False, loop="asyncio", **options
    )


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it listens."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn raises a captured SIGTERM again once it has shut down, which kills the
        # process before the store is closed; a SIGTERM is a graceful stop: exit 0
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_listening()


async def serve(
    db: str,
    sock: socket.socket,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    prompt_budget: int | None = None,
    on_listening: Callable[[], None] = lambda: None,
) -> None:
    """Serve the API on the bound ``sock`` until uvicorn is told to stop."""
    # FastAPI and the service load here, not when the ``ehrbridge`` command starts.
    from ehrbridge.api.http import create_app
    from ehrbridge.api.service import AgentService, Limits
    from ehrbridge.api.storage import open_security_store
    from ehrbridge.worldmodel.model import WorldModel

    store = await open_store(db)
    try:
        security = open_security_store(store)
        limits = Limits(prompt_budget=prompt_budget) if prompt_budget else Limits()
        service = AgentService(lambda ws: WorldModel(store, ws), security, limits=limits)
        app = create_app(
            service, security, max_body_bytes=max_body, mounts=mcp_mounts(service, security)
        )
        await _Server(uvicorn_config(app), on_listening).serve(sockets=[sock])
    finally:
        await store.close()


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
    try:
        asyncio.run(
            serve(db, sock, max_body=max_body, prompt_budget=prompt_budget, on_listening=listening)
        )
    except InvalidInput as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except EhrbridgeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        sock.close()


if __name__ == "__main__":
    typer.run(serve_command)
