"""The audit trail's rows on SQLite: the insert that the world-model and security adapters share
(a write's entries go in its own transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from ehrbridge.audit import AuditEntry, check_audit_entries
from ehrbridge.storage.rows import AUDIT_COLUMNS, audit_values

INSERT = f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({', '.join('?' * 11)})"


def audit_row(entry: AuditEntry) -> tuple[Any, ...]:
    """``entry`` as :data:`INSERT`'s parameters (the time as UTC ISO text, as the world model's
    tables store times; ``phi`` as 0/1)."""
    at = entry.at.astimezone(UTC).isoformat(timespec="microseconds")
    return audit_values(entry, at, int(entry.phi))


def insert_audit(conn: sqlite3.Connection, entries: Sequence[AuditEntry]) -> None:
    """Insert ``entries`` in the transaction open on ``conn``."""
    check_audit_entries(entries)
    conn.executemany(INSERT, [audit_row(e) for e in entries])
