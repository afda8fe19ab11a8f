"""A sink's adaptive concurrency: the AIMD limit and the async limiter that holds requests to it
(docs/outbound-limits.md)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ehrbridge.errors import SinkError
from ehrbridge.outbound.limits.outcomes import Outcome, classify


@dataclass(frozen=True, kw_only=True)
class ConcurrencyLimits:
    """How a sink's concurrency limit moves (additive increase, multiplicative decrease)."""

    #: the configured concurrency: the limit never goes above it
    max: int = 4
    #: the limit never goes below it
    min: int = 1
    #: the limit to start at (None: ``max``)
    initial: int | None = None
    #: a cut multiplies the limit by this (and takes at least one off)
    backoff_ratio: float = 0.9
    #: the recent latency above this many times the baseline is a sign of overload
    tolerance: float = 2.0
    #: how fast the baseline (the decaying minimum of the recent latency) follows a slower recent
    #: latency: the share of the gap it closes per success (a faster one lowers it at once)
    baseline_decay: float = 0.01
    #: the weight of each success's latency in the recent latency (a moving average)
    smoothing: float = 0.1
    #: how much slower, at most, the limit grows near the level where the sink last failed
    max_patience: int = 16

    def __post_init__(self) -> None:
        for name in ("max", "min", "max_patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"ConcurrencyLimits.{name} must be a whole number from 1, not {value}"
                )
        if self.min > self.max:
            raise ValueError(f"ConcurrencyLimits.min ({self.min}) is above max ({self.max})")
        if self.initial is not None and not self.min <= self.initial <= self.max:
            raise ValueError(
                f"ConcurrencyLimits.initial must be from min to max, not {self.initial}"
            )
        if not 0.5 <= self.backoff_ratio < 1:
            raise ValueError(
                "ConcurrencyLimits.backoff_ratio must be from 0.5 up to (not including) 1, "
                f"not {self.backoff_ratio}"
            )
        if not (math.isfinite(self.tolerance) and self.tolerance > 1):
            raise ValueError(f"ConcurrencyLimits.tolerance must be above 1, not {self.tolerance}")
        if not 0 < self.smoothing <= 1:
            raise ValueError(
                f"ConcurrencyLimits.smoothing must be above 0 and at most 1, not {self.smoothing}"
            )
        if not 0 < self.baseline_decay <= 1:
            raise ValueError(
                "ConcurrencyLimits.baseline_decay must be above 0 and at most 1, "
                f"not {self.baseline_decay}"
            )


class AimdLimit:
    """A sink's concurrency limit, moved by each request's latency and outcome.

    Each success while the latency is within ``tolerance`` of the baseline adds ``1 / limit``,
    so about one per limit's worth of successes (roughly one per round trip while the limit is
    used), and only while at least half the limit was in use (an idle limit proves nothing). A
    ``429``, a ``503``/``504``, no answer, or the latency above ``tolerance * baseline`` cuts it
    to ``max(min, min(limit - 1, limit * backoff_ratio))``, once per round trip: the outcome of
    a request sent before the last cut does not cut again, so one burst of failures is one cut.

    The latency is the recent one, a moving average of successes (``smoothing``), so one slow
    answer among many is noise, not a cut. The baseline is its minimum, decaying: it drops to a
    faster one at once and drifts toward slower ones by ``baseline_decay`` per success, so a sink
    that became slower for good is not cut forever. Failures move neither (a fast ``503`` is not
    a fast sink). The baseline is learnt from what the sink shows: latency catches a sink that
    slows down quickly; one that slows slowly under a growing load is caught by its ``503`` s.

    Probing is patient near where the sink last failed: within one of that level the increase is
    divided by a patience that doubles each time the sink fails within one of it again (up to
    ``max_patience``), so a steady sink sees a request over its capacity rarely, not once per
    sawtooth. A success with as many requests in flight as that level takes one off the patience
    (our count of requests in flight includes those on their way, so the sink may have held
    fewer); one with more shows the sink has room beyond it, and forgets the level.

    Times are seconds on any monotonic clock.
    """

    def __init__(self, limits: ConcurrencyLimits) -> None:
        self.limits = limits
        self._limit = float(limits.max if limits.initial is None else limits.initial)
        #: the recent latency of successes (a moving average); None before the first
        self.recent: float | None = None
        #: the decaying minimum of the recent latency; None before the first success
        self.baseline: float | None = None
        #: when the last cut was made
        self._cut_at = -math.inf
        #: the limit at which the sink last failed (None: forgotten), and the patience near it
        self._failed_at: int | None = None
        self._patience = 1

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return max(self.limits.min, int(self._limit))

    def update(self, *, sent: float, latency: float, outcome: Outcome, in_flight: int) -> None:
        """Learn from one request: sent at ``sent``, answered ``latency`` later with
        ``outcome``, when ``in_flight`` requests (itself included) were out."""
        latency = max(latency, 0.0)
        answered = outcome in (Outcome.OK, Outcome.REFUSED)
        slow = False
        if answered:
            # one slow answer among many is noise; the recent latency staying high is queueing
            if self.recent is None:
                self.recent = latency
            else:
                self.recent += (latency - self.recent) * self.limits.smoothing
            slow = self.baseline is not None and self.recent > self.baseline * self.limits.tolerance
            if self.baseline is None or self.recent < self.baseline:
                self.baseline = self.recent
            else:
                self.baseline += (self.recent - self.baseline) * self.limits.baseline_decay
        if slow or outcome in (Outcome.THROTTLED, Outcome.OVERLOADED):
            if sent >= self._cut_at:
                level = self.limit
                again = self._failed_at is not None and abs(level - self._failed_at) <= 1
                self._patience = min(self._patience * 2, self.limits.max_patience) if again else 1
                self._failed_at = level
                cut = min(self._limit - 1, self._limit * self.limits.backoff_ratio)
                self._limit = max(float(self.limits.min), cut)
                self._cut_at = sent + latency
        elif answered:
            if self._failed_at is not None and in_flight > self._failed_at:
                self._failed_at, self._patience = None, 1
            elif self._failed_at is not None and in_flight == self._failed_at:
                self._patience = max(1, self._patience - 1)
            if in_flight * 2 >= self.limit:
                step = 1 / self._limit
                if self._failed_at is not None and self._limit < self._failed_at + 1:
                    step /= self._patience
                self._limit = min(float(self.limits.max), self._limit + step)


