"""The audit trail's rows on PostgreSQL: the insert that the world-model and security adapters
share (a write's entries go in its own transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from ehrbridge.audit import AuditEntry, check_audit_entries
from ehrbridge.storage.rows import AUDIT_COLUMNS, audit_values

INSERT = (
    f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
)


async def insert_audit(conn: AsyncConnection[Any], entries: Sequence[AuditEntry]) -> None:
    """Insert ``entries`` in the transaction open on ``conn``."""
    check_audit_entries(entries)
    async with conn.cursor() as cur:
        await cur.executemany(INSERT.encode(), [audit_values(e, e.at, e.phi) for e in entries])
