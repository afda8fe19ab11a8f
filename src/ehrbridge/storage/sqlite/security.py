"""API keys and the audit trail on SQLite, on the database's connection and thread.

Authentication is one read by the ``key_id`` unique index (or none, on a cache hit). A batch of
audit entries is written in one ``BEGIN IMMEDIATE`` transaction, shared with the batches of other
requests that arrive while the previous commit runs (a group commit); each call returns once its
own entries are committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from ehrbridge.api.store import (
    DEFAULT_AGENT_WRITE_TYPES,
    ApiKey,
    AuditEntry,
    Principal,
    Role,
)
from ehrbridge.audit import check_audit_entries
from ehrbridge.storage.rows import audit_select
from ehrbridge.storage.security import (
    KeyCache,
    StoredKey,
    authenticate,
    check_query,
    new_stored_key,
)
from ehrbridge.storage.sqlite.audit import INSERT, audit_row, insert_audit
from ehrbridge.storage.sqlite.database import SQLiteDatabase
from ehrbridge.times import utc

#: what a failed read or write says
_FAILED = "security storage failed"

_KEY_COLUMNS = "key_id, workspace, role, name, write_types, created_at, revoked_at"


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row[0],
        workspace=row[1],
        role=row[2],
        name=row[3],
        write_types=frozenset(orjson.loads(row[4])),
        created_at=datetime.fromisoformat(row[5]),
        revoked_at=None if row[6] is None else datetime.fromisoformat(row[6]),
    )


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        workspace=row[0],
        at=datetime.fromisoformat(row[1]),
        key_id=row[2],
        role=row[3],
        action=row[4],
        outcome=row[5],
        entity_type=row[6],
        entity_id=row[7],
        phi=bool(row[8]),
        request_id=row[9],
        details=orjson.loads(row[10]),
    )


#: audit rows of one call, and the future its caller waits on
_Waiting = tuple[list[tuple[Any, ...]], asyncio.Future[None]]


class SQLiteSecurityStore:
    """API keys and the audit trail in the world model's SQLite file."""

    def __init__(
        self,
        database: SQLiteDatabase,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache: KeyCache | None = None,
    ) -> None:
        self.database = database
        #: the time keys are created and revoked at (the world model's clock)
        self.clock = clock
        self.cache = cache or KeyCache()
        #: audit rows waiting for the next commit, with who waits for it
        self._pending: list[_Waiting] = []
        self._committer: asyncio.Task[None] | None = None

    async def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.database.call(fn, failure=_FAILED)

    # --- keys -------------------------------------------------------------------------------

    async def create_key(
        self,
        workspace: str,
        role: Role,
        *,
        name: str = "",
        write_types: frozenset[str] = DEFAULT_AGENT_WRITE_TYPES,
        audit: Callable[[ApiKey], Sequence[AuditEntry]] | None = None,
    ) -> tuple[str, ApiKey]:
        issued, key = new_stored_key(workspace, role, name, write_types, self.clock())
        row = (
            key.key_id,
            workspace,
            key.role,
            name,
            orjson.dumps(sorted(write_types)).decode(),
            issued.secret_hash,
            utc(key.created_at),
        )

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO api_keys (key_id, workspace, role, name, write_types, secret_hash, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            if audit is not None:
                insert_audit(conn, audit(key))

        await self.database.transaction(work, failure=_FAILED)
        return issued.secret, key

    async def authenticate(self, secret: str) -> Principal | None:
        return await authenticate(secret, self.cache, self._read_key)

    async def _read_key(self, key_id: str) -> StoredKey | None:
        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                "SELECT workspace, role, name, write_types, secret_hash, revoked_at "
                "FROM api_keys WHERE key_id = ?",
                (key_id,),
            ).fetchone()

        row = await self._call(work)
        if row is None:
            return None
        principal = Principal(
            workspace=row[0],
            key_id=key_id,
            role=row[1],
            name=row[2],
            write_types=frozenset(orjson.loads(row[3])),
        )
        return StoredKey(secret_hash=row[4], principal=principal, revoked=row[5] is not None)

    async def revoke_key(
        self,
        workspace: str,
        key_id: str,
        *,
        audit: Callable[[bool], Sequence[AuditEntry]] | None = None,
    ) -> bool:
        now = utc(self.clock())

        def work(conn: sqlite3.Connection) -> bool:
            # revoking twice keeps the first revocation's time
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) "
                "WHERE workspace = ? AND key_id = ?",
                (now, workspace, key_id),
            )
            if audit is not None:
                insert_audit(conn, audit(cur.rowcount > 0))
            return cur.rowcount > 0

        revoked: bool = await self.database.transaction(work, failure=_FAILED)
        self.cache.drop(key_id)
        return revoked

    async def list_keys(self, workspace: str) -> list[ApiKey]:
        def work(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE workspace = ? ORDER BY created_at, id",
                (workspace,),
            ).fetchall()

        return [_key(r) for r in await self._call(work)]

    # --- audit ------------------------------------------------------------------------------

    async def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        check_audit_entries(entries)
        rows = [audit_row(e) for e in entries]
        if not rows:
            return
        # Group commit: rows that arrive while a commit runs go together in the next one, so
        # concurrent requests share a transaction; each caller still returns only once its own
        # rows are committed (or raises if that commit failed).
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())
        await asyncio.shield(done)

    async def _commit_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._commit(batch)
            except BaseException:
                for _, waiter in [*batch, *self._pending]:
                    waiter.cancel()
                raise

    async def _commit(
        self, batch: list[tuple[list[tuple[Any, ...]], asyncio.Future[None]]]
    ) -> None:
        """One transaction for the whole batch; if it fails, each caller's rows on their own,
        so one caller's bad rows never fail another's."""
        try:
            await self.database.transaction(
                _insert_audit([row for rows, _ in batch for row in rows]), failure=_FAILED
            )
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for rows, waiter in batch:
                try:
                    await self.database.transaction(_insert_audit(rows), failure=_FAILED)
                except Exception as alone:
                    _settle(waiter, alone)
                else:
                    _settle(waiter, None)
        else:
            for _, waiter in batch:
                _settle(waiter, None)

    async def query_audit(
        self,
        workspace: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        key_id: str | None = None,
        action: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        check_query(since, until, limit)
        filters = [
            ("at >=", None if since is None else utc(since)),
            ("at <", None if until is None else utc(until)),
            ("key_id =", key_id),
            ("action =", action),
            ("entity_type =", entity_type),
            ("entity_id =", entity_id),
        ]
        query, args = audit_select("?", workspace, filters, limit)

        def work(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(query, args).fetchall()

        return [_entry(r) for r in await self._call(work)]


def _insert_audit(rows: list[tuple[Any, ...]]) -> Callable[[sqlite3.Connection], None]:
    def work(conn: sqlite3.Connection) -> None:
        conn.executemany(INSERT, rows)

    return work


def _settle(waiter: asyncio.Future[None], error: Exception | None) -> None:
    if waiter.done():
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)
