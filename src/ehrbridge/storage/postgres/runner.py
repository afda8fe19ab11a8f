"""The runner's storage port (:mod:`ehrbridge.runner.store`) on PostgreSQL, on the database's pool.

Several runner processes on several hosts share it: a lease is one ``INSERT … ON CONFLICT DO
UPDATE … WHERE`` statement, decided by the database's clock, so exactly one holder wins.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any

from ehrbridge.budget import MAX_PAUSE
from ehrbridge.connectors.source import PollOutcome
from ehrbridge.leases import Lease
from ehrbridge.storage.postgres.database import PostgresDatabase

_ACQUIRE = """
INSERT INTO leases (workspace, name, holder, expires_at) VALUES (%s, %s, %s, now() + %s)
ON CONFLICT (workspace, name) DO UPDATE
SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leases.expires_at < now() OR leases.holder = excluded.holder
RETURNING holder, expires_at
"""
# A slot is due when its time has come (by the database's clock, the one all runners share), or
# lies beyond any pause (a database clock that went back).
_TAKE_SLOT = """
INSERT INTO request_budgets (workspace, name, next_at) VALUES (%s, %s, now() + %s)
ON CONFLICT (workspace, name) DO UPDATE SET next_at = excluded.next_at
WHERE request_budgets.next_at <= now() OR request_budgets.next_at > now() + %s
RETURNING 1
"""
_PAUSE = """
INSERT INTO request_budgets (workspace, name, next_at) VALUES (%s, %s, now() + %s)
ON CONFLICT (workspace, name) DO UPDATE
SET next_at = greatest(request_budgets.next_at, excluded.next_at)
"""
_OUTCOME_COLUMNS = (
    "workspace, source, resource_type, started_at, finished_at, ok, error, fetched, events, "
    "unchanged"
)


class PostgresRunnerStore:
    """Leases, cursors and poll outcomes in the world model's PostgreSQL database."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database

    async def _fetch(self, query: str, args: tuple[Any, ...]) -> list[Any]:
        async with self.database.connection("runner storage failed") as conn:
            cur = await conn.execute(query.encode(), args)
            return await cur.fetchall() if cur.description is not None else []

    async def acquire(self, workspace: str, name: str, holder: str, ttl: timedelta) -> Lease | None:
        rows = await self._fetch(_ACQUIRE, (workspace, name, holder, ttl))
        if not rows:
            return None
        return Lease(name=name, holder=rows[0][0], expires_at=rows[0][1])

    async def release(self, workspace: str, name: str, holder: str) -> bool:
        rows = await self._fetch(
            "DELETE FROM leases WHERE workspace = %s AND name = %s AND holder = %s "
            "RETURNING holder",
            (workspace, name, holder),
        )
        return bool(rows)

    async def holder(self, workspace: str, name: str) -> Lease | None:
        rows = await self._fetch(
            "SELECT holder, expires_at FROM leases WHERE workspace = %s AND name = %s "
            "AND expires_at >= now()",
            (workspace, name),
        )
        return Lease(name=name, holder=rows[0][0], expires_at=rows[0][1]) if rows else None

    async def get_cursor(self, workspace: str, source: str, resource_type: str) -> str | None:
        rows = await self._fetch(
            "SELECT cursor FROM cursors WHERE workspace = %s AND source = %s "
            "AND resource_type = %s",
            (workspace, source, resource_type),
        )
        return str(rows[0][0]) if rows else None

    async def set_cursor(
        self, workspace: str, source: str, resource_type: str, cursor: str
    ) -> None:
        await self._fetch(
            "INSERT INTO cursors (workspace, source, resource_type, cursor) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (workspace, source, resource_type) "
            "DO UPDATE SET cursor = excluded.cursor, updated_at = now()",
            (workspace, source, resource_type, cursor),
        )

    async def record_outcome(self, outcome: PollOutcome) -> None:
        o = outcome
        await self._fetch(
            f"INSERT INTO poll_outcomes ({_OUTCOME_COLUMNS}) VALUES ({', '.join(['%s'] * 10)})",
            (
                o.workspace,
                o.source,
                o.resource_type,
                o.started_at,
                o.finished_at,
                o.ok,
                o.error,
                o.fetched,
                o.events,
                o.unchanged,
            ),
        )

    async def recent_outcomes(
        self, workspace: str, source: str | None = None, limit: int = 50
    ) -> list[PollOutcome]:
        rows = await self._fetch(
            f"SELECT {_OUTCOME_COLUMNS} FROM (SELECT *, row_number() OVER "
            "(PARTITION BY source, resource_type ORDER BY id DESC) AS n FROM poll_outcomes "
            "WHERE workspace = %s AND (%s::text IS NULL OR source = %s)) AS recent "
            "WHERE n <= %s ORDER BY source, resource_type, id DESC",
            (workspace, source, source, limit),
        )
        return [
            PollOutcome(
                workspace=r[0],
                source=r[1],
                resource_type=r[2],
                started_at=r[3],
                finished_at=r[4],
                ok=r[5],
                error=r[6],
                fetched=r[7],
                events=r[8],
                unchanged=r[9],
            )
            for r in rows
        ]

    async def known_versions(
        self, workspace: str, source: str, resource_type: str, record_ids: Collection[str]
    ) -> dict[str, str]:
        rows = await self._fetch(
            "SELECT record_id, token FROM record_versions WHERE workspace = %s AND source = %s "
            "AND resource_type = %s AND record_id = ANY(%s)",
            (workspace, source, resource_type, list(record_ids)),
        )
        return {row[0]: row[1] for row in rows}

    async def remember_versions(
        self, workspace: str, source: str, resource_type: str, tokens: Mapping[str, str]
    ) -> None:
        if not tokens:
            return
        await self._fetch(
            "INSERT INTO record_versions (workspace, source, resource_type, record_id, token) "
            "SELECT %s, %s, %s, r, t FROM unnest(%s::text[], %s::text[]) AS u(r, t) "
            "ON CONFLICT (workspace, source, resource_type, record_id) "
            "DO UPDATE SET token = excluded.token",
            (workspace, source, resource_type, list(tokens), list(tokens.values())),
        )

    async def take_slot(self, workspace: str, name: str, interval: timedelta) -> timedelta:
        if await self._fetch(_TAKE_SLOT, (workspace, name, interval, interval + MAX_PAUSE)):
            return timedelta(0)
        rows = await self._fetch(
            "SELECT greatest(extract(epoch FROM next_at - now()), 0)::float8 "
            "FROM request_budgets WHERE workspace = %s AND name = %s",
            (workspace, name),
        )
        return timedelta(seconds=rows[0][0]) if rows else timedelta(0)

    async def pause(self, workspace: str, name: str, delay: timedelta) -> None:
        await self._fetch(_PAUSE, (workspace, name, min(delay, MAX_PAUSE)))
