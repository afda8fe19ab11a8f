"""API keys and the audit trail on PostgreSQL, on the database's pool.

Authentication is one read by the ``key_id`` unique index (or none, on a cache hit); a batch of
audit entries is one transaction, sent with ``executemany`` (pipelined by psycopg).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ehrbridge.api.store import (
    DEFAULT_AGENT_WRITE_TYPES,
    ApiKey,
    AuditEntry,
    Principal,
    Role,
)
from ehrbridge.audit import check_audit_entries
from ehrbridge.storage.postgres.audit import insert_audit
from ehrbridge.storage.postgres.database import PostgresDatabase
from ehrbridge.storage.rows import audit_select
from ehrbridge.storage.security import (
    KeyCache,
    StoredKey,
    authenticate,
    check_query,
    new_stored_key,
)

#: what a failed read or write says
_FAILED = "security storage failed"
_KEY_COLUMNS = "key_id, workspace, role, name, write_types, created_at, revoked_at"


class PostgresSecurityStore:
    """API keys and the audit trail in the world model's PostgreSQL database."""

    def __init__(
        self,
        database: PostgresDatabase,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache: KeyCache | None = None,
    ) -> None:
        self.database = database
        #: the time keys are created and revoked at (the world model's clock)
        self.clock = clock
        self.cache = cache or KeyCache()

    async def _fetch(
        self,
        query: str,
        args: Sequence[Any],
        audit: Callable[[list[Any]], Sequence[AuditEntry]] | None = None,
    ) -> list[Any]:
        """The rows ``query`` returns; with ``audit``, its entries for them are stored in the
        same transaction."""
        async with self.database.connection(_FAILED, transaction=True) as conn:
            cur = await conn.execute(query.encode(), args)
            rows = await cur.fetchall() if cur.description is not None else []
            if audit is not None:
                await insert_audit(conn, audit(rows))
            return rows

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
        await self._fetch(
            "INSERT INTO api_keys (key_id, workspace, role, name, write_types, secret_hash, "
            "created_at) VALUES (%s, %s, %s, %s, %s::text[], %s, %s)",
            (
                key.key_id,
                workspace,
                key.role,
                name,
                sorted(write_types),
                issued.secret_hash,
                key.created_at,
            ),
            None if audit is None else lambda _: audit(key),
        )
        return issued.secret, key

    async def authenticate(self, secret: str) -> Principal | None:
        return await authenticate(secret, self.cache, self._read_key)

    async def _read_key(self, key_id: str) -> StoredKey | None:
        rows = await self._fetch(
            "SELECT workspace, role, name, write_types, secret_hash, revoked_at "
            "FROM api_keys WHERE key_id = %s",
            (key_id,),
        )
        if not rows:
            return None
        row = rows[0]
        principal = Principal(
            workspace=row[0], key_id=key_id, role=row[1], name=row[2], write_types=frozenset(row[3])
        )
        return StoredKey(secret_hash=row[4], principal=principal, revoked=row[5] is not None)

    async def revoke_key(
        self,
        workspace: str,
        key_id: str,
        *,
        audit: Callable[[bool], Sequence[AuditEntry]] | None = None,
    ) -> bool:
        # revoking twice keeps the first revocation's time
        rows = await self._fetch(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, %s) "
            "WHERE workspace = %s AND key_id = %s RETURNING key_id",
            (self.clock(), workspace, key_id),
            None if audit is None else lambda found: audit(bool(found)),
        )
        self.cache.drop(key_id)
        return bool(rows)

    async def list_keys(self, workspace: str) -> list[ApiKey]:
        rows = await self._fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE workspace = %s ORDER BY created_at, id",
            (workspace,),
        )
        return [
            ApiKey(
                key_id=r[0],
                workspace=r[1],
                role=r[2],
                name=r[3],
                write_types=frozenset(r[4]),
                created_at=r[5],
                revoked_at=r[6],
            )
            for r in rows
        ]

    # --- audit ------------------------------------------------------------------------------

    async def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        check_audit_entries(entries)
        if not entries:
            return
        async with self.database.connection(_FAILED, transaction=True) as conn:
            await insert_audit(conn, entries)

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
            ("at >=", since),
            ("at <", until),
            ("key_id =", key_id),
            ("action =", action),
            ("entity_type =", entity_type),
            ("entity_id =", entity_id),
        ]
        rows = await self._fetch(*audit_select("%s", workspace, filters, limit))
        return [
            AuditEntry(
                workspace=r[0],
                at=r[1],
                key_id=r[2],
                role=r[3],
                action=r[4],
                outcome=r[5],
                entity_type=r[6],
                entity_id=r[7],
                phi=r[8],
                request_id=r[9],
                details=r[10],
            )
            for r in rows
        ]
