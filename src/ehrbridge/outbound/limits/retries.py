"""When a failed item is tried again: exponential backoff with full jitter, a longer
``Retry-After`` first, bounded by attempts and by age (docs/outbound-limits.md)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ehrbridge.errors import SinkError
from ehrbridge.outbound.limits.outcomes import check_positive


@dataclass(frozen=True, kw_only=True)
class RetryLimits:
    """How often and for how long a transiently failing item is tried again."""

    #: attempts in all, the first included; the last failure parks the item as dead
    max_attempts: int = 10
    #: no attempt starts later than this after the item was queued
    max_age: timedelta = timedelta(hours=24)
    #: the first retry waits up to this; each further retry doubles it
    backoff_base: timedelta = timedelta(seconds=1)
    #: the longest backoff (a ``Retry-After`` may ask for longer)
    backoff_max: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ValueError(
                f"RetryLimits.max_attempts must be at least 1, not {self.max_attempts}"
            )
        check_positive(
            "RetryLimits",
            max_age=self.max_age,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
        )
        if self.backoff_max < self.backoff_base:
            raise ValueError("RetryLimits.backoff_max must be at least backoff_base")


@dataclass(frozen=True, kw_only=True)
class Retry:
    """Try the item again, not before ``at``."""

    at: datetime
    #: ``at`` less the moment it was decided
    delay: timedelta


@dataclass(frozen=True, kw_only=True)
class GiveUp:
    """Try the item no more: park it as dead with ``reason`` (beside the error's message)."""

    reason: str


def backoff_ceiling(attempts: int, limits: RetryLimits) -> timedelta:
    """The longest backoff after ``attempts`` failed attempts: ``base * 2 ** (attempts - 1)``, at
    most ``backoff_max``.

    >>> limits = RetryLimits(backoff_base=timedelta(seconds=1), backoff_max=timedelta(seconds=60))
    >>> [int(backoff_ceiling(n, limits).total_seconds()) for n in (1, 2, 3, 6, 7, 500)]
    [1, 2, 4, 32, 60, 60]
    """
    # the exponent is capped so a huge count cannot overflow on its way to backoff_max
    grown = limits.backoff_base.total_seconds() * 2.0 ** min(attempts - 1, 64)
    return timedelta(seconds=min(grown, limits.backoff_max.total_seconds()))


def next_attempt(
    *,
    attempts: int,
    age: timedelta,
    error: SinkError,
    limits: RetryLimits,
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> Retry | GiveUp:
    """What to do with an item whose attempt number ``attempts`` (from 1) just failed with
    ``error``, ``age`` after it was queued.

    A permanent error gives up at once: it would fail the same way again. A transient one is
    retried after a backoff drawn evenly from zero to :func:`backoff_ceiling` ("full jitter", so
    the items that failed together do not come back together), or after the sink's
    ``Retry-After`` when that is longer; never after ``max_age`` (a backoff is cut short to
    meet it, a ``Retry-After`` past it gives up) and never past ``max_attempts``. ``rand``
    returns a number in [0, 1).

    >>> from datetime import UTC
    >>> now, limits = datetime(2026, 12, 4, 9, tzinfo=UTC), RetryLimits()
    >>> busy = SinkError(status=429, transient=True, retry_after=7.0)
    >>> next_attempt(attempts=1, age=timedelta(0), error=busy, limits=limits, now=now).delay
    datetime.timedelta(seconds=7)
    >>> bad = SinkError(status=422)
    >>> next_attempt(attempts=1, age=timedelta(0), error=bad, limits=limits, now=now).reason
    'a permanent error: it would fail the same way again'
    """
    if isinstance(attempts, bool) or attempts < 1:
        raise ValueError(f"attempts counts the failed one too: at least 1, not {attempts}")
    if not error.transient:
        return GiveUp(reason="a permanent error: it would fail the same way again")
    if attempts >= limits.max_attempts:
        return GiveUp(reason=f"{attempts} attempts, the most allowed (max_attempts)")
    left = limits.max_age - age
    if left <= timedelta(0):
        return GiveUp(reason=f"queued {age} ago, past max_age ({limits.max_age})")
    delay = backoff_ceiling(attempts, limits) * min(max(rand(), 0.0), 1.0)
    asked = error.retry_after
    if asked is not None and math.isfinite(asked) and asked > delay.total_seconds():
        # compared as seconds first: a sink may ask for more than a timedelta holds
        if asked > left.total_seconds():
            return GiveUp(
                reason=f"the sink asked to wait {asked:g} s, past max_age ({limits.max_age})"
            )
        delay = timedelta(seconds=asked)
    delay = min(delay, left)
    return Retry(at=now + delay, delay=delay)
