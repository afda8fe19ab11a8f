"""The runner's storage port: leases, cursors, poll outcomes, record versions and request budgets
(docs/design.md §4, §7). The connectors' part of it
(:class:`~ehrbridge.connectors.source.PollState`) is declared in the connector
contract, the budgets' in :mod:`ehrbridge.budget`.

Two adapters share the world model's database: :mod:`ehrbridge.runner.sqlite` and
:mod:`ehrbridge.runner.postgres`; one contract suite proves both. :func:`open_runner_store` picks
the adapter for an opened world-model store.
"""

from __future__ import annotations

from typing import Protocol

from ehrbridge.budget import Budgets
from ehrbridge.connectors.source import PollOutcome, PollState
from ehrbridge.errors import InvalidInput
from ehrbridge.leases import Leases
from ehrbridge.worldmodel.store import Store


class PollLog(Protocol):
    """The recorded outcome of every poll, from which health is derived."""

    async def record_outcome(self, outcome: PollOutcome) -> None:
        """Record one poll's outcome."""

    async def recent_outcomes(
        self, workspace: str, source: str | None = None, limit: int = 50
    ) -> list[PollOutcome]:
        """The latest outcomes per (source, resource type), newest first within each."""


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
