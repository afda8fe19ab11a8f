"""The poll loop's port: one poll of one resource type of one data source."""

from __future__ import annotations

from typing import Protocol

from ehrbridge.runner.config import DataSourceConfig, ResourceConfig
from ehrbridge.runner.storage import PollOutcome


class Poller(Protocol):
    """Reads what changed at a data source since the last poll and stores it."""

    async def poll(self, source: DataSourceConfig, resource: ResourceConfig) -> PollOutcome:
        """Poll once; a failure the source or the data caused is an outcome with ``ok`` False
        (anything raised is a bug, and stops the runner loudly)."""

    async def aclose(self) -> None:
        """Release connections."""
