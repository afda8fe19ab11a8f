"""Business hours: the window in which a data source may be polled."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_days(value: str | Iterable[str]) -> frozenset[int]:
    """Weekday numbers (Monday 0) from ``mon-fri``, ``sat,sun`` or a list of names.

    >>> [sorted(parse_days(d)) for d in ("mon-fri", ["sat", "sun"], "fri-mon")]
    [[0, 1, 2, 3, 4], [5, 6], [0, 4, 5, 6]]
    """
    if not isinstance(value, str | list | tuple):  # e.g. ``days:`` left empty
        raise ValueError("expected day names such as mon-fri or [sat, sun]")
    parts = value.split(",") if isinstance(value, str) else list(value)
    days: set[int] = set()
    for part in parts:
        if not isinstance(part, str):
            raise ValueError("expected day names such as mon-fri or [sat, sun]")
        first, _, last = part.strip().lower().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"expected day names ({', '.join(DAYS)}) or a range such as mon-fri")
        start = DAYS.index(first)
        stop = DAYS.index(last) if last else start
        days.update((start + n) % 7 for n in range((stop - start) % 7 + 1))
    return frozenset(days)


@dataclass(frozen=True, kw_only=True)
class BusinessHours:
    """Days and a daily window in a time zone; an end before the start runs past midnight."""

    days: frozenset[int]
    start: time
    end: time
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None

    def is_open(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) is inside the window.

        >>> from datetime import UTC
        >>> hours = BusinessHours(days=parse_days("mon-fri"), start=time(8), end=time(18))
        >>> [hours.is_open(datetime(2026, 11, day, 9, tzinfo=UTC)) for day in (23, 22)]
        [True, False]
        """
        local = moment.astimezone(ZoneInfo(self.timezone))
        now = local.time()
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= now < self.end
        # A window past midnight belongs to the day it started.
        if now >= self.start:
            return local.weekday() in self.days
        return now < self.end and (local.weekday() - 1) % 7 in self.days

    def next_open(self, moment: datetime) -> datetime:
        """The first moment at or after ``moment`` inside the window (within a week).

        >>> from datetime import UTC
        >>> hours = BusinessHours(days=parse_days("mon-fri"), start=time(8), end=time(18))
        >>> hours.next_open(datetime(2026, 11, 21, 12, tzinfo=UTC)).isoformat()
        '2026-11-23T08:00:00+00:00'
        """
        if self.is_open(moment):
            return moment
        zone = ZoneInfo(self.timezone)
        local = moment.astimezone(zone)
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            opening = datetime.combine(day, self.start, tzinfo=zone)
            if opening >= local and opening.weekday() in self.days:
                return opening.astimezone(moment.tzinfo)
        return moment
