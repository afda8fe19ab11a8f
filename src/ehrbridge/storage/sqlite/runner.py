"""The runner's storage port (:mod:`ehrbridge.runner.store`) on SQLite, on the database's
connection and thread.

A lease is taken with ``BEGIN IMMEDIATE`` and one conditional upsert, so two runners on one file
never both hold it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ehrbridge.budget import MAX_PAUSE
from ehrbridge.connectors.source import PollOutcome
from ehrbridge.leases import Lease
from ehrbridge.storage.sqlite.database import SQLiteDatabase
from ehrbridge.times import utc

_ACQUIRE = """
INSERT INTO leases (workspace, name, holder, expires_at) VALUES (?, ?, ?, ?)
ON CONFLICT (workspace, name) DO UPDATE
SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leases.expires_at < ? OR leases.holder = excluded.holder
RETURNING holder, expires_at
"""
# A slot is due when its time has come, or lies beyond any pause (a wall clock that went back).
_TAKE_SLOT = """
INSERT INTO request_budgets (workspace, name, next_at) VALUES (?, ?, ?)
ON CONFLICT (workspace, name) DO UPDATE SET next_at = excluded.next_at
WHERE request_budgets.next_at <= ? OR request_budgets.next_at > ?
RETURNING next_at
"""
#: floats of Unix seconds hold about a quarter of a microsecond
_SLACK = 1e-6
_PAUSE = """
INSERT INTO request_budgets (workspace, name, next_at) VALUES (?, ?, ?)
ON CONFLICT (workspace, name) DO UPDATE SET next_at = max(next_at, excluded.next_at)
"""
_OUTCOME_COLUMNS = (
    "workspace, source, resource_type, started_at, finished_at, ok, error, fetched, events, "
    "unchanged"
)


def _outcome(row: Any) -> PollOutcome:
    return PollOutcome(
        workspace=row[0],
        source=row[1],
        resource_type=row[2],
        started_at=datetime.fromisoformat(row[3]),
        finished_at=datetime.fromisoformat(row[4]),
        ok=bool(row[5]),
        error=row[6],
        fetched=row[7],
        events=row[8],
        unchanged=row[9],
    )


#: what a failed write says
_FAILED = "runner storage failed"


class SQLiteRunnerStore:
    """Leases, cursors and poll outcomes in the world model's SQLite file."""

    def __init__(
        self, database: SQLiteDatabase, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.database = database
        #: one host shares a SQLite file, so the process clock decides expiry
        self.clock = clock

    async def acquire(self, workspace: str, name: str, holder: str, ttl: timedelta) -> Lease | None:
        now = self.clock()

        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                _ACQUIRE, (workspace, name, holder, utc(now + ttl), utc(now))
            ).fetchone()

        row = await self.database.transaction(work, failure=_FAILED)
        if row is None:
            return None
        return Lease(name=name, holder=row[0], expires_at=datetime.fromisoformat(row[1]))

    async def release(self, workspace: str, name: str, holder: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM leases WHERE workspace = ? AND name = ? AND holder = ?",
                (workspace, name, holder),
            )
            return cur.rowcount > 0

        released: bool = await self.database.transaction(work, failure=_FAILED)
        return released

    async def holder(self, workspace: str, name: str) -> Lease | None:
        now = utc(self.clock())

        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                "SELECT holder, expires_at FROM leases WHERE workspace = ? AND name = ? "
                "AND expires_at >= ?",
                (workspace, name, now),
            ).fetchone()

        row = await self.database.call(work, failure=_FAILED)
        if row is None:
            return None
        return Lease(name=name, holder=row[0], expires_at=datetime.fromisoformat(row[1]))

    async def get_cursor(self, workspace: str, source: str, resource_type: str) -> str | None:
        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                "SELECT cursor FROM cursors WHERE workspace = ? AND source = ? "
                "AND resource_type = ?",
                (workspace, source, resource_type),
            ).fetchone()

        row = await self.database.call(work, failure=_FAILED)
        return None if row is None else str(row[0])

    async def set_cursor(
        self, workspace: str, source: str, resource_type: str, cursor: str
    ) -> None:
        now = utc(self.clock())

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO cursors VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                "(workspace, source, resource_type) DO UPDATE SET cursor = excluded.cursor, "
                "updated_at = excluded.updated_at",
                (workspace, source, resource_type, cursor, now),
            )

        await self.database.transaction(work, failure=_FAILED)

    async def record_outcome(self, outcome: PollOutcome) -> None:
        o = outcome
        row = (
            o.workspace,
            o.source,
            o.resource_type,
            utc(o.started_at),
            utc(o.finished_at),
            int(o.ok),
            o.error,
            o.fetched,
            o.events,
            o.unchanged,
        )

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO poll_outcomes ({_OUTCOME_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", row
            )

        await self.database.transaction(work, failure=_FAILED)

    async def recent_outcomes(
        self, workspace: str, source: str | None = None, limit: int = 50
    ) -> list[PollOutcome]:
        def work(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                f"SELECT {_OUTCOME_COLUMNS} FROM (SELECT *, row_number() OVER "
                "(PARTITION BY source, resource_type ORDER BY id DESC) AS n FROM poll_outcomes "
                "WHERE workspace = ? AND (? IS NULL OR source = ?)) WHERE n <= ? "
                "ORDER BY source, resource_type, id DESC",
                (workspace, source, source, limit),
            ).fetchall()

        return [_outcome(r) for r in await self.database.call(work, failure=_FAILED)]

    async def known_versions(
        self, workspace: str, source: str, resource_type: str, record_ids: Collection[str]
    ) -> dict[str, str]:
        ids = orjson.dumps(list(record_ids)).decode()

        def work(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT record_id, token FROM record_versions WHERE workspace = ? AND source = ? "
                "AND resource_type = ? AND record_id IN (SELECT value FROM json_each(?))",
                (workspace, source, resource_type, ids),
            ).fetchall()

        return {row[0]: row[1] for row in await self.database.call(work, failure=_FAILED)}

    async def remember_versions(
        self, workspace: str, source: str, resource_type: str, tokens: Mapping[str, str]
    ) -> None:
        rows = [(workspace, source, resource_type, rid, token) for rid, token in tokens.items()]

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO record_versions VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                "(workspace, source, resource_type, record_id) "
                "DO UPDATE SET token = excluded.token",
                rows,
            )

        if rows:
            await self.database.transaction(work, failure=_FAILED)

    async def take_slot(self, workspace: str, name: str, interval: timedelta) -> timedelta:
        # Unix seconds of the process clock: every runner on a SQLite file is on one host.
        now = self.clock().timestamp()
        step = interval.total_seconds()
        stale = now + step + MAX_PAUSE.total_seconds()
        # A slot less than a microsecond off is due: float seconds carry rounding of a fraction
        # of one, and a wait that rounds to zero must never come back without the slot.
        due = now + _SLACK

        def work(conn: sqlite3.Connection) -> float:
            taken = conn.execute(_TAKE_SLOT, (workspace, name, now + step, due, stale)).fetchone()
            if taken is not None:
                return 0.0
            row = conn.execute(
                "SELECT next_at FROM request_budgets WHERE workspace = ? AND name = ?",
                (workspace, name),
            ).fetchone()
            return max(float(row[0]) - now, 0.0)

        wait: float = await self.database.transaction(work, failure=_FAILED)
        return timedelta(seconds=wait)

    async def pause(self, workspace: str, name: str, delay: timedelta) -> None:
        until = self.clock().timestamp() + min(delay, MAX_PAUSE).total_seconds()

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(_PAUSE, (workspace, name, until))

        await self.database.transaction(work, failure=_FAILED)
