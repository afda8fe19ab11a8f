"""``ehrbridge mcp``: the agent API's MCP tools over stdio, for a desktop client or an agent.

The client starts this command and speaks MCP on its stdin and stdout; the API key comes from
``EHRBRIDGE_API_KEY`` (never a command-line argument, which other users can see in the process
list) and decides the workspace and role. Without a valid key the command refuses to start
(exit 2). Messages go to stderr: stdout is the protocol's.

Also runnable as ``python -m ehrbridge.cli.mcp [--db URL]``.
"""

from __future__ import annotations

import asyncio
import os

import typer
from rich.console import Console

from ehrbridge.cli.errors import cli_errors
from ehrbridge.cli.options import DbOption
from ehrbridge.errors import Unauthenticated
from ehrbridge.storage import DEFAULT_URL, open_backend

#: the environment variable that holds the API key
API_KEY_ENV = "EHRBRIDGE_API_KEY"

# stdout carries MCP frames: everything for people goes to stderr
console = Console(stderr=True)


async def serve_stdio(db: str, secret: str) -> None:
    """Open the store at ``db`` and serve the tools over stdio as ``secret``'s principal."""
    # The MCP SDK and the service load here, not when the ``ehrbridge`` command starts.
    from ehrbridge.api.mcp import run_stdio
    from ehrbridge.api.service import AgentService

    async with await open_backend(db) as backend:
        service = AgentService.on_store(backend.worldmodel, backend.security)
        await run_stdio(service, backend.security, secret)


def mcp_command(db: DbOption = DEFAULT_URL) -> None:
    """Serve the agent API as MCP tools over stdio (the API key in EHRBRIDGE_API_KEY)."""
    secret = os.environ.get(API_KEY_ENV, "").strip()
    if not secret:
        console.print(
            f"[red]error:[/red] set {API_KEY_ENV} to an API key "
            "(create one with: ehrbridge keys create)"
        )
        raise typer.Exit(2)
    with cli_errors(console):
        try:
            asyncio.run(serve_stdio(db, secret))
        except Unauthenticated:  # this command's own message: the key is the only input
            console.print(
                f"[red]error:[/red] {API_KEY_ENV} is not a valid API key (unknown or revoked)"
            )
            raise typer.Exit(2) from None


if __name__ == "__main__":
    typer.run(mcp_command)
