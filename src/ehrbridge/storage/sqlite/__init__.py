"""The SQLite backend: the embedded default, one file (docs/design.md §4)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ehrbridge.storage.backend import Backend
from ehrbridge.storage.security import KeyCache
from ehrbridge.storage.sqlite.database import SQLiteDatabase
from ehrbridge.storage.sqlite.outbox import SQLiteOutbox
from ehrbridge.storage.sqlite.review import SQLiteReviewQueue
from ehrbridge.storage.sqlite.runner import SQLiteRunnerStore
from ehrbridge.storage.sqlite.security import SQLiteSecurityStore
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore


async def open_sqlite(
    path: str | Path,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    key_cache: KeyCache | None = None,
    **options: Any,
) -> Backend:
    """Every port on the SQLite file at ``path`` (created and migrated if needed).

    ``clock`` is the world model's time, which keys, the audit trail, review items and the
    outbox (its due times and claim leases too) share; the runner's leases and budgets always
    run on the host's clock, the one every process on the file shares.
    ``options`` go to :class:`SQLiteStore` (thresholds, conflict window)."""
    database = await SQLiteDatabase.open(path)
    worldmodel = SQLiteStore(database, clock=clock, **options)
    return Backend(
        worldmodel=worldmodel,
        runner=SQLiteRunnerStore(database),
        security=SQLiteSecurityStore(database, clock=clock, cache=key_cache),
        review=SQLiteReviewQueue(database, clock=clock),
        outbox=SQLiteOutbox(database, clock=clock),
        _close=database.close,
    )
