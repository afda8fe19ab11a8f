"""The PostgreSQL backend: scale-out storage that several runner processes share
(docs/design.md §4)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ehrbridge.storage.backend import Backend
from ehrbridge.storage.postgres.database import PostgresDatabase
from ehrbridge.storage.postgres.outbox import PostgresOutbox
from ehrbridge.storage.postgres.review import PostgresReviewQueue
from ehrbridge.storage.postgres.runner import PostgresRunnerStore
from ehrbridge.storage.postgres.security import PostgresSecurityStore
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.storage.security import KeyCache


async def open_postgres(
    dsn: str,
    *,
    schema: str | None = None,
    max_connections: int = 8,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    key_cache: KeyCache | None = None,
    **options: Any,
) -> Backend:
    """Every port on the PostgreSQL database at ``dsn`` (its ``schema`` created if asked for,
    and migrated). ``clock`` is the world model's time, which keys, review items and the outbox
    (its due times and claim leases too) share; the runner's leases and budgets run on the
    database's clock. ``options`` go to :class:`PostgresStore`."""
    database = await PostgresDatabase.open(dsn, schema=schema, max_connections=max_connections)
    worldmodel = PostgresStore(database, clock=clock, **options)
    return Backend(
        worldmodel=worldmodel,
        runner=PostgresRunnerStore(database),
        security=PostgresSecurityStore(database, clock=clock, cache=key_cache),
        review=PostgresReviewQueue(database, clock=clock),
        outbox=PostgresOutbox(database, clock=clock),
        _close=database.close,
    )
