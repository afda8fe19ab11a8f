"""The outbox's storage port (:mod:`ehrbridge.outbound.outbox`) on PostgreSQL, on the database's
pool: any number of dispatcher processes claim from it at once (docs/outbox.md).

A claim is one transaction of three statements. It locks ready lane heads ``FOR UPDATE SKIP
LOCKED`` (an item another claimer holds is passed over, never waited for), then takes each lane's
lock with ``pg_try_advisory_xact_lock`` (a lane another claimer is taking is passed over too),
then claims the items that a fresh snapshot, taken under those locks, still shows to be their
lane's ready head. Everything that can put an item ahead of a lane's head or in front of a
claimer's snapshot (enqueue, reopen) takes the lane's lock first, so no two claims ever hold
two items of one lane. Every write after a claim names the claim's epoch. Times are the store's
clock (the world model's, as the review queue's are). Changes that make items due notify on
:data:`OUTBOX_CHANNEL` at commit; :meth:`PostgresOutbox.watch` listens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection

from ehrbridge.errors import NotFound, OutboxConflict, StorageError
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
from ehrbridge.storage.postgres.database import PostgresDatabase
from ehrbridge.storage.rows import unstorable
from ehrbridge.worldmodel.events import new_id
from ehrbridge.worldmodel.store import LogPosition

#: the channel changes that make items due notify on; the payload is ``<schema>|<workspace>``
OUTBOX_CHANNEL = "ehrbridge_outbox"
_NOTIFY = b"SELECT pg_notify(%s, current_schema() || '|' || %s)"
_FAILED = "outbox storage failed"
#: a lane's lock, per schema (tests and tenants share one server); ``%s``: :func:`lane_lock`
_LANE_KEY = "hashtextextended(current_schema() || ':' || {}, 0)"
_LOCK_LANES = (
    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT "
    f"{_LANE_KEY.format('k')} AS h FROM unnest(%s::text[]) AS u(k) ORDER BY h) AS keys"
).encode()
_INSERT = (
    "INSERT INTO outbox_items (id, position, workspace, sink, key, lane, entity_type, entity_id, "
    "event_id, operation, payload, workflow, step, status, created_at, updated_at, "
    "next_attempt_at) VALUES (%s, nextval('outbox_position'), %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s::jsonb, %s, %s, 'pending', %s, %s, %s) ON CONFLICT (workspace, key) DO NOTHING"
)
_CANDIDATES = (
    f"SELECT {ITEM_COLUMNS}, claimed_at FROM outbox_items i WHERE {ready('%s')} "
    "ORDER BY i.position LIMIT %s FOR UPDATE OF i SKIP LOCKED"
)
_LANES_FREE = (
    "SELECT u.id FROM unnest(%s::text[], %s::text[]) AS u(id, lane) "
    f"WHERE pg_try_advisory_xact_lock({_LANE_KEY.format('u.lane')})"
)
_TAKE = (
    "UPDATE outbox_items AS i SET status = 'processing', holder = %s, lease_until = %s, "
    "claimed_at = %s, epoch = i.epoch + 1, updated_at = %s "
    f"WHERE i.id = ANY(%s) AND {ready('%s')} RETURNING {ITEM_COLUMNS}"
)
#: the claim a later write must name: the item, its epoch, still processing
_FENCE = "workspace = %s AND id = %s AND epoch = %s AND status = 'processing'"
_RECORD = (
    "INSERT INTO outbox_attempts (workspace, item_id, epoch, started_at, finished_at, outcome, "
    "status, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


def _item(row: Any) -> OutboxItem:
    return item_from_row(row, time=lambda t: t, json=lambda j: j)


def lane_lock(workspace: str, sink: str, lane: str) -> str:
    """What names a lane's lock (``\\x1f`` cannot be in a name an operator types)."""
    return f"outbox\x1f{workspace}\x1f{sink}\x1f{lane}"


async def lock_lanes(conn: AsyncConnection[Any], lanes: Sequence[str]) -> None:
    """Wait for the locks of ``lanes``, in the order of their keys, so two writers never
    deadlock (the sorted subquery fixes the order the locks are taken in)."""
    await conn.execute(_LOCK_LANES, (list(lanes),))


