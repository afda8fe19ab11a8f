"""The runner's storage port: leases, cursors, poll outcomes, record versions and request budgets
(docs/design.md §4, §7). The connectors' part of it
(:class:`~ehrbridge.connectors.source.PollState`) is declared in the connector
contract, the budgets' in :mod:`ehrbridge.budget`.

The adapters live in :mod:`ehrbridge.storage`, one per backend, on the world model's database;
one contract suite (``tests/integration/storage/test_runner.py``) proves each.
"""

from __future__ import annotations

from typing import Protocol

from ehrbridge.budget import Budgets
from ehrbridge.connectors.source import PollOutcome, PollState
from ehrbridge.leases import Leases


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
