"""Time as the storage layers and the runner write it: UTC, as fixed-width ISO text."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(moment: datetime) -> str:
    """A timestamp as ISO text in UTC, fixed width so text order is time order.

    >>> from datetime import timedelta, timezone
    >>> utc(datetime(2026, 12, 2, 9, 30, tzinfo=timezone(timedelta(hours=1))))
    '2026-12-02T08:30:00.000000+00:00'
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