async def _fetch(conn: AsyncConnection[Any], sql: str, args: Sequence[Any]) -> list[Any]:
    cur = await conn.execute(sql.encode(), args)
    return await cur.fetchall() if cur.description is not None else []


class PostgresOutbox:
    """Outbox items, attempts, feeder cursors and sink states in the PostgreSQL database."""

    def __init__(
        self,
        database: PostgresDatabase,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.database = database
        #: the time of due times, leases and every timestamp (the world model's clock)
        self.clock = clock

    @asynccontextmanager
    async def _work(self, *, transaction: bool = True) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection, in one transaction unless asked not to (a single statement is
        one by itself); driver errors leave as the store's."""
        try:
            async with self.database.pool.connection() as conn:
                if not transaction:
                    yield conn
                    return
                async with conn.transaction():
                    yield conn
        except psycopg.DataError as exc:
            raise unstorable(exc) from exc
        except psycopg.Error as exc:
            raise StorageError(f"{_FAILED}: {type(exc).__name__}") from exc

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[Any]:
        async with self._work(transaction=False) as conn:
            return await _fetch(conn, sql, args)

    async def enqueue(
        self,
        workspace: str,
        items: Sequence[NewItem],
        *,
        cursor: tuple[str, LogPosition] | None = None,
    ) -> list[OutboxItem]:
        items = list(items)
        check_items(items)
        now = self.clock()
        unique = list({i.key: i for i in items}.values())
        ids = [new_id() for _ in unique]
        rows = [
            (
                item_id,
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
            for item_id, i in zip(ids, unique, strict=True)
        ]
        async with self._work() as conn:
            if rows:
                # positions are taken under the lanes' locks: a lane's rise in commit order
                await lock_lanes(conn, [lane_lock(workspace, i.sink, i.lane) for i in unique])
                async with conn.cursor() as cur:
                    await cur.executemany(_INSERT.encode(), rows)
            if cursor is not None:
                name, position = cursor
                await conn.execute(
                    "INSERT INTO outbox_cursors VALUES (%s, %s, %s, %s, %s) ON CONFLICT "
                    "(workspace, name) DO UPDATE SET tx = excluded.tx, seq = excluded.seq, "
                    "updated_at = excluded.updated_at",
                    (workspace, name, position.tx, position.seq, now),
                )
            found = await _fetch(
                conn,
                f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE workspace = %s AND key = ANY(%s)",
                (workspace, [i.key for i in unique]),
            )
            mine = set(ids)
            if any(row[0] in mine for row in found):
                await conn.execute(_NOTIFY, (OUTBOX_CHANNEL, workspace))
        by_key = {item.key: item for item in map(_item, found)}
        return [by_key[i.key] for i in unique]

    async def cursor(self, workspace: str, name: str) -> LogPosition | None:
        found = await self._rows(
            "SELECT tx, seq FROM outbox_cursors WHERE workspace = %s AND name = %s",
            (workspace, name),
        )
        return LogPosition(tx=found[0][0], seq=found[0][1]) if found else None

    async def claim(
        self, workspace: str, sink: str, holder: str, *, limit: int, lease: timedelta
    ) -> list[Claim]:
        check_claim(limit, lease)
        now = self.clock()
        rule = (workspace, sink, now, now, now)
        async with self._work() as conn:
            found = await _fetch(conn, _CANDIDATES, (*rule, limit))
            if not found:
                return []
            free = await _fetch(
                conn,
                _LANES_FREE,
                ([r[0] for r in found], [lane_lock(workspace, sink, r[4]) for r in found]),
            )
            if not free:
                return []
            # a snapshot taken under the lanes' locks: the heads as they are now
            taken = await _fetch(
                conn, _TAKE, (holder, now + lease, now, now, [r[0] for r in free], *rule)
            )
            claimed = {row[0] for row in taken}
            for row in found:
                before = _item(row)
                if before.id in claimed and before.status is ItemStatus.PROCESSING:
                    sent = " after a send started" if before.in_doubt else ""
                    await conn.execute(
                        _RECORD.encode(),
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
        items = sorted(map(_item, taken), key=lambda i: i.position)
        return [Claim(item=i, epoch=i.epoch, in_doubt=i.in_doubt) for i in items]

    async def renew(
        self, workspace: str, held: Sequence[tuple[str, int]], holder: str, lease: timedelta
    ) -> set[str]:
        check_claim(1, lease)
        if not held:
            return set()
        now = self.clock()
        found = await self._rows(
            "UPDATE outbox_items AS i SET lease_until = %s, updated_at = %s "
            "FROM unnest(%s::text[], %s::int[]) AS h(id, epoch) WHERE i.workspace = %s "
            "AND i.id = h.id AND i.epoch = h.epoch AND i.status = 'processing' "
            "AND i.holder = %s RETURNING i.id",
            (
                now + lease,
                now,
                [h[0] for h in held],
                [h[1] for h in held],
                workspace,
                holder,
            ),
        )
        return {str(r[0]) for r in found}

    async def _change(self, sql: str, args: Sequence[Any], *, notify: str | None = None) -> bool:
        """One conditional update; with ``notify`` (the workspace), watchers hear of it."""
        async with self._work(transaction=notify is not None) as conn:
            cur = await conn.execute(sql.encode(), args)
            changed = cur.rowcount > 0
            if changed and notify is not None:
                await conn.execute(_NOTIFY, (OUTBOX_CHANNEL, notify))
            return changed

    async def mark_sent(self, workspace: str, item_id: str, epoch: int) -> bool:
        return await self._change(
            f"UPDATE outbox_items SET in_doubt = true, updated_at = %s WHERE {_FENCE}",
            (self.clock(), workspace, item_id, epoch),
        )

    async def settle(self, workspace: str, item_id: str, epoch: int, outcome: Settle) -> bool:
        check_settle(outcome)
        now = self.clock()
        synced = outcome.status is ItemStatus.SYNCED
        pending = outcome.status is ItemStatus.PENDING
        due = outcome.next_attempt_at or now
        a = outcome.attempt
        result = None if outcome.result is None else json_text(outcome.result, "a sink's result")
        # one statement: the fenced update and, only when it changed the item, its attempt
        sql = (
            "WITH done AS (UPDATE outbox_items SET status = %s, attempts = attempts + 1, "
            "holder = NULL, lease_until = NULL, in_doubt = %s, updated_at = %s, "
            "next_attempt_at = CASE WHEN %s THEN %s ELSE next_attempt_at END, "
            "result = CASE WHEN %s THEN %s::jsonb ELSE result END, last_error = %s, "
            "synced_at = CASE WHEN %s THEN %s ELSE synced_at END, "
            "confirmed_at = CASE WHEN %s THEN NULL ELSE confirmed_at END "
            f"WHERE {_FENCE} RETURNING id), recorded AS ("
            "INSERT INTO outbox_attempts (workspace, item_id, epoch, started_at, finished_at, "
            "outcome, status, detail) SELECT %s, id, %s, %s, %s, %s, %s, %s FROM done "
            "RETURNING 1) SELECT count(*) FROM recorded"
        )
        args = (
            outcome.status.value,
            pending and outcome.in_doubt,
            now,
            pending,
            due,
            synced,
            result,
            None if synced else outcome.error,
            synced,
            now,
            synced,
            workspace,
            item_id,
            epoch,
            workspace,
            epoch,
            a.started_at,
            a.finished_at,
            a.outcome,
            a.status,
            a.detail,
        )
        due_now = pending and due <= now
        async with self._work(transaction=due_now) as conn:
            ((changed,),) = await _fetch(conn, sql, args)
            if changed and due_now:
                await conn.execute(_NOTIFY, (OUTBOX_CHANNEL, workspace))
            return bool(changed)

    async def release(self, workspace: str, item_id: str, epoch: int) -> bool:
        return await self._change(
            "UPDATE outbox_items SET status = 'pending', holder = NULL, lease_until = NULL, "
            f"updated_at = %s WHERE {_FENCE}",
            (self.clock(), workspace, item_id, epoch),
            notify=workspace,
        )

    async def item(self, workspace: str, item_id: str) -> OutboxItem | None:
        found = await self._rows(
            f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE workspace = %s AND id = %s",
            (workspace, item_id),
        )
        return _item(found[0]) if found else None

    async def items(self, workspace: str, query: ItemQuery) -> list[OutboxItem]:
        check_query(query)
        where, args = query_filters(query, "%s")
        found = await self._rows(
            f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE "
            f"{' AND '.join(['workspace = %s', *where])} ORDER BY position DESC LIMIT %s",
            (workspace, *args, query.limit),
        )
        return [_item(r) for r in found]

    async def attempts(self, workspace: str, item_id: str) -> list[Attempt]:
        found = await self._rows(
            "SELECT item_id, epoch, started_at, finished_at, outcome, status, detail "
            "FROM outbox_attempts WHERE workspace = %s AND item_id = %s ORDER BY seq",
            (workspace, item_id),
        )
        return [
            Attempt(
                item_id=r[0],
                epoch=r[1],
                started_at=r[2],
                finished_at=r[3],
                outcome=r[4],
                status=r[5],
                detail=r[6],
            )
            for r in found
        ]

    async def of_events(
        self, workspace: str, event_ids: Sequence[str]
    ) -> dict[str, list[OutboxItem]]:
        found = await self._rows(
            f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE workspace = %s "
            "AND event_id = ANY(%s) ORDER BY position",
            (workspace, list(event_ids)),
        )
        grouped: dict[str, list[OutboxItem]] = {}
        for item in map(_item, found):
            assert item.event_id is not None
            grouped.setdefault(item.event_id, []).append(item)
        return grouped

    async def cancel(self, workspace: str, event_id: str, reason: str) -> list[OutboxItem]:
        async with self._work() as conn:
            # not an item whose send started: its write may be at the sink already
            found = await _fetch(
                conn,
                "UPDATE outbox_items SET status = 'cancelled', last_error = %s, updated_at = %s "
                "WHERE workspace = %s AND event_id = %s AND status = 'pending' "
                f"AND NOT in_doubt RETURNING {ITEM_COLUMNS}",
                (reason, self.clock(), workspace, event_id),
            )
        return sorted(map(_item, found), key=lambda i: i.position)

    async def _operate(
        self, workspace: str, item_id: str, action: str, sets: str, args: tuple[Any, ...], why: str
    ) -> OutboxItem:
        now = self.clock()
        async with self._work() as conn:
            found = await _fetch(
                conn,
                "SELECT status FROM outbox_items WHERE workspace = %s AND id = %s FOR UPDATE",
                (workspace, item_id),
            )
            if not found:
                raise NotFound("no such outbox item in this workspace")
            if ItemStatus(found[0][0]) not in PARKED:
                raise OutboxConflict(
                    item_id,
                    f"only a dead or conflict item can be {action}; this one is {found[0][0]}",
                )
            (row,) = await _fetch(
                conn,
                f"UPDATE outbox_items SET {sets}, updated_at = %s WHERE workspace = %s "
                f"AND id = %s RETURNING {ITEM_COLUMNS}",
                (*args, now, workspace, item_id),
            )
            await conn.execute(
                _RECORD.encode(), (workspace, item_id, row[20], now, now, action, None, why)
            )
            if action == "retried":
                await conn.execute(_NOTIFY, (OUTBOX_CHANNEL, workspace))
        return _item(row)

    async def retry(self, workspace: str, item_id: str, operator: str) -> OutboxItem:
        return await self._operate(
            workspace,
            item_id,
            "retried",
            "status = 'pending', attempts = 0, next_attempt_at = %s",
            (self.clock(),),
            f"by {operator}",
        )

    async def skip(self, workspace: str, item_id: str, operator: str, reason: str) -> OutboxItem:
        return await self._operate(
            workspace,
            item_id,
            "skipped",
            "status = 'skipped', last_error = %s",
            (reason,),
            f"by {operator}: {reason}",
        )

    async def confirm(self, workspace: str, item_id: str) -> bool:
        now = self.clock()
        return await self._change(
            "UPDATE outbox_items SET confirmed_at = %s, updated_at = %s WHERE workspace = %s "
            "AND id = %s AND status = 'synced' AND confirmed_at IS NULL",
            (now, now, workspace, item_id),
        )

    async def reopen(self, workspace: str, item_id: str, reason: str) -> bool:
        now = self.clock()
        async with self._work() as conn:
            found = await _fetch(
                conn,
                "SELECT sink, lane FROM outbox_items WHERE workspace = %s AND id = %s",
                (workspace, item_id),
            )
            if not found:
                return False
            # the item comes back into its lane: no claim may be taking the lane meanwhile
            await lock_lanes(conn, [lane_lock(workspace, found[0][0], found[0][1])])
            cur = await conn.execute(
                b"UPDATE outbox_items SET status = 'pending', next_attempt_at = %s, "
                b"last_error = %s, synced_at = NULL, updated_at = %s WHERE workspace = %s "
                b"AND id = %s AND status = 'synced' AND confirmed_at IS NULL",
                (now, reason, now, workspace, item_id),
            )
            if cur.rowcount == 0:
                return False
            await conn.execute(_NOTIFY, (OUTBOX_CHANNEL, workspace))
            return True

    async def unconfirmed(
        self, workspace: str, sink: str, *, synced_before: datetime, limit: int
    ) -> list[OutboxItem]:
        check_query(ItemQuery(limit=limit))
        found = await self._rows(
            f"SELECT {ITEM_COLUMNS} FROM outbox_items WHERE workspace = %s AND sink = %s "
            "AND status = 'synced' AND confirmed_at IS NULL AND synced_at < %s "
            "ORDER BY synced_at, position LIMIT %s",
            (workspace, sink, synced_before, limit),
        )
        return [_item(r) for r in found]

    async def depth(self, workspace: str) -> list[SinkDepth]:
        found = await self._rows(
            "SELECT sink, count(*) FILTER (WHERE status = 'pending'), "
            "count(*) FILTER (WHERE status = 'processing'), "
            "count(*) FILTER (WHERE status = 'dead'), "
            "count(*) FILTER (WHERE status = 'conflict'), "
            "min(created_at) FILTER (WHERE status IN ('pending', 'processing')) "
            "FROM outbox_items WHERE workspace = %s GROUP BY sink ORDER BY sink",
            (workspace,),
        )
        return [
            SinkDepth(
                sink=sink,
                pending=int(pending),
                processing=int(processing),
                dead=int(dead),
                conflict=int(conflict),
                oldest=oldest,
            )
            for sink, pending, processing, dead, conflict, oldest in found
        ]

    async def save_sink_state(
        self, workspace: str, sink: str, holder: str, state: Mapping[str, Any]
    ) -> None:
        body = json_text(state, "a sink state")
        await self._rows(
            "INSERT INTO outbox_sink_states VALUES (%s, %s, %s, %s::jsonb, %s) ON CONFLICT "
            "(workspace, sink, holder) DO UPDATE SET state = excluded.state, "
            "updated_at = excluded.updated_at RETURNING 1",
            (workspace, sink, holder, body, self.clock()),
        )

    async def sink_states(self, workspace: str) -> list[SinkState]:
        stale = self.clock() - SINK_STATE_STALE
        found = await self._rows(
            "SELECT sink, holder, state, updated_at FROM outbox_sink_states "
            "WHERE workspace = %s ORDER BY sink, holder",
            (workspace,),
        )
        return [
            SinkState(sink=sink, holder=holder, state=state, updated_at=at, stale=at < stale)
            for sink, holder, state, at in found
        ]

    async def watch(
        self, workspace: str, wake: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        wanted = f"{self.database.schema or 'public'}|{workspace}"

        def heard(payload: str) -> None:
            if payload == wanted:
                wake()

        return await self.database.listen(OUTBOX_CHANNEL, heard)
