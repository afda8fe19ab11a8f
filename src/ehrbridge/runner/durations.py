"""Durations as written in the runner's config: ``30s``, ``5m``, ``1h``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_MILLISECONDS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: the longest duration anywhere in the config: more than a year is a typo
MAX_DURATION = timedelta(days=366)
_NOT_A_DURATION = "not a duration: use a number and a unit (ms, s, m, h, d), e.g. 30s, 5m, 1h"


def parse_duration(text: str) -> timedelta:
    """A duration from text, at most :data:`MAX_DURATION`; ``ValueError`` if it is not one.

    The arithmetic is on whole milliseconds, so no size of number overflows.

    >>> [parse_duration(t).total_seconds() for t in ("30s", "5m", "1h30m", "250ms")]
    [30.0, 300.0, 5400.0, 0.25]
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ValueError: not a duration: use a number and a unit (ms, s, m, h, d), e.g. 30s, 5m, 1h
    >>> parse_duration("99999999999999999999h")
    Traceback (most recent call last):
    ValueError: longer than the longest duration allowed, 366d
    """
    stripped = text.strip()
    parts = _PART.findall(stripped)
    if not stripped or "".join(n + u for n, u in parts) != stripped:
        raise ValueError(_NOT_A_DURATION)
    most = MAX_DURATION // timedelta(milliseconds=1)
    # 13 digits of milliseconds already pass a year: longer numbers are never converted.
    if any(len(n.lstrip("0")) > 13 for n, _ in parts):
        raise ValueError(
            f"longer than the longest duration allowed, {format_duration(MAX_DURATION)}"
        )
    total = sum(int(n) * _MILLISECONDS[u] for n, u in parts)
    if total > most:
        raise ValueError(
            f"longer than the longest duration allowed, {format_duration(MAX_DURATION)}"
        )
    return timedelta(milliseconds=total)


def format_duration(duration: timedelta) -> str:
    """A duration as the config writes it, largest unit first.

    >>> [format_duration(timedelta(seconds=s)) for s in (1, 90, 0.25, 86400 * 366, 0)]
    ['1s', '1m30s', '250ms', '366d', '0s']
    """
    left = duration // timedelta(milliseconds=1)
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        count, left = divmod(left, _MILLISECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
