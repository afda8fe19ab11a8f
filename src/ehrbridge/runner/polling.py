"""One poll of one (data source, resource type), timed, with its errors turned into its outcome.

A connector counts into a :class:`~ehrbridge.connectors.source.Polled` and raises what the source
or the data caused; this is the one place that becomes a
:class:`~ehrbridge.connectors.source.PollOutcome`: the poll loop, the demo, the benchmarks and
the tests all poll through :func:`poll_once`. Anything raised that is not an
:class:`~ehrbridge.errors.EhrbridgeError` is a bug and propagates (the poll loop then stops
loudly).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ehrbridge.connectors.source import (
    DataSourceConfig,
    Polled,
    Poller,
    PollOutcome,
    ResourceConfig,
)
from ehrbridge.errors import EhrbridgeError


async def poll_once(
    poller: Poller,
    source: DataSourceConfig,
    resource: ResourceConfig,
    *,
    workspace: str,
    clock: Callable[[], datetime],
) -> PollOutcome:
    """Poll ``resource`` at ``source`` once: the outcome, with the counts so far and, when it
    failed, ``error`` as ``<error class>: <message>`` (or the poll's ``problem``)."""
    started = clock()
    polled = Polled()
    try:
        await poller.poll(source, resource, polled)
    except EhrbridgeError as exc:
        error: str | None = f"{type(exc).__name__}: {exc}"
    else:
        error = polled.problem
    return PollOutcome(
        workspace=workspace,
        source=source.id,
        resource_type=resource.type,
        started_at=started,
        finished_at=clock(),
        ok=error is None,
        error=error,
        fetched=polled.fetched,
        events=polled.events,
        unchanged=polled.unchanged,
    )
