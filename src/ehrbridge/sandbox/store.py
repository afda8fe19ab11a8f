"""Resource versions in SQLite: one row per version, and a pointer to each resource's current one.

https://hl7.org/fhir/R4/http.html#versioning: ``meta.versionId`` counts 1, 2, 3 per resource and
``meta.lastUpdated`` is the server's clock, strictly increasing over all writes so that polling by
``_lastUpdated`` then id sees every version exactly once. Instants are stored in one fixed-width
UTC form, so SQL compares them as text.

The store is synchronous (a sandbox, one connection, sub-millisecond statements) and used from one
thread at a time: the server's event loop. :meth:`ResourceStore.atomic` nests with savepoints, so
a transaction Bundle is one savepoint holding each entry's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import orjson

#: The stored form of an instant: ``2026-11-24T15:52:52.123456Z``.
INSTANT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resource_version (
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    json BLOB,
    method TEXT,
    status INTEGER,
    PRIMARY KEY (type, id, version)
);
CREATE TABLE IF NOT EXISTS resource_current (
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (type, id)
);
CREATE INDEX IF NOT EXISTS resource_current_by_updated
    ON resource_current (type, deleted, last_updated, id);
"""
# Added after the first release: a sandbox file kept across runs gets them on open (its older
# versions keep NULL, and history derives their method and status as it used to).
_ADDED_COLUMNS = {"method": "TEXT", "status": "INTEGER"}
_HISTORY_INDEXES = """
CREATE INDEX IF NOT EXISTS resource_version_by_updated ON resource_version (last_updated);
CREATE INDEX IF NOT EXISTS resource_version_by_type_updated
    ON resource_version (type, last_updated);
"""

_COLUMNS = "v.type, v.id, v.version, v.last_updated, v.deleted, v.json, v.method, v.status"
#: The interactions a version can record (``Bundle.entry.request.method`` of its history entry).
METHODS = ("POST", "PUT", "PATCH", "DELETE")


def format_instant(when: datetime) -> str:
    """An aware datetime in the stored form.

    >>> format_instant(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    '2026-01-02T03:04:05.000006Z'
    """
    return when.astimezone(UTC).strftime(INSTANT_FORMAT)


@dataclass(frozen=True, kw_only=True)
class Version:
    """One stored version of a resource."""

    #: the resource type, e.g. ``Patient``
    type: str
    #: the logical id
    id: str
    #: 1, 2, 3, ...
    version: int
    #: when it was written, in the stored form
    last_updated: str
    #: whether this version is a deletion (then ``resource`` is None)
    deleted: bool
    #: the resource with ``meta.versionId`` and ``meta.lastUpdated`` set
    resource: dict[str, Any] | None
    #: the interaction that wrote it: POST, PUT, PATCH or DELETE
    method: str = "PUT"
    #: the HTTP status it was answered with: 201 when it created the resource, else 200
    status: int = 200


def _version(row: tuple[Any, ...]) -> Version:
    type_, id_, version, last_updated, deleted, body, method, status = row
    if method is None:  # written before methods were recorded
        method = "DELETE" if deleted else ("POST" if version == 1 else "PUT")
    return Version(
        type=type_,
        id=id_,
        version=version,
        last_updated=last_updated,
        deleted=bool(deleted),
        resource=None if body is None else orjson.loads(body),
        method=method,
        status=status or (201 if version == 1 and not deleted else 200),
    )