@dataclass(frozen=True, kw_only=True)
class LimiterState:
    """A sink's concurrency as operators see it."""

    #: requests allowed in flight now
    limit: int
    #: the configured concurrency, the most the limit grows to
    max: int
    #: requests in flight now (above ``limit`` for a while after a cut)
    in_flight: int
    #: requests waiting for a place
    waiting: int
    #: the recent latency in seconds, and its baseline (None before the first success)
    recent: float | None
    baseline: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "max": self.max,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "recent": self.recent,
            "baseline": self.baseline,
        }


class Slot:
    """One place in an :class:`AdaptiveLimiter`: say how the request ended with :meth:`done`
    (or let a :class:`~ehrbridge.errors.SinkError` leave the block), or that none was sent with
    :meth:`unsent`; a block left without any of them is ``ok``."""

    def __init__(self, sent: float, in_flight: int) -> None:
        #: when the place was taken
        self.sent = sent
        #: requests in flight once it was taken, itself included
        self.in_flight = in_flight
        #: how the request ended (None: not said yet)
        self.outcome: Outcome | None = None
        #: no request went to the sink: the limit learns nothing
        self.skipped = False

    def done(self, outcome: Outcome | SinkError | None) -> None:
        """The request ended with ``outcome``: an :class:`Outcome`, the sink's error, or None
        for a success."""
        self.outcome = outcome if isinstance(outcome, Outcome) else classify(outcome)
        self.skipped = False

    def unsent(self) -> None:
        """Nothing was asked of the sink after all (the gate refused the item, the lease was
        lost): its few milliseconds say nothing about the sink, and would drag the baseline
        down."""
        self.outcome, self.skipped = None, True


class AdaptiveLimiter:
    """A sink's concurrency in one process, at most :attr:`AimdLimit.limit` requests at once.

    ``async with limiter.slot() as slot:`` waits (first come, first served) while the requests
    in flight are as many as the limit, and on leaving gives the place back and feeds the
    request's latency and outcome to the limit. A cut below the requests in flight takes
    nothing from them: they finish, and no new one goes until the count is below the limit.
    A block left by cancellation or by an error other than a ``SinkError``, without
    :meth:`Slot.done`, teaches the limit nothing.
    """

    def __init__(self, limits: ConcurrencyLimits, *, clock: Callable[[], float] = time.monotonic):
        self.aimd = AimdLimit(limits)
        self._clock = clock
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[int]] = deque()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Hold one place for one request (see the class)."""
        in_flight = await self._acquire()
        place = Slot(self._clock(), in_flight)  # sent once the place is had, not asked for
        try:
            yield place
        except SinkError as exc:
            if place.outcome is None and not place.skipped:
                place.done(exc)
            raise
        else:
            if place.outcome is None and not place.skipped:
                place.outcome = Outcome.OK
        finally:
            self._in_flight -= 1
            if place.outcome is not None:
                latency = self._clock() - place.sent
                self.aimd.update(
                    sent=place.sent,
                    latency=latency,
                    outcome=place.outcome,
                    in_flight=place.in_flight,
                )
            self._wake()

    def state(self) -> LimiterState:
        """The limit and the counts now, for operators."""
        return LimiterState(
            limit=self.aimd.limit,
            max=self.aimd.limits.max,
            in_flight=self._in_flight,
            waiting=sum(not w.done() for w in self._waiters),
            recent=self.aimd.recent,
            baseline=self.aimd.baseline,
        )

    async def _acquire(self) -> int:
        """Take a place; returns the requests in flight with it, itself included."""
        if not self._waiters and self._in_flight < self.aimd.limit:
            self._in_flight += 1
            return self._in_flight
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # given the place just as it was cancelled: pass it on
                self._in_flight -= 1
                self._wake()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        # the place is handed over (counted here), so a newcomer cannot take it first
        while self._waiters and self._in_flight < self.aimd.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(self._in_flight)
