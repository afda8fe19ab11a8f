"""The runner's loops, one module each, and the protocol they share (docs/design.md §7).

A loop is a name and ``async run(stop)``: it works until ``stop`` is set, finishes the step it
is in and returns. Raising is a bug that stops the whole runner
(:class:`~ehrbridge.errors.LoopFailed`).

::

    refresh   ConfigRefresh: reloads the config file on change and periodically
    poll      PollLoop: one task per (data source, resource type), under the source's lease
    metrics   MetricsLoop: reloads the recent poll outcomes behind the ``/metrics`` gauges

The supervision (named tasks, first failure stops all, graceful stop) is
:class:`ehrbridge.runner.service.Runner`'s; a loop written in its own package is registered there
with one line (see :class:`~ehrbridge.runner.service.Runner`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Loop(Protocol):
    """One of the runner's loops: its task is named ``name``; ``run`` returns once ``stop`` is set.

    Raising from ``run`` is a bug: it stops the runner.
    """

    @property
    def name(self) -> str: ...

    async def run(self, stop: asyncio.Event) -> None: ...


class Waiting:
    """A named slot for a loop that comes later: it only waits for the stop."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
