"""Plain SQL on a test's database, on either backend: what a test checks below the ports."""

from __future__ import annotations

from typing import Any

from ehrbridge.storage import Backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore


def backend_name(backend: Backend) -> str:
    """``sqlite`` or ``postgres``, as :mod:`ehrbridge.storage.migrations` names them."""
    return "sqlite" if isinstance(backend.worldmodel, SQLiteStore) else "postgres"


async def rows(backend: Backend, query: str) -> list[tuple[Any, ...]]:
    """The rows of ``query`` (no parameters)."""
    store = backend.worldmodel
    if isinstance(store, SQLiteStore):
        return await store.database.call(lambda conn: conn.execute(query).fetchall())
    assert isinstance(store, PostgresStore)
    return await store.database.rows(query, ())


async def execute(backend: Backend, statement: str) -> None:
    """Run ``statement`` in a transaction of its own."""
    store = backend.worldmodel
    if isinstance(store, SQLiteStore):
        await store.database.transaction(lambda conn: conn.execute(statement))
        return
    assert isinstance(store, PostgresStore)
    async with store.database.pool.connection() as conn, conn.transaction():
        await conn.execute(statement.encode())
