"""One mapping from the errors a command may meet to its message and exit code.

Every command-line module (``main``, ``fhir``, ``keys``, ``serve``, ``mcp``) wraps
its work in :func:`cli_errors` instead of repeating the ``except`` ladder. The common pattern is:
invalid input exits 2, any other :class:`EhrbridgeError` exits 1, Ctrl-C exits 130; each one
prints ``error: <message>`` on the command's own console. A command that differs says so in its
arguments (``invalid=``, ``interrupted=``, ``escaped=``), so the difference stays visible.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from ehrbridge.errors import EhrbridgeError, InvalidInput

__all__ = ["cli_errors"]


@contextmanager
def cli_errors(
    console: Console,
    *,
    failed: int = 1,
    invalid: int = 2,
    interrupted: int | None = 130,
    escaped: bool = False,
) -> Iterator[None]:
    """Turn an :class:`EhrbridgeError` raised in the block into ``error: <message>`` on
    ``console`` and :class:`typer.Exit`: ``invalid`` for :class:`InvalidInput`, ``failed`` for any
    other; Ctrl-C exits ``interrupted`` silently (``None``: left to click, as before).
    ``escaped`` escapes Rich markup in the message (for messages that may quote user input)."""
    try:
        yield
    except EhrbridgeError as exc:
        text = escape(str(exc)) if escaped else str(exc)
        console.print(f"[red]error:[/red] {text}")
        raise typer.Exit(invalid if isinstance(exc, InvalidInput) else failed) from None
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        raise typer.Exit(interrupted) from None
