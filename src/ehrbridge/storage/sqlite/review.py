"""The review queue's port (:mod:`ehrbridge.review.queue`) on SQLite, on the database's thread.

Every change is one ``BEGIN IMMEDIATE`` transaction that reads the item, applies the transition
and writes it back, so the writers of every process on the file take turns and two operators
acting on one item at once see each other's change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson

from ehrbridge.errors import NotFound
from ehrbridge.review.queue import (
    Depth,
    Flag,
    ItemQuery,
    ReviewItem,
    check_query,
    flagged,
    item_from_row,
)
from ehrbridge.storage.rows import REVIEW_COLUMNS
from ehrbridge.storage.sqlite.database import SQLiteDatabase
from ehrbridge.times import utc
from ehrbridge.worldmodel.events import new_id

_FAILED = "review storage failed"
_UPSERT = (
    f"INSERT INTO review_items ({REVIEW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (workspace, item_id) DO UPDATE SET status = excluded.status, "
    "priority = excluded.priority, reason = excluded.reason, updated_at = excluded.updated_at, "
    "body = excluded.body"
)


def _item(row: Any) -> ReviewItem:
    return item_from_row(
        item_id=row[0],
        workspace=row[1],
        entity_type=row[2],
        entity_id=row[3],
        status=row[4],
        priority=row[5],
        reason=row[6],
        created_at=datetime.fromisoformat(row[7]),
        updated_at=datetime.fromisoformat(row[8]),
        body=orjson.loads(row[9]),
    )


def _write(conn: sqlite3.Connection, item: ReviewItem) -> None:
    conn.execute(
        _UPSERT,
        (
            item.item_id,
            item.workspace,
            item.entity_type,
            item.entity_id,
            item.status,
            item.priority,
            item.reason,
            utc(item.created_at),
            utc(item.updated_at),
            orjson.dumps(item.body()).decode(),
        ),
    )


class SQLiteReviewQueue:
    """Review items in the SQLite file."""

    def __init__(
        self, database: SQLiteDatabase, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.database = database
        #: the time items are flagged and decided at (the world model's clock)
        self.clock = clock

    async def flag(self, workspace: str, flag: Flag) -> ReviewItem:
        now = self.clock()

        def work(conn: sqlite3.Connection) -> ReviewItem:
            row = conn.execute(
                f"SELECT {REVIEW_COLUMNS} FROM review_items WHERE workspace = ? "
                "AND entity_type = ? AND entity_id = ? AND status = 'open'",
                (workspace, flag.entity_type, flag.entity_id),
            ).fetchone()
            current = None if row is None else _item(row)
            item = flagged(current, flag, workspace=workspace, item_id=new_id(), now=now)
            if item is not current:
                _write(conn, item)
            return item

        return await self.database.transaction(work, failure=_FAILED)

    async def update(
        self, workspace: str, item_id: str, change: Callable[[ReviewItem], ReviewItem]
    ) -> ReviewItem:
        def work(conn: sqlite3.Connection) -> ReviewItem:
            row = conn.execute(
                f"SELECT {REVIEW_COLUMNS} FROM review_items WHERE workspace = ? AND item_id = ?",
                (workspace, item_id),
            ).fetchone()
            if row is None:
                raise NotFound("no such review item in this workspace")
            current = _item(row)
            item = change(current)
            if item is not current:
                _write(conn, item)
            return item

        return await self.database.transaction(work, failure=_FAILED)

    async def item(self, workspace: str, item_id: str) -> ReviewItem | None:
        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                f"SELECT {REVIEW_COLUMNS} FROM review_items WHERE workspace = ? AND item_id = ?",
                (workspace, item_id),
            ).fetchone()

        row = await self.database.call(work, failure=_FAILED)
        return None if row is None else _item(row)

    async def items(self, workspace: str, query: ItemQuery) -> list[ReviewItem]:
        check_query(query)
        where, args = ["workspace = ?"], list[Any]([workspace])
        for clause, value in (
            ("status = ?", query.status),
            ("entity_type = ?", query.entity_type),
            ("instr(reason, ?) > 0", query.reason),
            ("priority = ?", query.priority),
            (
                "created_at <= ?",
                None if query.created_before is None else utc(query.created_before),
            ),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = (
            f"SELECT {REVIEW_COLUMNS} FROM review_items WHERE {' AND '.join(where)} "
            "ORDER BY priority, created_at, item_id LIMIT ?"
        )

        def work(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(sql, (*args, query.limit)).fetchall()

        return [_item(r) for r in await self.database.call(work, failure=_FAILED)]

    async def decided_per_day(self, workspace: str, since: datetime) -> list[tuple[date, int]]:
        def work(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT substr(updated_at, 1, 10) AS day, count(*) FROM review_items "
                "WHERE workspace = ? AND status = 'decided' AND updated_at >= ? "
                "GROUP BY day ORDER BY day",
                (workspace, utc(since)),
            ).fetchall()

        rows = await self.database.call(work, failure=_FAILED)
        return [(date.fromisoformat(day), n) for day, n in rows]

    async def depth(self, workspace: str) -> list[Depth]:
        def work(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT priority, count(*), min(created_at) FROM review_items "
                "WHERE workspace = ? AND status = 'open' GROUP BY priority ORDER BY priority",
                (workspace,),
            ).fetchall()

        rows = await self.database.call(work, failure=_FAILED)
        return [
            Depth(priority=p, count=n, oldest=datetime.fromisoformat(oldest))
            for p, n, oldest in rows
        ]
