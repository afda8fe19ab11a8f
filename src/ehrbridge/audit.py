"""The audit trail's record, and how it is stored beside the world model (docs/design.md §11).

An :class:`AuditEntry` says who did what to which entity, when, and whether it touched patient
data, never the values. The API's security stores append entries on their own; a write to the
world model takes a :data:`WriteAudit` instead, and the store inserts the entries it returns in
the write's own transaction, so a write is never stored without its audit record (nor the
record without the write).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from ehrbridge.errors import InvalidInput

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from ehrbridge.worldmodel.planner import AppendResult

#: agent: reads patient data and writes at voice levels only (its write scope); operator: also
#: reviews (approves, rejects, resolves); admin: also manages keys and reads the audit trail
Role = Literal["agent", "operator", "admin"]
#: what an audited operation ended as
Outcome = Literal["ok", "denied", "not_found", "invalid", "error"]

#: the audit_log columns an entry fills, in the order of :func:`sqlite_row` / :func:`postgres_row`
AUDIT_COLUMNS = (
    "workspace, at, key_id, role, action, outcome, entity_type, entity_id, phi, request_id, details"
)
SQLITE_INSERT = f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({', '.join('?' * 11)})"
POSTGRES_INSERT = (
    f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
)


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """Who did what to which entity, when, and whether it touched patient data (no values)."""

    workspace: str
    at: datetime
    #: the key that acted (``cli`` for the command line)
    key_id: str
    role: Role
    #: the operation, e.g. ``ambient.context``, ``patients.search``, ``observations.write``
    action: str
    outcome: Outcome = "ok"
    entity_type: str | None = None
    entity_id: str | None = None
    #: whether the operation read or wrote patient data (PHI)
    phi: bool = True
    #: ties the records of one request together
    request_id: str | None = None
    #: a few non-PHI details (counts, the channel: ``http`` or ``mcp``)
    details: dict[str, str] = field(default_factory=dict)


#: Given what an append wrote, the audit entries to store in its transaction. The store calls it
#: inside the transaction, once per attempt (an append retried after a lost race calls it again).
WriteAudit = Callable[[Sequence["AppendResult"]], Sequence[AuditEntry]]


def check_audit_entries(entries: Sequence[AuditEntry]) -> None:
    """Refuse entries whose time has no zone (it would be stored as the wrong instant)."""
    for entry in entries:
        if entry.at.tzinfo is None:
            raise InvalidInput("an audit entry's time must carry a time zone")


def audit_select(
    mark: str, workspace: str, filters: Sequence[tuple[str, Any]], limit: int
) -> tuple[str, list[Any]]:
    """The audit trail query of both backends, newest first: ``workspace``, and each of the
    ``filters`` (``("at >=", since)``, ``("key_id =", key)``, ...) whose value is not None, with
    ``mark`` (``?`` or ``%s``) as the placeholder; the SQL and its arguments."""
    where, args = [f"workspace = {mark}"], [workspace]
    for clause, value in filters:
        if value is not None:
            where.append(f"{clause} {mark}")
            args.append(value)
    query = (
        f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} "
        f"ORDER BY at DESC, id DESC LIMIT {mark}"
    )
    return query, [*args, limit]


def insert_sqlite(conn: sqlite3.Connection, entries: Sequence[AuditEntry]) -> None:
    """Insert ``entries`` in the transaction open on ``conn``."""
    check_audit_entries(entries)
    conn.executemany(SQLITE_INSERT, [sqlite_row(e) for e in entries])


async def insert_postgres(conn: AsyncConnection[Any], entries: Sequence[AuditEntry]) -> None:
    """Insert ``entries`` in the transaction open on ``conn``."""
    check_audit_entries(entries)
    async with conn.cursor() as cur:
        await cur.executemany(POSTGRES_INSERT.encode(), [postgres_row(e) for e in entries])


def sqlite_row(entry: AuditEntry) -> tuple[Any, ...]:
    """``entry`` as :data:`SQLITE_INSERT`'s parameters (the time as UTC ISO text, as the world
    model's tables store times; ``phi`` as 0/1)."""
    at = entry.at.astimezone(UTC).isoformat(timespec="microseconds")
    return _row(entry, at, int(entry.phi))


def postgres_row(entry: AuditEntry) -> tuple[Any, ...]:
    """``entry`` as :data:`POSTGRES_INSERT`'s parameters."""
    return _row(entry, entry.at, entry.phi)


def _row(e: AuditEntry, at: Any, phi: Any) -> tuple[Any, ...]:
    details = orjson.dumps(e.details).decode()
    return (
        e.workspace,
        at,
        e.key_id,
        e.role,
        e.action,
        e.outcome,
        e.entity_type,
        e.entity_id,
        phi,
        e.request_id,
        details,
    )
