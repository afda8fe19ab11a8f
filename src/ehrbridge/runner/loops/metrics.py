"""The ``metrics`` loop and the ``/metrics`` endpoint it feeds (only with ``runner.metrics``).

The loop reloads the recent poll outcomes that the health gauges are derived from, and, with
the outbox, its depth per sink and the dispatchers' saved sink states that the outbound metrics
are derived from, so polls and deliveries by other runners count (docs/design.md §7, §9).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from ehrbridge.errors import InvalidInput, StorageError
from ehrbridge.outbound.outbox import Outbox
from ehrbridge.runner.config import MetricsConfig
from ehrbridge.runner.metrics import MetricsServer, RunnerMetrics
from ehrbridge.runner.store import PollLog
from ehrbridge.times import pause

log = logging.getLogger("ehrbridge.runner")
#: how often the ``metrics`` loop reloads the recent poll outcomes (a usual scrape interval)
METRICS_REFRESH = timedelta(seconds=15)


class MetricsLoop:
    """Seeds ``metrics`` from the workspace's recent poll outcomes (and, with ``outbox``, its
    depth and sink states) every :data:`METRICS_REFRESH`."""

    name = "metrics"

    def __init__(
        self,
        metrics: RunnerMetrics,
        outcomes: PollLog,
        workspace: str,
        outbox: Outbox | None = None,
    ) -> None:
        self.metrics = metrics
        self.outcomes = outcomes
        self.workspace = workspace
        self.outbox = outbox

    async def run(self, stop: asyncio.Event) -> None:
        while True:
            await self.step()
            if await pause(METRICS_REFRESH, stop):
                return

    async def step(self) -> None:
        """Reload once; a store that cannot answer leaves the last figures (and a warning)."""
        try:
            self.metrics.seed(await self.outcomes.recent_outcomes(self.workspace))
        except StorageError as exc:
            log.warning("metrics: could not read the poll outcomes: %s", exc)
        if self.outbox is None:
            return
        try:
            depths = await self.outbox.depth(self.workspace)
            states = await self.outbox.sink_states(self.workspace)
        except StorageError as exc:
            log.warning("metrics: could not read the outbox: %s", exc)
            return
        self.metrics.seed_outbox(depths, states)


def serve_metrics(wanted: MetricsConfig, metrics: RunnerMetrics) -> MetricsServer:
    """Serve ``GET /metrics`` as ``runner.metrics`` asks; :class:`InvalidInput` when it cannot."""
    try:
        token = None if wanted.token is None else wanted.token.resolve()
        server = metrics.serve(wanted.host, wanted.port, token=token)
    except OSError as exc:
        raise InvalidInput(
            f"runner.metrics: cannot serve on {wanted.host}:{wanted.port}: {exc.strerror}"
        ) from exc
    log.info("metrics on http://%s:%d/metrics", wanted.host, server.port)
    return server
