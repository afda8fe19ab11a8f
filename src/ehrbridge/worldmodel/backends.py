"""Opening a store from a URL: ``sqlite:///path.db`` (the default) or ``postgresql://...``."""

from __future__ import annotations

from typing import Any

from ehrbridge.errors import InvalidInput
from ehrbridge.worldmodel.store import Store

DEFAULT_URL = "sqlite:///ehrbridge.db"


async def open_store(url: str = DEFAULT_URL, **options: Any) -> Store:
    """Open (creating and migrating) the store at ``url``."""
    if url.startswith("sqlite:///"):
        from ehrbridge.worldmodel.sqlite import SQLiteStore

        return await SQLiteStore.open(url.removeprefix("sqlite:///") or ":memory:", **options)
    if url.startswith(("postgresql://", "postgres://")):
        from ehrbridge.worldmodel.postgres import PostgresStore

        return await PostgresStore.open(url, **options)
    raise InvalidInput(
        f"unknown database URL scheme in {url.split(':', 1)[0]!r}: "
        "use sqlite:///path.db or postgresql://..."
    )
