"""The two backends, each with the world model's store and a raw-driver baseline beside it.

The baseline does the same work as the store with nothing in between: inserting the store's own
event rows into an ``events`` table of the same shape and indexes (created by the same migration,
in a scratch database or schema), and the single-table lookups the store's reads boil down to.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg

from ehrbridge.storage import migrations
from ehrbridge.storage.rows import EVENT_COLUMNS
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.planner import AppendResult, Submission
from ehrbridge.worldmodel.projection import EntityState

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
_LOOKUP_KEY = "SELECT entity_type, entity_id FROM entity_keys WHERE workspace={p} AND key={p}"
_READ_STATE = "SELECT state FROM entities WHERE workspace={p} AND entity_type={p} AND entity_id={p}"


class BenchStore(Protocol):
    """The part of the world model's store the benchmark drives."""

    async def append(self, workspace: str, items: Sequence[Submission]) -> list[AppendResult]: ...

    async def find(
        self, workspace: str, key: str, entity_type: str | None = None
    ) -> list[EntityState]: ...

    async def get_state(
        self, workspace: str, entity_type: str, entity_id: str
    ) -> EntityState | None: ...

    async def close(self) -> None: ...


class Backend(Protocol):
    """A store under test and the raw driver to compare it with."""

    name: str
    store: BenchStore

    async def raw_insert(self, rows: Sequence[tuple[Any, ...]]) -> float:
        """Insert event rows into the scratch table in one transaction; returns seconds taken."""

    async def raw_lookup(self, workspace: str, key: str) -> list[tuple[Any, ...]]:
        """The entities with lookup key ``key``, straight from ``entity_keys``."""

    async def raw_state(self, workspace: str, entity_type: str, entity_id: str) -> Any:
        """An entity's stored state column, unparsed."""

    async def close(self) -> None:
        """Close everything and remove what the run created."""


def _insert_sql(placeholder: str) -> str:
    marks = ",".join([placeholder] * len(EVENT_COLUMNS.split(",")))
    return f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({marks})"


class SQLiteBackend:
    """The store on a file in ``folder``; the baseline on a second file beside it."""

    name = "sqlite"

    def __init__(self, store: SQLiteStore, folder: Path, scratch: sqlite3.Connection) -> None:
        self.store: BenchStore = store
        self._folder = folder
        self._scratch = scratch
        self._reader: sqlite3.Connection | None = None
        self._insert = _insert_sql("?")
        self._lookup = _LOOKUP_KEY.format(p="?")
        self._state = _READ_STATE.format(p="?")

    @classmethod
    async def open(cls, folder: Path) -> SQLiteBackend:
        store = await SQLiteStore.open(folder / "world.db")
        # Same pragmas and the same migration as the store, so the table and indexes match.
        scratch = sqlite3.connect(folder / "raw.db", isolation_level=None)
        scratch.execute("PRAGMA journal_mode=WAL")
        scratch.execute("PRAGMA synchronous=NORMAL")
        for _, sql in migrations.pending("sqlite", 0):
            scratch.executescript(sql)
        return cls(store, folder, scratch)

    async def raw_insert(self, rows: Sequence[tuple[Any, ...]]) -> float:
        started = time.perf_counter()
        self._scratch.execute("BEGIN IMMEDIATE")
        self._scratch.executemany(self._insert, rows)
        self._scratch.execute("COMMIT")
        return time.perf_counter() - started

    @property
    def reader(self) -> sqlite3.Connection:
        # A second connection to the store's file, opened once the load is done.
        if self._reader is None:
            self._reader = sqlite3.connect(self._folder / "world.db", isolation_level=None)
        return self._reader

    async def raw_lookup(self, workspace: str, key: str) -> list[tuple[Any, ...]]:
        return self.reader.execute(self._lookup, (workspace, key)).fetchall()

    async def raw_state(self, workspace: str, entity_type: str, entity_id: str) -> Any:
        return self.reader.execute(self._state, (workspace, entity_type, entity_id)).fetchone()

    async def close(self) -> None:
        await self.store.close()
        self._scratch.close()
        if self._reader is not None:
            self._reader.close()


class PostgresUnavailable(Exception):
    """The PostgreSQL adapter or server is not there."""


class PostgresBackend:
    """The store in a fresh schema ``bench_<random>``; the baseline in ``<that>_raw``."""

    name = "postgres"

    def __init__(
        self, store: BenchStore, conn: psycopg.AsyncConnection[Any], schema: str, raw_schema: str
    ) -> None:
        self.store = store
        self._conn = conn
        self._schema = schema
        self._raw_schema = raw_schema
        self._insert = _insert_sql("%s")
        self._lookup = _LOOKUP_KEY.format(p="%s")
        self._state = _READ_STATE.format(p="%s")

    @classmethod
    async def open(cls, dsn: str) -> PostgresBackend:
        try:
            module = importlib.import_module("ehrbridge.storage.postgres.worldmodel")
        except ImportError as exc:
            raise PostgresUnavailable(f"no PostgreSQL adapter yet: {exc}") from exc
        schema = f"bench_{os.urandom(4).hex()}"
        raw_schema = f"{schema}_raw"
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise PostgresUnavailable(f"cannot connect to {dsn}: {exc}") from exc
        try:
            store: BenchStore = await module.PostgresStore.open(dsn, schema=schema)
        except BaseException:
            await conn.close()
            raise
        await conn.execute(f'CREATE SCHEMA "{raw_schema}"')
        await conn.execute(f'SET search_path TO "{raw_schema}"')
        for _, sql in migrations.pending("postgres", 0):
            await conn.execute(sql.encode())
        # The baseline's reads go to the store's own tables.
        await conn.execute(f'SET search_path TO "{schema}"')
        return cls(store, conn, schema, raw_schema)

    async def raw_insert(self, rows: Sequence[tuple[Any, ...]]) -> float:
        # COPY is PostgreSQL's bulk load, the fastest way the driver has to write these rows.
        table = f'"{self._raw_schema}".events'
        started = time.perf_counter()
        async with (
            self._conn.transaction(),
            self._conn.cursor() as cursor,
            cursor.copy(f"COPY {table} ({EVENT_COLUMNS}) FROM STDIN") as copy,
        ):
            for row in rows:
                await copy.write_row(row)
        return time.perf_counter() - started

    async def raw_lookup(self, workspace: str, key: str) -> list[tuple[Any, ...]]:
        cursor = await self._conn.execute(self._lookup, (workspace, key))
        return await cursor.fetchall()

    async def raw_state(self, workspace: str, entity_type: str, entity_id: str) -> Any:
        cursor = await self._conn.execute(self._state, (workspace, entity_type, entity_id))
        return await cursor.fetchone()

    async def close(self) -> None:
        try:
            drop = getattr(self.store, "drop_schema", None)
            if drop is not None:
                await drop()
            else:
                await self._conn.execute(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')
            await self.store.close()
        finally:
            await self._conn.execute(f'DROP SCHEMA IF EXISTS "{self._raw_schema}" CASCADE')
            await self._conn.close()
