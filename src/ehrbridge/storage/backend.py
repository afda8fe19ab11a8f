"""An opened database: the ports of every layer on it, and one way to close it (docs/design.md §4).

Each field is a port declared in its own layer; the adapters behind them are one backend's
(:mod:`ehrbridge.storage.sqlite` or :mod:`ehrbridge.storage.postgres`), all on one database, so
a world-model write and the audit entries or runner rows beside it can share a transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from ehrbridge.api.store import SecurityStore
from ehrbridge.outbound.outbox import Outbox
from ehrbridge.review.queue import ReviewQueue
from ehrbridge.runner.store import RunnerStore
from ehrbridge.worldmodel.store import Store


@dataclass(frozen=True, kw_only=True)
class Backend:
    """The ports on one opened database."""

    #: the world model's event log and projections
    worldmodel: Store
    #: the runner's leases, cursors, poll outcomes, record versions and request budgets
    runner: RunnerStore
    #: API keys and the audit trail
    security: SecurityStore
    #: the human review queue
    review: ReviewQueue
    #: what goes to the sinks: items, claims, attempts, and the dispatchers' sink states
    outbox: Outbox
    _close: Callable[[], Awaitable[None]]

    async def close(self) -> None:
        """Close the database (every port with it); closing twice is harmless."""
        await self._close()

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