class ResourceStore:
    """FHIR resources and their versions in one SQLite database (a file, or ``:memory:``)."""

    def __init__(
        self, path: str | Path = ":memory:", *, now: Callable[[], datetime] | None = None
    ) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(resource_version)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE resource_version ADD COLUMN {column} {kind}")
        self._db.executescript(_HISTORY_INDEXES)
        self._now = now or (lambda: datetime.now(UTC))
        self._savepoints = count()
        newest = self._db.execute("SELECT max(last_updated) FROM resource_version").fetchone()[0]
        self._last = (
            datetime.strptime(newest, INSTANT_FORMAT).replace(tzinfo=UTC) if newest else None
        )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Everything written inside is kept together, or rolled back if the block raises."""
        name = f"sp{next(self._savepoints)}"
        self._db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._db.execute(f"ROLLBACK TO {name}")
            self._db.execute(f"RELEASE {name}")
            raise
        self._db.execute(f"RELEASE {name}")

    @contextmanager
    def writing_as_of(self, moment: datetime) -> Iterator[None]:
        """Write as if the clock read ``moment`` (counting on from it) inside the block; writes
        after it are back on the clock, and still after every write before them."""
        started, real = self._now(), self._now
        self._now = lambda: moment + (real() - started)
        try:
            yield
        finally:
            self._now = real

    def _tick(self) -> str:
        """The next ``lastUpdated``: now, or just after the last write if the clock lags."""
        now = self._now()
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return format_instant(now)

    def reserve_instant(self) -> str:
        """An instant that every write so far is at or before and every later write is after:
        a Bulk Data export's ``transactionTime``."""
        return self._tick()

    def types(self) -> list[str]:
        """The resource types with at least one resource that is not deleted, sorted."""
        rows = self._db.execute(
            "SELECT DISTINCT type FROM resource_current WHERE deleted = 0 ORDER BY type"
        )
        return [row[0] for row in rows]

    def current(self, resource_type: str, id: str) -> Version | None:
        """The current version (perhaps a deletion), or None if the resource never existed."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM resource_current c JOIN resource_version v"
            " USING (type, id, version) WHERE c.type = ? AND c.id = ?",
            (resource_type, id),
        ).fetchone()
        return None if row is None else _version(row)

    def version(self, resource_type: str, id: str, version: int) -> Version | None:
        """One version, or None."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM resource_version v WHERE type = ? AND id = ? AND version = ?",
            (resource_type, id, version),
        ).fetchone()
        return None if row is None else _version(row)

    def history(self, resource_type: str, id: str) -> list[Version]:
        """Every version of a resource, newest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM resource_version v WHERE type = ? AND id = ?"
            " ORDER BY version DESC",
            (resource_type, id),
        )
        return [_version(row) for row in rows]

    def put(
        self, resource_type: str, id: str, resource: dict[str, Any], *, method: str = "PUT"
    ) -> Version:
        """Store a new version of ``resource`` (a copy gets the server's ``meta``), written by
        ``method`` (POST, PUT or PATCH)."""
        return self._append(resource_type, id, resource, method)

    def delete(self, resource_type: str, id: str) -> Version:
        """Store a deletion as the resource's new version."""
        return self._append(resource_type, id, None, "DELETE")

    def _append(
        self, resource_type: str, id: str, resource: dict[str, Any] | None, method: str
    ) -> Version:
        if method not in METHODS:
            raise ValueError(f"unsupported method {method!r}")
        with self.atomic():
            row = self._db.execute(
                "SELECT version, deleted FROM resource_current WHERE type = ? AND id = ?",
                (resource_type, id),
            ).fetchone()
            version = 1 if row is None else row[0] + 1
            # A write creates the resource when it is new or was deleted (update as create).
            status = 201 if resource is not None and (row is None or row[1]) else 200
            last_updated = self._tick()
            body = None
            if resource is not None:
                meta = {**(resource.get("meta") or {})}
                meta.update(versionId=str(version), lastUpdated=last_updated)
                resource = {**resource, "resourceType": resource_type, "id": id, "meta": meta}
                body = orjson.dumps(resource)
            deleted = resource is None
            # The (type, id, version) key refuses a second writer of the same version.
            self._db.execute(
                "INSERT INTO resource_version"
                " (type, id, version, last_updated, deleted, json, method, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (resource_type, id, version, last_updated, deleted, body, method, status),
            )
            self._db.execute(
                "INSERT INTO resource_current (type, id, version, last_updated, deleted)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (type, id) DO UPDATE SET"
                " version = excluded.version, last_updated = excluded.last_updated,"
                " deleted = excluded.deleted",
                (resource_type, id, version, last_updated, deleted),
            )
        return Version(
            type=resource_type,
            id=id,
            version=version,
            last_updated=last_updated,
            deleted=deleted,
            resource=resource,
            method=method,
            status=status,
        )

    @staticmethod
    def _filters(
        where: tuple[tuple[str, str], ...], ids: tuple[str, ...]
    ) -> tuple[list[str], list[Any]]:
        sql: list[str] = []
        args: list[Any] = []
        for op, instant in where:
            if op not in (">=", "<"):
                raise ValueError(f"unsupported operator {op!r}")
            sql.append(f"AND c.last_updated {op} ?")
            args.append(instant)
        if ids:
            sql.append(f"AND c.id IN ({', '.join('?' * len(ids))})")
            args.extend(ids)
        return sql, args

    def scan(
        self,
        resource_type: str,
        *,
        where: tuple[tuple[str, str], ...] = (),
        ids: tuple[str, ...] = (),
        after: tuple[str, str] | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> Iterator[Version]:
        """Current, not deleted resources of a type, by ``lastUpdated`` then id, streamed.

        ``where`` holds (operator, instant) bounds on ``lastUpdated`` (operators ``>=``, ``<``);
        ``after`` starts past a (lastUpdated, id) key, for keyset paging; ``limit`` stops early;
        ``descending`` reverses the order (and ``after`` then means before).
        """
        filters, args = self._filters(where, ids)
        sql = [
            f"SELECT {_COLUMNS} FROM resource_current c JOIN resource_version v"
            " USING (type, id, version) WHERE c.type = ? AND c.deleted = 0",
            *filters,
        ]
        args.insert(0, resource_type)
        if after is not None:
            past = "<" if descending else ">"
            sql.append(f"AND (c.last_updated {past} ? OR (c.last_updated = ? AND c.id {past} ?))")
            args.extend((after[0], after[0], after[1]))
        sql.append(
            "ORDER BY c.last_updated DESC, c.id DESC"
            if descending
            else "ORDER BY c.last_updated, c.id"
        )
        if limit is not None:
            sql.append("LIMIT ?")
            args.append(limit)
        for row in self._db.execute(" ".join(sql), args):
            yield _version(row)

    def count(
        self,
        resource_type: str,
        *,
        where: tuple[tuple[str, str], ...] = (),
        ids: tuple[str, ...] = (),
    ) -> int:
        """How many resources :meth:`scan` would yield without a cursor or limit."""
        filters, args = self._filters(where, ids)
        sql = " ".join(
            [
                "SELECT count(*) FROM resource_current c WHERE c.type = ? AND c.deleted = 0",
                *filters,
            ]
        )
        return int(self._db.execute(sql, [resource_type, *args]).fetchone()[0])

    def as_of(
        self,
        resource_type: str,
        until: str,
        *,
        since: str | None = None,
        after_id: str = "",
        limit: int = 1000,
    ) -> list[Version]:
        """Resources of a type as they were at instant ``until``, by id, after ``after_id``.

        Each resource's newest version written at or before ``until`` (left out when that version
        is a deletion, or when ``since`` is given and it was written at or before ``since``):
        a snapshot that later writes do not change, read in keyset pages of ``limit``.
        """
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM resource_version v WHERE v.type = ? AND v.id > ?"
            " AND v.version = (SELECT max(w.version) FROM resource_version w"
            " WHERE w.type = v.type AND w.id = v.id AND w.last_updated <= ?)"
            " AND v.deleted = 0 AND v.last_updated > ? ORDER BY v.id LIMIT ?",
            (resource_type, after_id, until, since or "", limit),
        )
        return [_version(row) for row in rows]

    def changes(
        self,
        resource_type: str | None = None,
        *,
        since: str | None = None,
        before: str | None = None,
        limit: int = 1000,
    ) -> list[Version]:
        """Versions of one type (or of every type), newest first: type- and system-level history.

        ``since`` keeps versions written at or after that instant (R4's ``_since``); ``before``
        those written before it
        (a keyset cursor: instants are unique over all writes, :meth:`_tick`).
        """
        sql = [f"SELECT {_COLUMNS} FROM resource_version v WHERE 1 = 1"]
        args: list[Any] = []
        for clause, value in (
            ("AND v.type = ?", resource_type),
            ("AND v.last_updated >= ?", since),
            ("AND v.last_updated < ?", before),
        ):
            if value is not None:
                sql.append(clause)
                args.append(value)
        sql.append("ORDER BY v.last_updated DESC LIMIT ?")
        args.append(limit)
        return [_version(row) for row in self._db.execute(" ".join(sql), args)]

    def count_changes(self, resource_type: str | None = None, *, since: str | None = None) -> int:
        """How many versions :meth:`changes` would yield without a cursor or limit."""
        sql = ["SELECT count(*) FROM resource_version v WHERE 1 = 1"]
        args: list[Any] = []
        if resource_type is not None:
            sql.append("AND v.type = ?")
            args.append(resource_type)
        if since is not None:
            sql.append("AND v.last_updated >= ?")
            args.append(since)
        return int(self._db.execute(" ".join(sql), args).fetchone()[0])

    def clear(self) -> None:
        """Forget every resource."""
        with self.atomic():
            self._db.execute("DELETE FROM resource_version")
            self._db.execute("DELETE FROM resource_current")
