"""In-process fakes that tests share, here rather than in ``conftest.py`` so a test of any package
(and a project built on ehrbridge) can use them: a clock moved by hand and a recorded sleep.

Nothing in :mod:`ehrbridge` imports this module.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

#: when a :class:`FakeClock` starts unless told
CLOCK_START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand: set ``now`` or call :meth:`advance`.

    >>> clock = FakeClock()
    >>> clock.advance(timedelta(minutes=5)) - CLOCK_START
    datetime.timedelta(seconds=300)
    """

    def __init__(self, now: datetime = CLOCK_START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta = timedelta(minutes=1)) -> datetime:
        """Move the clock forward by ``delta``; returns the new time."""
        self.now += delta
        return self.now


class RecordedSleeps:
    """A stand-in for ``asyncio.sleep`` (a client's wait between retries, a Retry-After) that
    records each delay asked for and waits ``real`` seconds instead, so the event loop runs but
    the test does not wait out the delays.

    >>> sleeps = RecordedSleeps()
    >>> asyncio.run(sleeps(2.0))
    >>> sleeps.delays
    [2.0]
    """

    def __init__(self, real: float = 0.0) -> None:
        self.real = real
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(self.real)
