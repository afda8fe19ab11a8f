"""The world model's PostgreSQL adapter: scale-out storage shared by several runner processes
(docs/design.md §4), on a :class:`~ehrbridge.storage.postgres.database.PostgresDatabase`.

An append locks the rows it touches (``FOR UPDATE``), so writers of different entities run in
parallel; the log is read below the database's gap-safe horizon
(:meth:`~ehrbridge.storage.postgres.database.PostgresDatabase.settled`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool

from ehrbridge.audit import WriteAudit
from ehrbridge.confidence import DEFAULT_THRESHOLDS, Thresholds
from ehrbridge.errors import SlotUnavailable, StorageError
from ehrbridge.storage.postgres.audit import insert_audit
from ehrbridge.storage.postgres.database import PostgresDatabase
from ehrbridge.storage.rows import (
    EVENT_COLUMNS,
    conflict_from_body,
    entity_rows,
    event_from_row,
    event_row,
    ledger_from_json,
    log_page,
    rebuild_writes,
    record_from_row,
    record_update,
    record_values,
    state_from_json,
    unstorable,
)
from ehrbridge.worldmodel.events import Event, RecordKey
from ehrbridge.worldmodel.planner import (
    AppendResult,
    EntityWrite,
    Loaded,
    Plan,
    Planner,
    RecordRow,
    Submission,
    claim_rows,
    needed,
    observed,
    race_error,
    related,
    upper_bound,
)
from ehrbridge.worldmodel.projection import EntityState
from ehrbridge.worldmodel.store import WATCHED_KINDS, ConflictRow, Counts, LogPage, LogPosition

#: the channel appends with events of WATCHED_KINDS notify on (payload ``<schema>|<workspace>``)
LOG_CHANNEL = "ehrbridge_log"
_NOTIFY = b"SELECT pg_notify(%s, current_schema() || '|' || %s)"


class PostgresStore:
    """The world model's store on PostgreSQL."""

    def __init__(
        self,
        database: PostgresDatabase,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        conflict_window: timedelta = timedelta(minutes=15),
    ) -> None:
        self.database = database
        self.schema = database.schema
        self.clock = clock
        self.thresholds = thresholds
        self.conflict_window = conflict_window
        self._pool = database.pool
        self._rows = database.rows
        self._settled = database.settled

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str | None = None,
        max_connections: int = 8,
        **options: Any,
    ) -> PostgresStore:
        """Connect, create the schema if asked for, migrate, and the store on it; closing the
        store closes the database."""
        database = await PostgresDatabase.open(dsn, schema=schema, max_connections=max_connections)
        return cls(database, **options)

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool."""
        return self._pool

    async def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests and benchmarks)."""
        await self.database.drop_schema()

    async def close(self) -> None:
        await self.database.close()

    async def watch(
        self, workspace: str, wake: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        wanted = f"{self.schema or 'public'}|{workspace}"

        def heard(payload: str) -> None:
            if payload == wanted:
                wake()

        return await self.database.listen(LOG_CHANNEL, heard)

    def resolving(self, workspace: str) -> AbstractAsyncContextManager[None]:
        """The resolution lock (see the port), per schema and workspace."""
        return self.database.exclusive(f"resolve:{workspace}")

    # --- writing ----------------------------------------------------------------------------

    async def append(
        self, workspace: str, items: Sequence[Submission], *, audit: WriteAudit | None = None
    ) -> list[AppendResult]:
        items = list(items)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                # The table lock before the transaction id: log readers count on it.
                await conn.execute("LOCK TABLE events IN ROW EXCLUSIVE MODE")
                cur = await conn.execute("SELECT pg_current_xact_id()::text::bigint")
                tx_row = await cur.fetchone()
                assert tx_row is not None
                loaded = await self._load(conn, workspace, items)
                cur = await conn.execute(
                    "SELECT nextval('events_seq') FROM generate_series(1, %s)",
                    (upper_bound(items),),
                )
                seqs = iter([r[0] for r in await cur.fetchall()])
                plan = Planner(
                    workspace=workspace,
                    loaded=loaded,
                    now=self.clock(),
                    next_seq=seqs.__next__,
                    tx=int(tx_row[0]),
                    thresholds=self.thresholds,
                    conflict_window=self.conflict_window,
                ).plan(items)
                await self._save(conn, workspace, plan)
                if any(e.source.kind in WATCHED_KINDS for e in plan.events):
                    # delivered at commit, to every listener on the database (watch)
                    await conn.execute(_NOTIFY, (LOG_CHANNEL, workspace))
                if audit is not None:
                    try:
                        await insert_audit(conn, audit(plan.results))
                    except psycopg.Error as exc:  # not a race, even when a constraint refused it
                        raise StorageError(
                            f"the write's audit entries failed: {type(exc).__name__}"
                        ) from exc
                return plan.results
        except (errors.UniqueViolation, errors.DeadlockDetected) as exc:
            constraint = exc.diag.constraint_name or type(exc).__name__
            raise race_error(items, constraint) from exc
        except psycopg.DataError as exc:
            raise unstorable(exc) from exc
        except psycopg.Error as exc:
            raise StorageError(f"append failed: {type(exc).__name__}") from exc

    async def _load(
        self, conn: AsyncConnection[Any], workspace: str, items: list[Submission]
    ) -> Loaded:
        entity_keys, record_keys, idem_keys = needed(items)
        loaded = Loaded()
        await self._load_entities(conn, workspace, entity_keys, loaded)
        if record_keys:
            ordered = sorted(
                record_keys, key=lambda k: (k.data_source, k.resource_type, k.external_id)
            )
            by_tuple = {(k.data_source, k.resource_type, k.external_id): k for k in ordered}
            cur = await conn.execute(
                "SELECT data_source, resource_type, external_id, entity_type, entity_id, "
                "content_hash, snapshot, last_event_id FROM source_records "
                "WHERE workspace = %s AND (data_source, resource_type, external_id) IN "
                "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])) "
                "ORDER BY data_source, resource_type, external_id FOR UPDATE",
                (
                    workspace,
                    [k.data_source for k in ordered],
                    [k.resource_type for k in ordered],
                    [k.external_id for k in ordered],
                ),
            )
            for row in await cur.fetchall():
                key = by_tuple[(row[0], row[1], row[2])]
                loaded.records[key] = record_from_row(key, row[3:])
        wanted_entities = observed(items, loaded) - loaded.entities.keys()
        await self._load_entities(conn, workspace, wanted_entities, loaded)
        # Survivors are never merged themselves: one pass loads them all.
        await self._load_entities(conn, workspace, related(loaded), loaded)
        if idem_keys:
            cur = await conn.execute(
                f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace = %s "
                "AND idempotency_key = ANY(%s)",
                (workspace, sorted(idem_keys)),
            )
            for row in await cur.fetchall():
                event = event_from_row(row)
                assert event.idempotency_key is not None
                loaded.idempotent[event.idempotency_key] = event
        return loaded

    @staticmethod
    async def _load_entities(
        conn: AsyncConnection[Any], workspace: str, keys: set[tuple[str, str]], loaded: Loaded
    ) -> None:
        if not keys:
            return
        ordered = sorted(keys)
        cur = await conn.execute(
            "SELECT entity_type, entity_id, ledger FROM entities WHERE workspace = %s "
            "AND (entity_type, entity_id) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
            "ORDER BY entity_type, entity_id FOR UPDATE",
            (workspace, [k[0] for k in ordered], [k[1] for k in ordered]),
        )
        for entity_type, entity_id, ledger in await cur.fetchall():
            loaded.entities[(entity_type, entity_id)] = ledger_from_json(ledger)

    async def _save(self, conn: AsyncConnection[Any], workspace: str, plan: Plan) -> None:
        async with conn.cursor() as cur:
            if plan.events:
                await cur.executemany(
                    f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({','.join(['%s'] * 20)})",
                    [event_row(e) for e in plan.events],
                )
            await self._save_entities(cur, workspace, plan.entities)
            # A record first seen in this batch is inserted plainly: if another runner saw it
            # first, the unique key fails the batch, and the retry links to the winner's entity.
            new = [record_values(workspace, r) for r in plan.records if r.new]
            if new:
                await cur.executemany(
                    "INSERT INTO source_records VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", new
                )
            known = [record_update(workspace, r) for r in plan.records if not r.new]
            if known:
                await cur.executemany(
                    "UPDATE source_records SET content_hash = %s, snapshot = %s, "
                    "last_event_id = %s WHERE workspace = %s AND data_source = %s "
                    "AND resource_type = %s AND external_id = %s",
                    known,
                )

    @staticmethod
    async def _save_entities(
        cur: psycopg.AsyncCursor[Any],
        workspace: str,
        writes: Sequence[EntityWrite],
        *,
        rebuilding: bool = False,
    ) -> None:
        rows = entity_rows(workspace, writes)
        if rows.stale:
            for table in ("entity_keys", "open_conflicts", "entity_claims"):
                await cur.executemany(
                    f"DELETE FROM {table} WHERE workspace = %s AND entity_type = %s "
                    "AND entity_id = %s",
                    rows.stale,
                )
        if rows.entities:
            await cur.executemany(
                "INSERT INTO entities VALUES (%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (workspace, entity_type, entity_id) DO UPDATE SET "
                "version = excluded.version, merged_into = excluded.merged_into, "
                "updated_at = excluded.updated_at, ledger = excluded.ledger, "
                "state = excluded.state",
                rows.entities,
            )
        if rows.keys:
            await cur.executemany("INSERT INTO entity_keys VALUES (%s,%s,%s,%s)", rows.keys)
        if rows.conflicts:
            await cur.executemany(
                "INSERT INTO open_conflicts VALUES (%s,%s,%s,%s,%s,%s)", rows.conflicts
            )
        for claim in claim_rows(workspace, writes):
            # waits for a concurrent writer of the same claim: its commit takes the claim
            await cur.execute(
                "INSERT INTO entity_claims VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING", claim
            )
            # a rebuild keeps the first claimant of a claim the log gives twice (written
            # before claims were kept); a write never takes another entity's claim
            if cur.rowcount == 0 and not rebuilding:
                raise SlotUnavailable(claim[1])

    # --- reading ----------------------------------------------------------------------------

    async def read_entity(
        self, workspace: str, entity_type: str, entity_id: str, *, until: datetime | None = None
    ) -> list[Event]:
        query = (
            f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace = %s AND entity_type = %s "
            "AND entity_id = %s"
        )
        args: list[Any] = [workspace, entity_type, entity_id]
        if until is not None:
            query += " AND recorded_at <= %s"
            args.append(until)
        return [event_from_row(r) for r in await self._rows(query + " ORDER BY version", args)]

    async def get_event(self, workspace: str, event_id: str) -> Event | None:
        rows = await self._rows(
            f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE id = %s AND workspace = %s",
            (event_id, workspace),
        )
        return event_from_row(rows[0]) if rows else None

    async def read_log(
        self,
        workspace: str,
        after: LogPosition,
        limit: int = 1000,
        *,
        entity_types: Collection[str] | None = None,
    ) -> LogPage:
        if entity_types is None:
            rows = await self._rows(
                f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace = %s "
                "AND (tx, seq) > (%s, %s) AND tx < %s ORDER BY tx, seq LIMIT %s",
                (workspace, after.tx, after.seq, await self._settled(), limit),
            )
            return log_page(rows, after, limit, None)
        # The newest settled event first: every event up to it is settled, so the filtered
        # read up to it sees all of them; later ones are read next time.
        head = await self._rows(
            "SELECT tx, seq FROM events WHERE workspace = %s AND tx < %s "
            "ORDER BY tx DESC, seq DESC LIMIT 1",
            (workspace, await self._settled()),
        )
        if not head:
            return LogPage(events=[], position=after)
        (head_tx, head_seq), types = head[0], sorted(entity_types)
        rows = await self._rows(
            f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace = %s "
            "AND (tx, seq) > (%s, %s) AND (tx, seq) <= (%s, %s) AND entity_type = ANY(%s) "
            "ORDER BY tx, seq LIMIT %s",
            (workspace, after.tx, after.seq, head_tx, head_seq, types, limit),
        )
        return log_page(rows, after, limit, LogPosition(tx=head_tx, seq=head_seq))

    async def get_state(
        self, workspace: str, entity_type: str, entity_id: str
    ) -> EntityState | None:
        rows = await self._rows(
            "SELECT state FROM entities WHERE workspace = %s AND entity_type = %s "
            "AND entity_id = %s",
            (workspace, entity_type, entity_id),
        )
        return state_from_json(workspace, rows[0][0]) if rows else None

    async def find(
        self, workspace: str, key: str, entity_type: str | None = None
    ) -> list[EntityState]:
        query = (
            "SELECT e.state FROM entity_keys k JOIN entities e ON e.workspace = k.workspace "
            "AND e.entity_type = k.entity_type AND e.entity_id = k.entity_id "
            "WHERE k.workspace = %s AND k.key = %s"
        )
        args: list[Any] = [workspace, key]
        if entity_type is not None:
            query += " AND k.entity_type = %s"
            args.append(entity_type)
        rows = await self._rows(query + " ORDER BY k.entity_type, k.entity_id LIMIT 100", args)
        return [state_from_json(workspace, r[0]) for r in rows]

    async def get_record(self, workspace: str, key: RecordKey) -> RecordRow | None:
        rows = await self._rows(
            "SELECT entity_type, entity_id, content_hash, snapshot, last_event_id "
            "FROM source_records WHERE workspace = %s AND data_source = %s "
            "AND resource_type = %s AND external_id = %s",
            (workspace, key.data_source, key.resource_type, key.external_id),
        )
        return record_from_row(key, rows[0]) if rows else None

    async def record_entities(
        self, workspace: str, keys: Sequence[RecordKey]
    ) -> dict[RecordKey, tuple[str, str]]:
        found: dict[RecordKey, tuple[str, str]] = {}
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            rows = await self._rows(
                "SELECT r.data_source, r.resource_type, r.external_id, r.entity_type, r.entity_id "
                "FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(ds, rt, ext) "
                "JOIN source_records r ON r.workspace = %s AND r.data_source = k.ds "
                "AND r.resource_type = k.rt AND r.external_id = k.ext",
                (
                    [k.data_source for k in chunk],
                    [k.resource_type for k in chunk],
                    [k.external_id for k in chunk],
                    workspace,
                ),
            )
            for ds, rt, ext, entity_type, entity_id in rows:
                found[RecordKey(data_source=ds, resource_type=rt, external_id=ext)] = (
                    entity_type,
                    entity_id,
                )
        return found

    async def conflicts(
        self, workspace: str, entity_type: str | None = None, entity_id: str | None = None
    ) -> list[ConflictRow]:
        query = "SELECT entity_type, entity_id, body FROM open_conflicts WHERE workspace = %s"
        args: list[Any] = [workspace]
        if entity_type is not None and entity_id is not None:
            query += " AND entity_type = %s AND entity_id = %s"
            args += [entity_type, entity_id]
        return [
            ConflictRow(entity_type=t, entity_id=i, conflict=conflict_from_body(body))
            for t, i, body in await self._rows(query + " ORDER BY conflict_id", args)
        ]

    async def counts(self, workspace: str) -> Counts:
        entities = await self._rows(
            "SELECT entity_type, count(*) FROM entities WHERE workspace = %s "
            "AND merged_into IS NULL GROUP BY entity_type ORDER BY entity_type",
            (workspace,),
        )
        events = await self._rows("SELECT count(*) FROM events WHERE workspace = %s", (workspace,))
        conflicts = await self._rows(
            "SELECT count(*) FROM open_conflicts WHERE workspace = %s", (workspace,)
        )
        return Counts(
            entities={t: int(n) for t, n in entities},
            events=int(events[0][0]),
            open_conflicts=int(conflicts[0][0]),
        )

    async def workspaces(self) -> list[str]:
        return [r[0] for r in await self._rows("SELECT DISTINCT workspace FROM entities", ())]

    # --- rebuild ----------------------------------------------------------------------------

    async def rebuild(self, workspace: str) -> int:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                # Stop appends to this workspace while its projections are recomputed.
                await conn.execute(
                    "LOCK TABLE entities, entity_keys, open_conflicts, entity_claims "
                    "IN SHARE ROW EXCLUSIVE MODE"
                )
                cur = await conn.execute(
                    f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace = %s "
                    "ORDER BY entity_type, entity_id, version",
                    (workspace,),
                )
                grouped: dict[tuple[str, str], list[Event]] = {}
                for row in await cur.fetchall():
                    event = event_from_row(row)
                    grouped.setdefault((event.entity_type, event.entity_id), []).append(event)
                writes = rebuild_writes(workspace, grouped, self.thresholds)
                for table in ("entities", "entity_keys", "open_conflicts", "entity_claims"):
                    await conn.execute(f"DELETE FROM {table} WHERE workspace = %s", (workspace,))
                async with conn.cursor() as c:
                    await self._save_entities(c, workspace, writes, rebuilding=True)
                return len(writes)
        except psycopg.Error as exc:
            raise StorageError(f"rebuild failed: {type(exc).__name__}") from exc
