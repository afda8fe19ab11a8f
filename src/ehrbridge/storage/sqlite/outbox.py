"""The outbox's storage port (:mod:`ehrbridge.outbound.outbox`) on SQLite, on the database's
thread.

Every change is one ``BEGIN IMMEDIATE`` transaction, so the writers of every process on the file
take turns: a claim reads the ready lane heads and takes them before any other claim, settle or
enqueue can change a lane, which is what keeps one item per lane in flight. Every write after a
claim names the claim's epoch (``WHERE id = ? AND epoch = ? AND status = 'processing'``): a worker
whose claim was taken over changes nothing. Times are the store's clock (the world model's, as
the review queue's are).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ehrbridge.errors import NotFound, OutboxConflict
from ehrbridge.outbound.outbox import (
    PARKED,
    SINK_STATE_STALE,
    Attempt,
    Claim,
    ItemQuery,
    ItemStatus,
    NewItem,
    OutboxItem,
    Settle,
    SinkDepth,
    SinkState,
)
from ehrbridge.storage.outbox import (
    ITEM_COLUMNS,
    LOST_LEASE,
    check_claim,
    check_items,
    check_query,
    check_settle,
    item_from_row,
    json_text,
    query_filters,
    ready,
)
from ehrbridge.storage.sqlite.database import SQLiteDatabase
from ehrbridge.times import utc
from ehrbridge.worldmodel.events import new_id
from ehrbridge.worldmodel.store import LogPosition

_FAILED = "outbox storage failed"
_INSERT = (
    "INSERT INTO outbox_items (id, workspace, sink, key, lane, entity_type, entity_id, event_id, "
    "operation, payload, workflow, step, status, created_at, updated_at, next_attempt_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) "
    "ON CONFLICT (workspace, key) DO NOTHING"
)
_CLAIMABLE = (
    f"SELECT {ITEM_COLUMNS}, claimed_at FROM outbox_items i WHERE {ready('?')} "
    "ORDER BY i.position LIMIT ?"
)
#: the claim a later write must name: the item, its epoch, still processing
_FENCE = "workspace = ? AND id = ? AND epoch = ? AND status = 'processing'"
_RECORD = (
    "INSERT INTO outbox_attempts (workspace, item_id, epoch, started_at, finished_at, outcome, "
    "status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _item(row: Any) -> OutboxItem:
    return item_from_row(row, time=datetime.fromisoformat, json=orjson.loads)


def _parked(conn: sqlite3.Connection, workspace: str, item_id: str, action: str) -> None:
    row = conn.execute(
        "SELECT status FROM outbox_items WHERE workspace = ? AND id = ?", (workspace, item_id)
    ).fetchone()
    if row is None:
        raise NotFound("no such outbox item in this workspace")
    if ItemStatus(row[0]) not in PARKED:
        raise OutboxConflict(
            item_id, f"only a dead or conflict item can be {action}; this one is {row[0]}"
        )


class SQLiteOutbox:
    """Outbox items, attempts, feeder cursors and sink states in the SQLite file."""

    def __init__(
        self, database: SQLiteDatabase, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.database = database
        #: the time of due times, leases and every timestamp (the world model's clock)
        self.clock = clock
        #: what :meth:`watch` calls when items become due, per workspace
        self._watchers: dict[str, set[Callable[[], None]]] = {}

    def _wake(self, workspace: str) -> None:
        for wake in list(self._watchers.get(workspace, ())):
            wake()

    async def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.database.transaction(work, failure=_FAILED)

    async def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.database.call(work, failure=_FAILED)

    async def enqueue(
        self,
        workspace: str,
        items: Sequence[NewItem],
        *,
        cursor: tuple[str, LogPosition] | None = None,
    ) -> list[OutboxItem]:
        items = list(items)
        check_items(items)
        now = utc(self.clock())
        keys = list(dict.fromkeys(i.key for i in items))
        rows = [
            (
                new_id(),
                workspace,
                i.sink,
                i.key,
                i.lane,
                i.entity_type,
                i.entity_id,
                i.event_id,
                i.operation,
                json_text(i.payload, "an outbox item's payload"),
                i.workflow,
                i.step,
                now,
                now,
                now,
            )
            for i in {i.key: i for i in items}.values()
        ]

        def work(conn: sqlite3.Connection) -> tuple[list[Any], bool]:
            before = conn.total_changes
            conn.executemany(_INSERT, rows)
            added = conn.total_changes > before
            if cursor is not None:
                name, position = cursor
                conn.execute(
                    "INSERT INTO outbox_cursors VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                    "(workspace, name) DO UPDATE SET tx = excluded.tx, seq = excluded.seq, "
                    "updated_at = excluded.updated_at",
                    (workspace, name, position.tx, position.seq, now),
                )
            found = conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE workspace = ? "
                "AND key IN (SELECT value FROM json_each(?))",
                (workspace, orjson.dumps(keys).decode()),
            ).fetchall()
            return found, added

        found, added = await self._write(work)
        if added:
            self._wake(workspace)
        by_key = {item.key: item for item in map(_item, found)}
        return [by_key[key] for key in keys]

    async def cursor(self, workspace: str, name: str) -> LogPosition | None:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT tx, seq FROM outbox_cursors WHERE workspace = ? AND name = ?",
                (workspace, name),
            ).fetchone()
        )
        return None if row is None else LogPosition(tx=row[0], seq=row[1])

    async def claim(
        self, workspace: str, sink: str, holder: str, *, limit: int, lease: timedelta
    ) -> list[Claim]:
        check_claim(limit, lease)
        moment = self.clock()
        now, until = utc(moment), utc(moment + lease)

        def work(conn: sqlite3.Connection) -> list[Claim]:
            found = conn.execute(_CLAIMABLE, (workspace, sink, now, now, now, limit)).fetchall()
            claims = []
            for row in found:
                before = _item(row)
                if before.status is ItemStatus.PROCESSING:  # its lease ran out: taken over
                    sent = " after a send started" if before.in_doubt else ""
                    conn.execute(
                        _RECORD,
                        (
                            workspace,
                            before.id,
                            before.epoch,
                            row[25] or now,
                            now,
                            LOST_LEASE,
                            None,
                            f"the lease of {before.holder} ran out{sent}",
                        ),
                    )
                taken = conn.execute(
                    "UPDATE outbox_items SET status = 'processing', holder = ?, "
                    "lease_until = ?, claimed_at = ?, epoch = epoch + 1, updated_at = ? "
                    f"WHERE position = ? RETURNING {ITEM_COLUMNS}",
                    (holder, until, now, now, before.position),
                ).fetchone()
                item = _item(taken)
                claims.append(Claim(item=item, epoch=item.epoch, in_doubt=item.in_doubt))
            return claims

        claims: list[Claim] = await self._write(work)
        return claims

    async def renew(
        self, workspace: str, held: Sequence[tuple[str, int]], holder: str, lease: timedelta
    ) -> set[str]:
        check_claim(1, lease)
        moment = self.clock()
        now, until = utc(moment), utc(moment + lease)

        def work(conn: sqlite3.Connection) -> set[str]:
            renewed = set()
            for item_id, epoch in held:
                row = conn.execute(
                    f"UPDATE outbox_items SET lease_until = ?, updated_at = ? WHERE {_FENCE} "
                    "AND holder = ? RETURNING id",
                    (until, now, workspace, item_id, epoch, holder),
                ).fetchone()
                if row is not None:
                    renewed.add(str(row[0]))
            return renewed

        renewed: set[str] = await self._write(work)
        return renewed

    async def _fenced(self, sql: str, args: tuple[Any, ...]) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, args).rowcount > 0

        changed: bool = await self._write(work)
        return changed

    async def mark_sent(self, workspace: str, item_id: str, epoch: int) -> bool:
        return await self._fenced(
            f"UPDATE outbox_items SET in_doubt = 1, updated_at = ? WHERE {_FENCE}",
            (utc(self.clock()), workspace, item_id, epoch),
        )

    async def settle(self, workspace: str, item_id: str, epoch: int, outcome: Settle) -> bool:
        check_settle(outcome)
        moment = self.clock()
        now = utc(moment)
        synced = outcome.status is ItemStatus.SYNCED
        due = outcome.next_attempt_at or moment
        a = outcome.attempt
        result = None if outcome.result is None else json_text(outcome.result, "a sink's result")

        def work(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE outbox_items SET status = ?, attempts = attempts + 1, holder = NULL, "
                "lease_until = NULL, in_doubt = ?, updated_at = ?, "
                "next_attempt_at = CASE WHEN ? THEN ? ELSE next_attempt_at END, "
                "result = CASE WHEN ? THEN ? ELSE result END, last_error = ?, "
                "synced_at = CASE WHEN ? THEN ? ELSE synced_at END, "
                f"confirmed_at = CASE WHEN ? THEN NULL ELSE confirmed_at END WHERE {_FENCE}",
                (
                    outcome.status.value,
                    outcome.status is ItemStatus.PENDING and outcome.in_doubt,
                    now,
                    outcome.status is ItemStatus.PENDING,
                    utc(due),
                    synced,
                    result,
                    None if synced else outcome.error,
                    synced,
                    now,
                    synced,
                    workspace,
                    item_id,
                    epoch,
                ),
            ).rowcount
            if changed:
                conn.execute(
                    _RECORD,
                    (
                        workspace,
                        item_id,
                        epoch,
                        utc(a.started_at),
                        utc(a.finished_at),
                        a.outcome,
                        a.status,
                        a.detail,
                    ),
                )
            return changed > 0

        settled: bool = await self._write(work)
        if settled and outcome.status is ItemStatus.PENDING and due <= moment:
            self._wake(workspace)
        return settled

    async def release(self, workspace: str, item_id: str, epoch: int) -> bool:
        released = await self._fenced(
            "UPDATE outbox_items SET status = 'pending', holder = NULL, lease_until = NULL, "
            f"updated_at = ? WHERE {_FENCE}",
            (utc(self.clock()), workspace, item_id, epoch),
        )
        if released:
            self._wake(workspace)
        return released

    async def item(self, workspace: str, item_id: str) -> OutboxItem | None:
        row = await self._read(
            lambda conn: conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE workspace = ? AND id = ?",
                (workspace, item_id),
            ).fetchone()
        )
        return None if row is None else _item(row)

    async def items(self, workspace: str, query: ItemQuery) -> list[OutboxItem]:
        check_query(query)
        where, args = query_filters(query, "?")
        sql = (
            f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE "
            f"{' AND '.join(['workspace = ?', *where])} ORDER BY position DESC LIMIT ?"
        )
        found = await self._read(
            lambda conn: conn.execute(sql, (workspace, *args, query.limit)).fetchall()
        )
        return [_item(r) for r in found]

    async def attempts(self, workspace: str, item_id: str) -> list[Attempt]:
        found = await self._read(
            lambda conn: conn.execute(
                "SELECT item_id, epoch, started_at, finished_at, outcome, status, detail "
                "FROM outbox_attempts WHERE workspace = ? AND item_id = ? ORDER BY seq",
                (workspace, item_id),
            ).fetchall()
        )
        return [
            Attempt(
                item_id=r[0],
                epoch=r[1],
                started_at=datetime.fromisoformat(r[2]),
                finished_at=datetime.fromisoformat(r[3]),
                outcome=r[4],
                status=r[5],
                detail=r[6],
            )
            for r in found
        ]

    async def of_events(
        self, workspace: str, event_ids: Sequence[str]
    ) -> dict[str, list[OutboxItem]]:
        ids = orjson.dumps(list(event_ids)).decode()
        found = await self._read(
            lambda conn: conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE workspace = ? "
                "AND event_id IN (SELECT value FROM json_each(?)) ORDER BY position",
                (workspace, ids),
            ).fetchall()
        )
        grouped: dict[str, list[OutboxItem]] = {}
        for item in map(_item, found):
            assert item.event_id is not None
            grouped.setdefault(item.event_id, []).append(item)
        return grouped

    async def cancel(self, workspace: str, event_id: str, reason: str) -> list[OutboxItem]:
        now = utc(self.clock())

        def work(conn: sqlite3.Connection) -> list[Any]:
            # not an item whose send started: its write may be at the sink already
            return conn.execute(
                "UPDATE outbox_items SET status = 'cancelled', last_error = ?, updated_at = ? "
                "WHERE workspace = ? AND event_id = ? AND status = 'pending' AND in_doubt = 0 "
                f"RETURNING {ITEM_COLUMNS}",
                (reason, now, workspace, event_id),
            ).fetchall()

        found = await self._write(work)
        return sorted(map(_item, found), key=lambda i: i.position)

    async def _operate(
        self, workspace: str, item_id: str, action: str, sql: str, args: tuple[Any, ...], why: str
    ) -> OutboxItem:
        now = utc(self.clock())

        def work(conn: sqlite3.Connection) -> Any:
            _parked(conn, workspace, item_id, action)
            row = conn.execute(sql, (*args, now, workspace, item_id)).fetchone()
            conn.execute(_RECORD, (workspace, item_id, row[20], now, now, action, None, why))
            return row

        return _item(await self._write(work))

    async def retry(self, workspace: str, item_id: str, operator: str) -> OutboxItem:
        item = await self._operate(
            workspace,
            item_id,
            "retried",
            "UPDATE outbox_items SET status = 'pending', attempts = 0, next_attempt_at = ?, "
            f"updated_at = ? WHERE workspace = ? AND id = ? RETURNING {ITEM_COLUMNS}",
            (utc(self.clock()),),
            f"by {operator}",
        )
        self._wake(workspace)
        return item

    async def skip(self, workspace: str, item_id: str, operator: str, reason: str) -> OutboxItem:
        return await self._operate(
            workspace,
            item_id,
            "skipped",
            "UPDATE outbox_items SET status = 'skipped', last_error = ?, updated_at = ? "
            f"WHERE workspace = ? AND id = ? RETURNING {ITEM_COLUMNS}",
            (reason,),
            f"by {operator}: {reason}",
        )

    async def confirm(self, workspace: str, item_id: str) -> bool:
        now = utc(self.clock())
        return await self._fenced(
            "UPDATE outbox_items SET confirmed_at = ?, updated_at = ? WHERE workspace = ? "
            "AND id = ? AND status = 'synced' AND confirmed_at IS NULL",
            (now, now, workspace, item_id),
        )

    async def reopen(self, workspace: str, item_id: str, reason: str) -> bool:
        now = utc(self.clock())
        reopened = await self._fenced(
            "UPDATE outbox_items SET status = 'pending', next_attempt_at = ?, last_error = ?, "
            "synced_at = NULL, in_doubt = 1, updated_at = ? WHERE workspace = ? AND id = ? "
            "AND status = 'synced' AND confirmed_at IS NULL",
            (now, reason, now, workspace, item_id),
        )
        if reopened:
            self._wake(workspace)
        return reopened

    async def unconfirmed(
        self, workspace: str, sink: str, *, synced_before: datetime, limit: int
    ) -> list[OutboxItem]:
        check_query(ItemQuery(limit=limit))
        found = await self._read(
            lambda conn: conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE workspace = ? AND sink = ? "
                "AND status = 'synced' AND confirmed_at IS NULL AND synced_at < ? "
                "ORDER BY synced_at, position LIMIT ?",
                (workspace, sink, utc(synced_before), limit),
            ).fetchall()
        )
        return [_item(r) for r in found]

    async def depth(self, workspace: str) -> list[SinkDepth]:
        found = await self._read(
            lambda conn: conn.execute(
                "SELECT sink, sum(status = 'pending'), sum(status = 'processing'), "
                "sum(status = 'dead'), sum(status = 'conflict'), "
                "min(CASE WHEN status IN ('pending', 'processing') THEN created_at END) "
                "FROM outbox_items WHERE workspace = ? GROUP BY sink ORDER BY sink",
                (workspace,),
            ).fetchall()
        )
        return [
            SinkDepth(
                sink=sink,
                pending=pending,
                processing=processing,
                dead=dead,
                conflict=conflict,
                oldest=None if oldest is None else datetime.fromisoformat(oldest),
            )
            for sink, pending, processing, dead, conflict, oldest in found
        ]

    async def save_sink_state(
        self, workspace: str, sink: str, holder: str, state: Mapping[str, Any]
    ) -> None:
        body = json_text(state, "a sink state")
        now = utc(self.clock())
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO outbox_sink_states VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                "(workspace, sink, holder) DO UPDATE SET state = excluded.state, "
                "updated_at = excluded.updated_at",
                (workspace, sink, holder, body, now),
            )
        )

    async def sink_states(self, workspace: str) -> list[SinkState]:
        stale = self.clock() - SINK_STATE_STALE
        found = await self._read(
            lambda conn: conn.execute(
                "SELECT sink, holder, state, updated_at FROM outbox_sink_states "
                "WHERE workspace = ? ORDER BY sink, holder",
                (workspace,),
            ).fetchall()
        )
        states = []
        for sink, holder, body, updated in found:
            at = datetime.fromisoformat(updated)
            states.append(
                SinkState(
                    sink=sink,
                    holder=holder,
                    state=orjson.loads(body),
                    updated_at=at,
                    stale=at < stale,
                )
            )
        return states

    async def watch(
        self, workspace: str, wake: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        self._watchers.setdefault(workspace, set()).add(wake)

        async def stop() -> None:
            self._watchers.get(workspace, set()).discard(wake)

        return stop
