"""Opening a store from a URL: ``sqlite:///path.db`` (the default) or ``postgresql://...``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ehrbridge.errors import InvalidInput, NotFound
from ehrbridge.worldmodel.store import Store

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


async def open_store(url: str = DEFAULT_URL, *, create: bool = True, **options: Any) -> Store:
    """Open (migrating, and with ``create`` creating) the store at ``url``.

    Without ``create``, a SQLite file that does not exist is refused (:class:`NotFound`), so a
    command that only reads never leaves an empty database behind a mistyped path."""
    if url.startswith("sqlite:///"):
        from ehrbridge.worldmodel.sqlite import SQLiteStore

        path = url.removeprefix("sqlite:///")
        if not create and _missing(path):
            raise NotFound(
                f"no database at {path}: check --db (sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db), or create one with ehrbridge init or import"
            )
        return await SQLiteStore.open(path or ":memory:", **options)
    if url.startswith(("postgresql://", "postgres://")):
        from ehrbridge.worldmodel.postgres import PostgresStore

        return await PostgresStore.open(url, **options)
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").lstrip("/")
        raise InvalidInput(
            "a SQLite URL has three slashes before a relative path: "
            f"sqlite:///{path} (and four before an absolute one: sqlite:////{path})"
        )
    scheme = url.split(":", 1)[0] if "://" in url else ""
    what = f"unknown database URL scheme {scheme!r}" if scheme else "not a database URL"
    raise InvalidInput(f"{what}: use sqlite:///path.db or postgresql://...")
