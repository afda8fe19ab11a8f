"""In-process fakes that tests share, here rather than in ``conftest.py`` so a test of any package
(and a project built on ehrbridge) can use them: a clock moved by hand, a recorded sleep, and an
outbox item as a sink receives it.

Nothing in :mod:`ehrbridge` imports this module.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ehrbridge.outbound.outbox import ItemStatus, OutboxItem

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


#: when an :func:`outbox_item` was queued unless told
ITEM_TIME = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def outbox_item(**changes: Any) -> OutboxItem:
    """An outbox item as a sink receives it, without storage: a claimed ``upsert`` of
    ``Patient/e1`` for the sink ``ehr``, with ``changes`` (any :class:`OutboxItem` field).

    >>> outbox_item(sink="clinic", payload={"fields": {}}).sink
    'clinic'
    """
    base = OutboxItem(
        id="item-1",
        workspace="ws",
        sink="ehr",
        key="ob-ehr-0001",
        lane="Patient/e1",
        position=1,
        entity_type="Patient",
        entity_id="e1",
        event_id="ev1",
        operation="upsert",
        payload={},
        workflow=None,
        step=0,
        status=ItemStatus.PROCESSING,
        attempts=0,
        created_at=ITEM_TIME,
        updated_at=ITEM_TIME,
        next_attempt_at=ITEM_TIME,
        holder="w1",
        lease_until=ITEM_TIME,
        epoch=1,
        in_doubt=False,
        last_error=None,
        result=None,
        confirmed_at=None,
    )
    return replace(base, **changes)
