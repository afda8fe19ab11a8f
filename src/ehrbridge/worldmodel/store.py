"""The world model's storage port: what it needs of a database (docs/design.md §4).

The adapters live in :mod:`ehrbridge.storage`, one package per backend; one contract suite
(``tests/integration/storage/test_worldmodel.py``) proves each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ehrbridge.audit import WriteAudit
from ehrbridge.worldmodel.events import Event, RecordKey
from ehrbridge.worldmodel.planner import (
    AppendResult,
    RecordRow,
    Submission,
)
from ehrbridge.worldmodel.projection import EntityState, OpenConflict


@dataclass(frozen=True, kw_only=True, order=True)
class LogPosition:
    """Where a log reader stands: after the event at (tx, seq). Compare as a tuple."""

    tx: int = -1
    seq: int = -1


START = LogPosition()

#: the source kinds whose appends wake :meth:`Store.watch`: what the agent heard (the review loop
#: judges it) and the decisions on it (the outbound feed queues what they let through); imports
#: and polls do not wake anyone: the readers' periodic catch-up finds them
WATCHED_KINDS = frozenset({"voice", "review", "operator"})


@dataclass(frozen=True, kw_only=True)
class LogPage:
    events: list[Event]
    position: LogPosition  #: pass back to read on from here


@dataclass(frozen=True, kw_only=True)
class ConflictRow:
    """An open conflict, listed per workspace."""

    entity_type: str
    entity_id: str
    conflict: OpenConflict


@dataclass(frozen=True, kw_only=True)
class Counts:
    entities: dict[str, int]  #: per entity type (merged members not counted)
    events: int
    open_conflicts: int


class EventLog(Protocol):
    """Append and read events."""

    async def append(
        self, workspace: str, items: Sequence[Submission], *, audit: WriteAudit | None = None
    ) -> list[AppendResult]:
        """Record a batch atomically: every event with its projection, or nothing; with
        ``audit``, the entries it returns for the results go into the audit trail in the same
        transaction."""

    async def read_entity(
        self, workspace: str, entity_type: str, entity_id: str, *, until: datetime | None = None
    ) -> list[Event]:
        """An entity's own events in order; with ``until``, those recorded by then."""

    async def get_event(self, workspace: str, event_id: str) -> Event | None:
        """One event of ``workspace`` by its id; None when it has none of that id."""

    async def read_log(
        self,
        workspace: str,
        after: LogPosition,
        limit: int = 1000,
        *,
        entity_types: Collection[str] | None = None,
    ) -> LogPage:
        """Events after ``after`` in log order; never skips one that commits later.

        With ``entity_types``, only the events of those types, filtered by the database: a page
        that is not full moves its position to the newest event the read looked past, so a
        follower of a few types never reads the others' events again."""


class StateStore(Protocol):
    """Read projections and their indexes."""

    async def get_state(
        self, workspace: str, entity_type: str, entity_id: str
    ) -> EntityState | None:
        """An entity's current projected state."""

    async def find(
        self, workspace: str, key: str, entity_type: str | None = None
    ) -> list[EntityState]:
        """Entities with a lookup key such as ``phone:+16175550142`` (see ``matching``)."""

    async def get_record(self, workspace: str, key: RecordKey) -> RecordRow | None:
        """What the store remembers of a source record."""

    async def record_entities(
        self, workspace: str, keys: Sequence[RecordKey]
    ) -> dict[RecordKey, tuple[str, str]]:
        """The ``(entity_type, entity_id)`` of each known record among ``keys`` (one round trip
        per few hundred keys; unknown keys are left out)."""

    async def conflicts(
        self, workspace: str, entity_type: str | None = None, entity_id: str | None = None
    ) -> list[ConflictRow]:
        """Open conflicts in the workspace, or of one entity."""

    async def counts(self, workspace: str) -> Counts:
        """Entities per type, events and open conflicts."""


class Store(EventLog, StateStore, Protocol):
    """The whole port, plus lifecycle and rebuild."""

    def resolving(self, workspace: str) -> AbstractAsyncContextManager[None]:
        """Hold the workspace's resolution lock, across processes: a writer that resolves new
        records against the entities known (matching) and writes them holds it from the first
        read to the commit, so two writers never both create one person (docs/design.md,
        "Concurrent writers"). Writes that resolve nothing need not take it."""

    async def rebuild(self, workspace: str) -> int:
        """Recompute every projection from the log; returns the number of entities."""

    async def workspaces(self) -> list[str]:
        """Every workspace with events."""

    async def watch(
        self, workspace: str, wake: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        """Call ``wake`` soon after an append to ``workspace`` with an event of one of
        :data:`WATCHED_KINDS` commits (a hint to read the log now, never a guarantee: a reader
        still reads periodically); returns the function that stops it. On SQLite, appends
        through this store object; on PostgreSQL, appends by any process (``LISTEN/NOTIFY``)."""

    async def close(self) -> None:
        """Release connections."""
