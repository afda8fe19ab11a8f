"""The review queue's port (:mod:`ehrbridge.review.queue`) on PostgreSQL, on the database's pool.

Every change is one transaction that locks the item's row (``FOR UPDATE``), applies the
transition and writes it back, so two operators acting on one item at once are serialised and
the second sees the first's change. Two flags of one entity racing to open its item meet at the
partial unique index (one open item per entity); the loser retries and joins the winner's item.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson
import psycopg
from psycopg import AsyncConnection, errors

from ehrbridge.errors import NotFound, StorageError
from ehrbridge.review.queue import (
    Depth,
    Flag,
    ItemQuery,
    ReviewItem,
    check_query,
    flagged,
    item_from_row,
)
from ehrbridge.storage.postgres.database import PostgresDatabase
from ehrbridge.storage.rows import REVIEW_COLUMNS
from ehrbridge.worldmodel.events import new_id

_FAILED = "review storage failed"
_UPSERT = (
    f"INSERT INTO review_items ({REVIEW_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s::jsonb) ON CONFLICT (workspace, item_id) DO UPDATE SET status = excluded.status, "
    "priority = excluded.priority, reason = excluded.reason, updated_at = excluded.updated_at, "
    "body = excluded.body"
)
#: how often a flag that lost the race to open an entity's item tries again
_FLAG_ATTEMPTS = 3


def _item(row: Any) -> ReviewItem:
    return item_from_row(
        item_id=row[0],
        workspace=row[1],
        entity_type=row[2],
        entity_id=row[3],
        status=row[4],
        priority=row[5],
        reason=row[6],
        created_at=row[7],
        updated_at=row[8],
        body=row[9],
    )


async def _write(conn: AsyncConnection[Any], item: ReviewItem) -> None:
    await conn.execute(
        _UPSERT.encode(),
        (
            item.item_id,
            item.workspace,
            item.entity_type,
            item.entity_id,
            item.status,
            item.priority,
            item.reason,
            item.created_at,
            item.updated_at,
            orjson.dumps(item.body()).decode(),
        ),
    )


class PostgresReviewQueue:
    """Review items in the PostgreSQL database."""

    def __init__(
        self,
        database: PostgresDatabase,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.database = database
        #: the time items are flagged and decided at (the world model's clock)
        self.clock = clock

    async def flag(self, workspace: str, flag: Flag) -> ReviewItem:
        now = self.clock()
        for attempt in range(_FLAG_ATTEMPTS):
            try:
                async with self.database.pool.connection() as conn, conn.transaction():
                    cur = await conn.execute(
                        f"SELECT {REVIEW_COLUMNS} FROM review_items WHERE workspace = %s "
                        "AND entity_type = %s AND entity_id = %s AND status = 'open' "
                        "FOR UPDATE".encode(),
                        (workspace, flag.entity_type, flag.entity_id),
                    )
                    row = await cur.fetchone()
                    current = None if row is None else _item(row)
                    item = flagged(current, flag, workspace=workspace, item_id=new_id(), now=now)
                    if item is not current:
                        await _write(conn, item)
                    return item
            except errors.UniqueViolation as exc:  # another flag opened the entity's item
                if attempt == _FLAG_ATTEMPTS - 1:
                    raise StorageError(f"{_FAILED}: {type(exc).__name__}") from exc
            except psycopg.Error as exc:
                raise StorageError(f"{_FAILED}: {type(exc).__name__}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def update(
        self, workspace: str, item_id: str, change: Callable[[ReviewItem], ReviewItem]
    ) -> ReviewItem:
        async with self.database.connection(_FAILED, transaction=True) as conn:
            cur = await conn.execute(
                f"SELECT {REVIEW_COLUMNS} FROM review_items WHERE workspace = %s AND item_id = %s "
                "FOR UPDATE".encode(),
                (workspace, item_id),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound("no such review item in this workspace")
            current = _item(row)
            item = change(current)
            if item is not current:
                await _write(conn, item)
            return item

    async def item(self, workspace: str, item_id: str) -> ReviewItem | None:
        rows = await self.database.rows(
            f"SELECT {REVIEW_COLUMNS} FROM review_items WHERE workspace = %s AND item_id = %s",
            (workspace, item_id),
        )
        return _item(rows[0]) if rows else None

    async def items(self, workspace: str, query: ItemQuery) -> list[ReviewItem]:
        check_query(query)
        where, args = ["workspace = %s"], list[Any]([workspace])
        for clause, value in (
            ("status = %s", query.status),
            ("entity_type = %s", query.entity_type),
            ("strpos(reason, %s) > 0", query.reason),
            ("priority = %s", query.priority),
            ("created_at <= %s", query.created_before),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = await self.database.rows(
            f"SELECT {REVIEW_COLUMNS} FROM review_items WHERE {' AND '.join(where)} "
            "ORDER BY priority, created_at, item_id LIMIT %s",
            (*args, query.limit),
        )
        return [_item(r) for r in rows]

    async def decided_per_day(self, workspace: str, since: datetime) -> list[tuple[date, int]]:
        rows = await self.database.rows(
            "SELECT (updated_at AT TIME ZONE 'UTC')::date AS day, count(*) FROM review_items "
            "WHERE workspace = %s AND status = 'decided' AND updated_at >= %s "
            "GROUP BY day ORDER BY day",
            (workspace, since),
        )
        return [(day, int(n)) for day, n in rows]

    async def depth(self, workspace: str) -> list[Depth]:
        rows = await self.database.rows(
            "SELECT priority, count(*), min(created_at) FROM review_items "
            "WHERE workspace = %s AND status = 'open' GROUP BY priority ORDER BY priority",
            (workspace,),
        )
        return [Depth(priority=p, count=int(n), oldest=oldest) for p, n, oldest in rows]
