"""The world model's SQLite adapter: the embedded default (WAL, one file in the working
directory), on a :class:`~ehrbridge.storage.sqlite.database.SQLiteDatabase`.

Writes are serialised by the database (``BEGIN IMMEDIATE``), so log order is commit order and
``tx`` is always 0.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ehrbridge.audit import WriteAudit
from ehrbridge.confidence import DEFAULT_THRESHOLDS, Thresholds
from ehrbridge.errors import SlotUnavailable, StorageError
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
from ehrbridge.storage.sqlite.audit import insert_audit
from ehrbridge.storage.sqlite.database import SQLiteDatabase
from ehrbridge.times import utc
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
)
from ehrbridge.worldmodel.projection import EntityState
from ehrbridge.worldmodel.store import WATCHED_KINDS, ConflictRow, Counts, LogPage, LogPosition

_CHUNK = 500  # SQLite allows 32766 variables; keep IN-lists modest


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SQLiteStore:
    """The world model's store on a SQLite file (or ``:memory:``)."""

    def __init__(
        self,
        database: SQLiteDatabase,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        conflict_window: timedelta = timedelta(minutes=15),
    ) -> None:
        self.database = database
        self.path = database.path
        self.clock = clock
        self.thresholds = thresholds
        self.conflict_window = conflict_window
        self._run = database.run
        #: what :meth:`watch` calls after an append with events of WATCHED_KINDS, per workspace
        self._watchers: dict[str, set[Callable[[], None]]] = {}

    @classmethod
    async def open(cls, path: str | Path, **options: Any) -> SQLiteStore:
        """Open (creating and migrating if needed) the database at ``path`` and the store on
        it; closing the store closes the database."""
        return cls(await SQLiteDatabase.open(path), **options)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.database.conn

    def resolving(self, workspace: str) -> AbstractAsyncContextManager[None]:
        """The resolution lock (see the port): one per file, across processes."""
        del workspace  # one lock per file: resolutions are short, workspaces rarely race
        return self.database.exclusive("resolve")

    @contextmanager
    def _write(self, items: Sequence[Submission] = ()) -> Iterator[sqlite3.Connection]:
        try:
            with self.database.writing() as conn:
                yield conn
        except sqlite3.IntegrityError as exc:
            raise race_error(items, str(exc)) from exc
        except sqlite3.DataError as exc:
            raise unstorable(exc) from exc

    # --- writing ----------------------------------------------------------------------------

    async def append(
        self, workspace: str, items: Sequence[Submission], *, audit: WriteAudit | None = None
    ) -> list[AppendResult]:
        results = await self._run(self._append, workspace, list(items), audit)
        watchers = self._watchers.get(workspace)
        if watchers and any(e.source.kind in WATCHED_KINDS for r in results for e in r.events):
            for wake in list(watchers):
                wake()
        return results

    async def watch(
        self, workspace: str, wake: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        self._watchers.setdefault(workspace, set()).add(wake)

        async def stop() -> None:
            self._watchers.get(workspace, set()).discard(wake)

        return stop

    def _append(
        self, workspace: str, items: list[Submission], audit: WriteAudit | None
    ) -> list[AppendResult]:
        with self._write(items) as conn:
            loaded = self._load(conn, workspace, items)
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            counter = iter(range(row[0] + 1, 1 << 62))
            plan = Planner(
                workspace=workspace,
                loaded=loaded,
                now=self.clock(),
                next_seq=counter.__next__,
                thresholds=self.thresholds,
                conflict_window=self.conflict_window,
            ).plan(items)
            self._save(conn, workspace, plan)
            if audit is not None:
                try:
                    insert_audit(conn, audit(plan.results))
                except sqlite3.Error as exc:  # not a race, even when a constraint refused it
                    raise StorageError(f"the write's audit entries failed: {exc}") from exc
            return plan.results

    def _load(self, conn: sqlite3.Connection, workspace: str, items: list[Submission]) -> Loaded:
        entity_keys, record_keys, idem_keys = needed(items)
        loaded = Loaded()
        self._load_entities(conn, workspace, entity_keys, loaded)
        by_source: dict[tuple[str, str], dict[str, RecordKey]] = {}
        for record in record_keys:
            by_source.setdefault((record.data_source, record.resource_type), {})[
                record.external_id
            ] = record
        for (data_source, resource_type), wanted in by_source.items():
            for chunk in _chunks(sorted(wanted)):
                marks = ",".join("?" * len(chunk))
                for found in conn.execute(
                    "SELECT external_id, entity_type, entity_id, content_hash, snapshot, "
                    "last_event_id FROM source_records WHERE workspace=? AND data_source=? "
                    f"AND resource_type=? AND external_id IN ({marks})",
                    (workspace, data_source, resource_type, *chunk),
                ):
                    key = wanted[found[0]]
                    loaded.records[key] = record_from_row(key, found[1:])
        wanted_entities = observed(items, loaded) - loaded.entities.keys()
        self._load_entities(conn, workspace, wanted_entities, loaded)
        # Survivors are never merged themselves: one pass loads them all.
        self._load_entities(conn, workspace, related(loaded), loaded)
        for chunk in _chunks(sorted(idem_keys)):
            marks = ",".join("?" * len(chunk))
            for found in conn.execute(
                f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace=? "
                f"AND idempotency_key IN ({marks})",
                (workspace, *chunk),
            ):
                event = event_from_row(found)
                assert event.idempotency_key is not None
                loaded.idempotent[event.idempotency_key] = event
        return loaded

    @staticmethod
    def _load_entities(
        conn: sqlite3.Connection, workspace: str, keys: set[tuple[str, str]], loaded: Loaded
    ) -> None:
        by_type: dict[str, list[str]] = {}
        for entity_type, entity_id in keys:
            by_type.setdefault(entity_type, []).append(entity_id)
        for entity_type, ids in by_type.items():
            for chunk in _chunks(sorted(ids)):
                marks = ",".join("?" * len(chunk))
                for entity_id, ledger in conn.execute(
                    f"SELECT entity_id, ledger FROM entities WHERE workspace=? AND entity_type=? "
                    f"AND entity_id IN ({marks})",
                    (workspace, entity_type, *chunk),
                ):
                    loaded.entities[(entity_type, entity_id)] = ledger_from_json(ledger)

    def _save(self, conn: sqlite3.Connection, workspace: str, plan: Plan) -> None:
        conn.executemany(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({','.join('?' * 20)})",
            [event_row(e) for e in plan.events],
        )
        self._save_entities(conn, workspace, plan.entities)
        conn.executemany(
            "INSERT INTO source_records VALUES (?,?,?,?,?,?,?,?,?)",
            [record_values(workspace, r) for r in plan.records if r.new],
        )
        conn.executemany(
            "UPDATE source_records SET content_hash = ?, snapshot = ?, last_event_id = ? "
            "WHERE workspace = ? AND data_source = ? AND resource_type = ? AND external_id = ?",
            [record_update(workspace, r) for r in plan.records if not r.new],
        )

    @staticmethod
    def _save_entities(
        conn: sqlite3.Connection,
        workspace: str,
        writes: Sequence[EntityWrite],
        *,
        rebuilding: bool = False,
    ) -> None:
        rows = entity_rows(workspace, writes)
        for table in ("entity_keys", "open_conflicts", "entity_claims"):
            conn.executemany(
                f"DELETE FROM {table} WHERE workspace=? AND entity_type=? AND entity_id=?",
                rows.stale,
            )
        conn.executemany("INSERT OR REPLACE INTO entities VALUES (?,?,?,?,?,?,?,?)", rows.entities)
        conn.executemany("INSERT INTO entity_keys VALUES (?,?,?,?)", rows.keys)
        conn.executemany("INSERT INTO open_conflicts VALUES (?,?,?,?,?,?)", rows.conflicts)
        for claim in claim_rows(workspace, writes):
            taken = conn.execute(
                "INSERT INTO entity_claims VALUES (?,?,?,?) ON CONFLICT DO NOTHING", claim
            )
            # a rebuild keeps the first claimant of a claim the log gives twice (written
            # before claims were kept); a write never takes another entity's claim
            if taken.rowcount == 0 and not rebuilding:
                raise SlotUnavailable(claim[1])

    # --- reading ----------------------------------------------------------------------------

    async def read_entity(
        self, workspace: str, entity_type: str, entity_id: str, *, until: datetime | None = None
    ) -> list[Event]:
        return await self._run(self._read_entity, workspace, entity_type, entity_id, until)

    def _read_entity(
        self, workspace: str, entity_type: str, entity_id: str, until: datetime | None
    ) -> list[Event]:
        sql = (
            f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace=? AND entity_type=? "
            "AND entity_id=?"
        )
        args: list[Any] = [workspace, entity_type, entity_id]
        if until is not None:
            sql += " AND recorded_at <= ?"
            args.append(utc(until))
        return [event_from_row(r) for r in self.conn.execute(sql + " ORDER BY version", args)]

    async def get_event(self, workspace: str, event_id: str) -> Event | None:
        def read() -> Event | None:
            row = self.conn.execute(
                f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE id = ? AND workspace = ?",
                (event_id, workspace),
            ).fetchone()
            return None if row is None else event_from_row(row)

        return await self._run(read)

    async def read_log(
        self,
        workspace: str,
        after: LogPosition,
        limit: int = 1000,
        *,
        entity_types: Collection[str] | None = None,
    ) -> LogPage:
        return await self._run(self._read_log, workspace, after, limit, entity_types)

    def _read_log(
        self,
        workspace: str,
        after: LogPosition,
        limit: int,
        entity_types: Collection[str] | None,
    ) -> LogPage:
        # Every tx is 0 here, so log order is seq order: a seq range, which the (workspace, tx,
        # seq) index serves as one (a (tx, seq) row comparison would scan the whole log).
        since = after.seq if after.tx == 0 else (-1 if after.tx < 0 else 1 << 62)
        if entity_types is None:
            rows = self.conn.execute(
                f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace=? AND tx=0 "
                "AND seq > ? ORDER BY seq LIMIT ?",
                (workspace, since, limit),
            ).fetchall()
            return log_page(rows, after, limit, None)
        # The newest event first: the filtered read stops there, so one appended meanwhile (by
        # another process) is beyond the page's position and read next time.
        head = self.conn.execute(
            "SELECT max(seq) FROM events WHERE workspace=? AND tx=0", (workspace,)
        ).fetchone()[0]
        if head is None:
            return LogPage(events=[], position=after)
        types = sorted(entity_types)
        rows = self.conn.execute(
            f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace=? AND tx=0 AND seq > ? "
            f"AND seq <= ? AND entity_type IN ({','.join('?' * len(types))}) "
            "ORDER BY seq LIMIT ?",
            (workspace, since, head, *types, limit),
        ).fetchall()
        return log_page(rows, after, limit, LogPosition(tx=0, seq=head))

    async def get_state(
        self, workspace: str, entity_type: str, entity_id: str
    ) -> EntityState | None:
        return await self._run(self._get_state, workspace, entity_type, entity_id)

    def _get_state(self, workspace: str, entity_type: str, entity_id: str) -> EntityState | None:
        row = self.conn.execute(
            "SELECT state FROM entities WHERE workspace=? AND entity_type=? AND entity_id=?",
            (workspace, entity_type, entity_id),
        ).fetchone()
        return state_from_json(workspace, row[0]) if row else None

    async def find(
        self, workspace: str, key: str, entity_type: str | None = None
    ) -> list[EntityState]:
        return await self._run(self._find, workspace, key, entity_type)

    def _find(self, workspace: str, key: str, entity_type: str | None) -> list[EntityState]:
        sql = (
            "SELECT e.state FROM entity_keys k JOIN entities e ON e.workspace=k.workspace "
            "AND e.entity_type=k.entity_type AND e.entity_id=k.entity_id "
            "WHERE k.workspace=? AND k.key=?"
        )
        args: list[Any] = [workspace, key]
        if entity_type is not None:
            sql += " AND k.entity_type=?"
            args.append(entity_type)
        rows = self.conn.execute(sql + " ORDER BY k.entity_type, k.entity_id LIMIT 100", args)
        return [state_from_json(workspace, r[0]) for r in rows]

    async def get_record(self, workspace: str, key: RecordKey) -> RecordRow | None:
        return await self._run(self._get_record, workspace, key)

    def _get_record(self, workspace: str, key: RecordKey) -> RecordRow | None:
        row = self.conn.execute(
            "SELECT entity_type, entity_id, content_hash, snapshot, last_event_id "
            "FROM source_records WHERE workspace=? AND data_source=? AND resource_type=? "
            "AND external_id=?",
            (workspace, key.data_source, key.resource_type, key.external_id),
        ).fetchone()
        return record_from_row(key, row) if row else None

    async def record_entities(
        self, workspace: str, keys: Sequence[RecordKey]
    ) -> dict[RecordKey, tuple[str, str]]:
        return await self._run(self._record_entities, workspace, keys)

    def _record_entities(
        self, workspace: str, keys: Sequence[RecordKey]
    ) -> dict[RecordKey, tuple[str, str]]:
        found: dict[RecordKey, tuple[str, str]] = {}
        by_source: dict[tuple[str, str], dict[str, RecordKey]] = {}
        for key in keys:
            by_source.setdefault((key.data_source, key.resource_type), {})[key.external_id] = key
        for (data_source, resource_type), wanted in by_source.items():
            for chunk in _chunks(list(wanted)):
                marks = ",".join("?" * len(chunk))
                for external_id, entity_type, entity_id in self.conn.execute(
                    "SELECT external_id, entity_type, entity_id FROM source_records "
                    "WHERE workspace=? AND data_source=? AND resource_type=? "
                    f"AND external_id IN ({marks})",
                    (workspace, data_source, resource_type, *chunk),
                ):
                    found[wanted[external_id]] = (entity_type, entity_id)
        return found

    async def conflicts(
        self, workspace: str, entity_type: str | None = None, entity_id: str | None = None
    ) -> list[ConflictRow]:
        return await self._run(self._conflicts, workspace, entity_type, entity_id)

    def _conflicts(
        self, workspace: str, entity_type: str | None, entity_id: str | None
    ) -> list[ConflictRow]:
        sql = "SELECT entity_type, entity_id, body FROM open_conflicts WHERE workspace=?"
        args: list[Any] = [workspace]
        if entity_type is not None and entity_id is not None:
            sql += " AND entity_type=? AND entity_id=?"
            args += [entity_type, entity_id]
        return [
            ConflictRow(entity_type=t, entity_id=i, conflict=conflict_from_body(body))
            for t, i, body in self.conn.execute(sql + " ORDER BY conflict_id", args)
        ]

    async def counts(self, workspace: str) -> Counts:
        return await self._run(self._counts, workspace)

    def _counts(self, workspace: str) -> Counts:
        conn = self.conn
        entities = dict(
            conn.execute(
                "SELECT entity_type, count(*) FROM entities WHERE workspace=? "
                "AND merged_into IS NULL GROUP BY entity_type ORDER BY entity_type",
                (workspace,),
            ).fetchall()
        )
        (events,) = conn.execute(
            "SELECT count(*) FROM events WHERE workspace=?", (workspace,)
        ).fetchone()
        (conflicts,) = conn.execute(
            "SELECT count(*) FROM open_conflicts WHERE workspace=?", (workspace,)
        ).fetchone()
        return Counts(entities=entities, events=events, open_conflicts=conflicts)

    async def workspaces(self) -> list[str]:
        return await self._run(
            lambda: [r[0] for r in self.conn.execute("SELECT DISTINCT workspace FROM entities")]
        )

    # --- rebuild ----------------------------------------------------------------------------

    async def rebuild(self, workspace: str) -> int:
        return await self._run(self._rebuild, workspace)

    def _rebuild(self, workspace: str) -> int:
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS}, tx FROM events WHERE workspace=? "
                "ORDER BY entity_type, entity_id, version",
                (workspace,),
            )
            grouped: dict[tuple[str, str], list[Event]] = {}
            for row in rows:
                event = event_from_row(row)
                grouped.setdefault((event.entity_type, event.entity_id), []).append(event)
            writes = rebuild_writes(workspace, grouped, self.thresholds)
            conn.execute("DELETE FROM entities WHERE workspace=?", (workspace,))
            conn.execute("DELETE FROM entity_keys WHERE workspace=?", (workspace,))
            conn.execute("DELETE FROM open_conflicts WHERE workspace=?", (workspace,))
            conn.execute("DELETE FROM entity_claims WHERE workspace=?", (workspace,))
            self._save_entities(conn, workspace, writes, rebuilding=True)
            return len(writes)

    async def close(self) -> None:
        await self.database.close()
