"""A PostgreSQL database as every PostgreSQL adapter shares it (docs/design.md §4): the
connection pool, the schema (and its migrations), the advisory locks and the gap-safe log horizon.

psycopg 3, async, pooled, autocommit: an adapter opens a transaction where it needs one. A
``schema`` of its own keeps tenants and tests apart on one server.

**The log horizon.** Every event row carries its transaction id; the log is read in (tx, seq)
order and only below the oldest transaction that may still add events, so a sequence value that
commits late is never skipped by a reader that has moved on. An append takes the ``events``
table's ROW EXCLUSIVE lock *before* its transaction id (as any ``INSERT`` does), so a writer
either holds that lock now or gets an id above the current snapshot's ``xmax``. A reader
(:meth:`PostgresDatabase.settled`) takes ``xmax`` and the ids of the lock's holders from
``pg_locks`` in one statement, then reads in a later one: every event below the smaller of the
two has committed by then, or never will. Transactions that never touch ``events`` (other tables,
other databases of the server) do not hold readers back, however long they run.

A driver error that leaves this module is a :class:`~ehrbridge.errors.StorageError` naming what
failed and the error's kind, never its message (which may quote patient data).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from ehrbridge.errors import InvalidInput, StorageError
from ehrbridge.storage import migrations
from ehrbridge.storage.rows import unstorable

log = logging.getLogger("ehrbridge.storage")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_LOCK = 0x45485242  # advisory lock key: one migrator at a time
#: the next transaction id, and the (32-bit) ids of the transactions holding the events table's
#: ROW EXCLUSIVE lock: the writers that may still add events (see the module's docstring)
_WRITERS = (
    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, array("
    "SELECT x.transactionid::text::bigint FROM pg_locks l JOIN pg_locks x "
    "ON x.virtualtransaction = l.virtualtransaction AND x.locktype = 'transactionid' "
    "WHERE l.locktype = 'relation' AND l.relation = 'events'::regclass "
    "AND l.mode = 'RowExclusiveLock')"
)
#: A named lock, per schema (tests and tenants share one server).
_LOCK_KEY = "hashtextextended(current_schema() || ':' || %s, 0)"
_LOCK = f"SELECT pg_advisory_lock({_LOCK_KEY})".encode()
_UNLOCK = f"SELECT pg_advisory_unlock({_LOCK_KEY})".encode()


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database (and schema), shared by the adapters."""

    def __init__(self, dsn: str, *, schema: str | None = None, max_connections: int = 8) -> None:
        if schema is not None and not _SCHEMA.match(schema):
            raise InvalidInput(f"schema {schema!r} is not a lowercase SQL identifier")
        self.dsn = dsn
        self.schema = schema
        kwargs: dict[str, Any] = {"autocommit": True}
        if schema:
            kwargs["options"] = f"-c search_path={schema}"
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs=kwargs,
            configure=_configure,
            open=False,
        )

    @classmethod
    async def open(
        cls, dsn: str, *, schema: str | None = None, max_connections: int = 8
    ) -> PostgresDatabase:
        """Connect, create the schema if asked for, and migrate."""
        database = cls(dsn, schema=schema, max_connections=max_connections)
        pool = database._pool
        try:
            if schema:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                    )
            await pool.open(wait=True, timeout=30)
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version "
                    "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
                row = await cur.fetchone()
                for version, script in migrations.pending("postgres", row[0] if row else 0):
                    await conn.execute(script.encode())
                    await conn.execute(
                        "INSERT INTO schema_version (version) VALUES (%s)", (version,)
                    )
        except psycopg.Error as exc:
            await pool.close()
            raise StorageError(f"cannot open the PostgreSQL store: {exc}") from exc
        except BaseException:
            await pool.close()
            raise
        return database

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool."""
        return self._pool

    @asynccontextmanager
    async def connection(
        self, failure: str, *, transaction: bool = False
    ) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection (in a transaction with ``transaction``) for one unit of work; a
        driver error in it becomes a :class:`StorageError` saying ``failure`` and its kind."""
        try:
            async with self._pool.connection() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except psycopg.Error as exc:
            raise StorageError(f"{failure}: {type(exc).__name__}") from exc

    async def rows(self, query: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of one read on a pooled connection."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query.encode(), args)
                return await cur.fetchall()
        except psycopg.DataError as exc:
            raise unstorable(exc) from exc
        except psycopg.Error as exc:
            raise StorageError(f"read failed: {type(exc).__name__}") from exc

    async def settled(self) -> int:
        """A transaction id below which every event has committed or never will: the next id,
        or the oldest id among the writers still holding the events table's lock."""
        ((xmax, writers),) = await self.rows(_WRITERS, ())
        return min([int(xmax), *(_widen(int(x), int(xmax)) for x in writers)])

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A lock named ``name`` over every process on the schema: a session advisory lock on a
        connection of its own, held meanwhile. A connection that is lost lets the lock go."""
        async with self._pool.connection() as conn:
            await conn.execute(_LOCK, (name,))
            try:
                yield
            finally:
                await conn.execute(_UNLOCK, (name,))

    async def listen(
        self, channel: str, heard: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]]:
        """Call ``heard`` with the payload of every notification on ``channel``, on a connection
        of its own, until the returned function is awaited. A lost connection ends it quietly
        (listening is a hint; readers still read periodically)."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as exc:
            raise StorageError(f"cannot listen: {type(exc).__name__}") from exc

        async def pump() -> None:
            try:
                async for note in conn.notifies():
                    heard(note.payload)
            except psycopg.Error as exc:
                log.warning("listening on %s ended: %s", channel, type(exc).__name__)

        task = asyncio.create_task(pump(), name=f"listen:{channel}")

        async def stop() -> None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await conn.close()

        return stop

    async def drop_schema(self) -> None:
        """Drop this database's schema and everything in it (tests and benchmarks)."""
        if not self.schema:
            raise InvalidInput("this store has no schema of its own to drop")
        async with self._pool.connection() as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )

    async def close(self) -> None:
        """Close the pool; closing twice is harmless."""
        await self._pool.close()


async def _configure(conn: AsyncConnection[Any]) -> None:
    """Read JSON as it was written: with orjson, which reads a number beyond 64 bits as the float
    it was (``jsonb`` prints ``1e20`` as ``100000000000000000000``, which Python's parser reads
    as an int too large to write again)."""
    set_json_loads(orjson.loads, conn)


def _widen(xid: int, near: int) -> int:
    """The 64-bit transaction id (epoch and all) of the 32-bit ``xid`` closest to ``near``.

    >>> _widen(7, (3 << 32) + 100), _widen(0xFFFFFFF0, (3 << 32) + 5)
    (12884901895, 12884901872)
    """
    full = (near & ~0xFFFFFFFF) | xid
    if full - near > 1 << 31:
        full -= 1 << 32
    elif near - full > 1 << 31:
        full += 1 << 32
    return full
