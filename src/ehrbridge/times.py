"""Time as the storage layers and the runner write it (UTC, as fixed-width ISO text), and the
wait every loop makes between its steps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta


def utc(moment: datetime) -> str:
    """A timestamp as ISO text in UTC, fixed width so text order is time order.

    >>> from datetime import timedelta, timezone
    >>> utc(datetime(2026, 12, 2, 9, 30, tzinfo=timezone(timedelta(hours=1))))
    '2026-12-02T08:30:00.000000+00:00'
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


async def pause(delay: timedelta, *events: asyncio.Event) -> bool:
    """Wait ``delay`` or until the first of ``events`` is set; True when one is set.

    >>> stop, other = asyncio.Event(), asyncio.Event()
    >>> async def stopped() -> bool:  # one event set is enough, the other never is
    ...     asyncio.get_running_loop().call_later(0.01, stop.set)
    ...     return await asyncio.wait_for(pause(timedelta(hours=1), other, stop), timeout=60)
    >>> asyncio.run(stopped())
    True
    """
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(
            waits, timeout=delay.total_seconds(), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waits:
            waiter.cancel()
    return any(e.is_set() for e in events)
