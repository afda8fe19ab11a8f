"""The runner's storage port: leases, cursors, poll outcomes, record versions and request budgets
(docs/design.md §4, §7).

Two adapters share the world model's database: :mod:`ehrbridge.runner.sqlite` and
:mod:`ehrbridge.runner.postgres`; one contract suite proves both. :func:`open_runner_store` picks
the adapter for an opened world-model store.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ehrbridge.errors import InvalidInput
from ehrbridge.leases import Leases
from ehrbridge.worldmodel.store import Store


@dataclass(frozen=True, kw_only=True)
class PollOutcome:
    """What one poll of one (data source, resource type) did."""

    workspace: str
    source: str
    resource_type: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    #: why the poll failed, never patient data (error class and message)
    error: str | None = None
    #: resources read from the source
    fetched: int = 0
    #: events written to the world model
    events: int = 0
    #: resources read whose version was already stored (skipped before mapping)
    unchanged: int = 0


class Cursors(Protocol):
    """Where each poll stands, as opaque text the poller understands."""

    async def get_cursor(self, workspace: str, source: str, resource_type: str) -> str | None:
        """The stored cursor, or None before the first successful poll."""

    async def set_cursor(
        self, workspace: str, source: str, resource_type: str, cursor: str
    ) -> None:
        """Store the cursor (only after what it covers is stored)."""


class PollLog(Protocol):
    """The recorded outcome of every poll, from which health is derived."""

    async def record_outcome(self, outcome: PollOutcome) -> None:
        """Record one poll's outcome."""

    async def recent_outcomes(
        self, workspace: str, source: str | None = None, limit: int = 50
    ) -> list[PollOutcome]:
        """The latest outcomes per (source, resource type), newest first within each."""


class RecordVersions(Protocol):
    """The version of each record a data source sent that is stored in the world model.

    A token is the source's version id or a digest of the record (:mod:`ehrbridge.connectors`
    decides); a poll skips a record whose token is unchanged, before mapping or storing it.
    """

    async def known_versions(
        self, workspace: str, source: str, resource_type: str, record_ids: Collection[str]
    ) -> dict[str, str]:
        """Record id -> stored token, for those of ``record_ids`` that have one."""

    async def remember_versions(
        self, workspace: str, source: str, resource_type: str, tokens: Mapping[str, str]
    ) -> None:
        """Store record id -> token (only after the records are stored in the world model)."""


#: the longest pause a budget takes (a ``Retry-After`` asking for more is cut to it); a slot further
#: off than this and one interval is taken as left by a clock that went back, and is due
MAX_PAUSE = timedelta(minutes=10)


class Budgets(Protocol):
    """The pace of each request budget, shared by every runner on the database
    (:mod:`ehrbridge.runner.budget` builds on it).

    A budget is a name (``source:<id>``, later ``sink:<id>``) and the earliest moment its next
    request may start. Both methods are one atomic statement, so runners never both take a slot.
    """

    async def take_slot(self, workspace: str, name: str, interval: timedelta) -> timedelta:
        """Take the next request slot if it has come: then move it ``interval`` on and return
        zero. Otherwise take nothing and return how long until it comes."""

    async def pause(self, workspace: str, name: str, delay: timedelta) -> None:
        """No slot for ``delay`` from now (a ``429``'s ``Retry-After``), unless one is
        already further off."""


class PollState(Cursors, RecordVersions, Protocol):
    """What a poller keeps between polls."""


class RunnerStore(Leases, PollLog, PollState, Budgets, Protocol):
    """Everything the runner stores."""


def open_runner_store(store: Store) -> RunnerStore:
    """The runner's storage on the database of an opened world-model store."""
    from ehrbridge.worldmodel.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from ehrbridge.runner.sqlite import SQLiteRunnerStore

        return SQLiteRunnerStore(store)
    from ehrbridge.worldmodel.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from ehrbridge.runner.postgres import PostgresRunnerStore

        return PostgresRunnerStore(store)
    raise InvalidInput(f"no runner storage for {type(store).__name__}")
