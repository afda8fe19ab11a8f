"""The storage layer: every port's adapters, one package per backend (docs/design.md §4).

:func:`open_backend` opens a database from a URL, ``sqlite:///path.db`` (the default) or
``postgresql://...``, and returns a :class:`Backend`: the world model's, the runner's and the
API's ports on it. Only composition roots (the command line, the servers, benchmarks and tests)
import this package; the layers know their ports alone.

    storage/
      backend.py            the opened ports
      migrations.py         the numbered schema, applied once each
      rows.py, packing.py   the row codec both backends share
      security.py           the key cache both security adapters share
      sqlite/, postgres/    database.py (connection, locks, driver errors), one module per port
                            (worldmodel, runner, security), audit.py, schema/NNNN_*.sql
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ehrbridge.errors import InvalidInput, NotFound
from ehrbridge.storage.backend import Backend

__all__ = ["DEFAULT_URL", "Backend", "open_backend", "redacted"]

DEFAULT_URL = "sqlite:///ehrbridge.db"
_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/?#@:]*):[^/?#@]*@")


def redacted(url: str) -> str:
    """``url`` with any password shown as ``***``, for messages.

    >>> redacted("postgresql://app:s3cret@db:5432/ehr")
    'postgresql://app:***@db:5432/ehr'
    >>> redacted("sqlite:///ehrbridge.db")
    'sqlite:///ehrbridge.db'
    """
    return _PASSWORD.sub(r"\1:***@", url)


def _missing(path: str) -> bool:
    """A SQLite file path (not memory) with nothing there; a stat, no need for a thread."""
    return path not in ("", ":memory:") and not Path(path).exists()


async def open_backend(url: str = DEFAULT_URL, *, create: bool = True, **options: Any) -> Backend:
    """Open (migrating, and with ``create`` creating) the database at ``url``: every port on it.

    Without ``create``, a SQLite file that does not exist is refused (:class:`NotFound`), so a
    command that only reads never leaves an empty database behind a mistyped path. ``options``:
    ``clock``, ``key_cache``, the world model's ``thresholds`` and ``conflict_window``, and on
    PostgreSQL ``schema`` and ``max_connections``."""
    if url.startswith("sqlite:///"):
        from ehrbridge.storage.sqlite import open_sqlite

        path = url.removeprefix("sqlite:///")
        if not create and _missing(path):
            raise NotFound(
                f"no database at {path}: check --db (sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db), or create one with ehrbridge init or import"
            )
        return await open_sqlite(path or ":memory:", **options)
    if url.startswith(("postgresql://", "postgres://")):
        from ehrbridge.storage.postgres import open_postgres

        return await open_postgres(url, **options)
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").lstrip("/")
        raise InvalidInput(
            "a SQLite URL has three slashes before a relative path: "
            f"sqlite:///{path} (and four before an absolute one: sqlite:////{path})"
        )
    scheme = url.split(":", 1)[0] if "://" in url else ""
    what = f"unknown database URL scheme {scheme!r}" if scheme else "not a database URL"
    raise InvalidInput(f"{what}: use sqlite:///path.db or postgresql://...")
