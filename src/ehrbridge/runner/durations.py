"""Durations as written in the runner's config: ``30s``, ``5m``, ``1h``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """A duration from text; ``ValueError`` if it is not one.

    >>> [parse_duration(t).total_seconds() for t in ("30s", "5m", "1h30m", "250ms")]
    [30.0, 300.0, 5400.0, 0.25]
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ValueError: not a duration: use a number and a unit (ms, s, m, h, d), e.g. 30s, 5m, 1h
    """
    stripped = text.strip()
    parts = _PART.findall(stripped)
    if not stripped or "".join(n + u for n, u in parts) != stripped:
        raise ValueError(
            "not a duration: use a number and a unit (ms, s, m, h, d), e.g. 30s, 5m, 1h"
        )
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))
