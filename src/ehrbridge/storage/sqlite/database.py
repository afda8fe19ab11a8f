"""A SQLite database file (or ``:memory:``) as every SQLite adapter shares it (docs/design.md §4).

sqlite3 is synchronous; every call runs on one dedicated thread, so the event loop never blocks
and SQLite sees a single connection. Writes are serialised by ``BEGIN IMMEDIATE``, so log order
is commit order.

Several processes may share the file (``ehrbridge serve --workers``, runners, the command line).
Their writers queue on a lock file next to the database (``<file>-writer``, ``flock``) before
``BEGIN IMMEDIATE``: the kernel wakes the next one the moment a writer commits. SQLite's own busy
wait, which sleeps in steps of up to 100 ms, then only covers writers that don't take the lock
file (another program). With the busy wait alone a writer that commits and starts again at once
(an import) can keep the lock for seconds while a sleeping one (the API) never gets in; with the
lock file it waits for one transaction at most (``bench/sqlite_writers.py``: 3.0 s against
49 ms).

Opening migrates the file to the schema this code expects (``schema/``, numbered, applied once
each in order; :mod:`ehrbridge.storage.migrations`). A driver error that leaves this module is a
:class:`~ehrbridge.errors.StorageError` naming what failed and the error's kind, never its
message (which may quote patient data); the world-model adapter translates the two errors that
mean something to its callers (a constraint that lost a race, a value the file cannot hold).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover (not on Windows: SQLite's busy wait alone)
    fcntl = None  # type: ignore[assignment]

from ehrbridge.errors import StorageError
from ehrbridge.storage import migrations
from ehrbridge.times import utc

T = TypeVar("T")

#: how often a holder waiting for a named lock (:meth:`SQLiteDatabase.exclusive`) tries again
_LOCK_POLL = 0.005


class SQLiteDatabase:
    """One connection to a SQLite file on a thread of its own, shared by the adapters."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        #: the open lock file writers queue on (None in memory)
        self._writer_lock: int | None = None
        #: the named locks of an in-memory database (see :meth:`exclusive`)
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    async def open(cls, path: str | Path) -> SQLiteDatabase:
        """Open (creating and migrating if needed) the database at ``path``."""
        database = cls(path)
        await database.run(database._connect)
        return database

    @property
    def in_memory(self) -> bool:
        return self.path in ("", ":memory:")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the database's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            if not self.in_memory and fcntl is not None:
                # as SQLite does for -wal and -shm: whoever may write the file may take a turn
                mode = os.stat(self.path).st_mode & 0o666
                self._writer_lock = os.open(f"{self.path}-writer", os.O_RDWR | os.O_CREAT, mode)
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            if self._writer_lock is not None:
                os.close(self._writer_lock)
                self._writer_lock = None
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self.writing() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL, applied_at TEXT)"
            )
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            for version, sql in migrations.pending("sqlite", row[0] or 0):
                for statement in sql.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?)", (version, utc(datetime.now(UTC)))
                )

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection (use it on the database's thread only)."""
        if self._conn is None:
            raise StorageError("the store is closed")
        return self._conn

    async def call(
        self, fn: Callable[[sqlite3.Connection], T], *, failure: str = "read failed"
    ) -> T:
        """Run ``fn`` with the connection on the database's thread (a read); a SQLite error
        becomes a :class:`StorageError` saying ``failure`` and the error's kind."""
        try:
            return await self.run(lambda: fn(self.conn))
        except sqlite3.Error as exc:
            raise StorageError(f"{failure}: {type(exc).__name__}") from exc

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (call it on the database's thread, as :meth:`call` and
        :meth:`transaction` do): this process's turn among the file's writers, then
        ``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception. Not nested."""
        conn = self.conn
        if self._writer_lock is not None:
            assert fcntl is not None
            fcntl.flock(self._writer_lock, fcntl.LOCK_EX)
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot start a write: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            if self._writer_lock is not None:
                assert fcntl is not None
                fcntl.flock(self._writer_lock, fcntl.LOCK_UN)

    async def transaction(
        self, fn: Callable[[sqlite3.Connection], T], *, failure: str = "write failed"
    ) -> T:
        """Run ``fn`` in one write transaction (:meth:`writing`) on the database's thread; a
        SQLite error becomes a :class:`StorageError` saying ``failure`` and the error's kind."""

        def work() -> T:
            with self.writing() as conn:
                return fn(conn)

        try:
            return await self.run(work)
        except sqlite3.Error as exc:
            raise StorageError(f"{failure}: {type(exc).__name__}") from exc

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A lock named ``name`` over every process on the file: ``flock`` on ``<db>-<name>``.

        Polled rather than waited for in a thread, so a cancelled waiter leaves nothing behind
        that could take the lock later; in memory, a lock of this object."""
        if self.in_memory or fcntl is None:
            async with self._locks.setdefault(name, asyncio.Lock()):
                yield
            return
        # A descriptor of its own per hold: two holders in this process sharing one would not
        # exclude each other (flock locks belong to the open file, not the process).
        mode = os.stat(self.path).st_mode & 0o666
        fd = os.open(f"{self.path}-{name}", os.O_RDWR | os.O_CREAT, mode)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(_LOCK_POLL)
            yield
        finally:
            os.close(fd)  # closing the file lets the lock go

    async def close(self) -> None:
        """Close the connection and the lock file; closing twice is harmless."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self.run(conn.close)
        if self._writer_lock is not None:
            lock, self._writer_lock = self._writer_lock, None
            os.close(lock)
        self._executor.shutdown(wait=True)
