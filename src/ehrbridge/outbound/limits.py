"""The dispatcher's limits on one sink: when an item is tried again, when the sink gets no
requests at all, and how many requests it has at once (docs/outbound-limits.md).

Pure and clock-injected: nothing here does I/O or reads a clock it was not given, so the dispatch
loop owns time and the tests drive it.

- :func:`next_attempt` — after an item's failed attempt: retry at a time (exponential backoff
  with full jitter; a longer ``Retry-After`` wins), or give up (a permanent error, the attempts
  spent, the item too old).
- :class:`CircuitBreaker` — one per sink: closed, open after repeated transient failures,
  half-open for one probe at a time, closed again by a probe's success.
- :class:`AimdLimit` and :class:`AdaptiveLimiter` — one per sink: the concurrency in use, between
  one and the configured concurrency, growing while the sink keeps up and cut when it does not.

Each attempt's end is first told apart by :func:`classify`; each part reads the
:class:`Outcome` its own way:

============ =============================== ============ ====================
outcome      what the sink did               breaker      concurrency limit
============ =============================== ============ ====================
``ok``       took the write                  success      grows, unless slow
``refused``  a permanent error, a conflict   success      grows, unless slow
``throttled`` ``429``                        not counted  cut
``overloaded`` ``503``, ``504``, no answer   failure      cut
``failed``   another transient error         failure      unchanged
============ =============================== ============ ====================
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ehrbridge.errors import SinkError

#: statuses that say the sink is over its capacity (a ``504``: the gateway behind it gave up)
OVERLOAD_STATUSES = frozenset({503, 504})


class Outcome(StrEnum):
    """How one request to a sink ended, as the limits read it."""

    OK = "ok"  #: the sink took the write
    REFUSED = "refused"  #: the sink answered, and refused for good (a 4xx, a conflict)
    THROTTLED = "throttled"  #: ``429``: the sink asks us to slow down; it is not failing
    OVERLOADED = "overloaded"  #: ``503``, ``504``, or no answer (a timeout, a dropped connection)
    FAILED = "failed"  #: another transient error (``500``, ``502``, ...)


def classify(error: SinkError | None) -> Outcome:
    """The outcome of an attempt that raised ``error`` (None: it succeeded).

    >>> classify(None), classify(SinkError(status=422))
    (<Outcome.OK: 'ok'>, <Outcome.REFUSED: 'refused'>)
    >>> classify(SinkError(status=429, transient=True)), classify(SinkError(transient=True))
    (<Outcome.THROTTLED: 'throttled'>, <Outcome.OVERLOADED: 'overloaded'>)
    >>> classify(SinkError(status=500, transient=True))
    <Outcome.FAILED: 'failed'>
    """
    if error is None:
        return Outcome.OK
    if not error.transient:
        return Outcome.REFUSED
    if error.status == 429:
        return Outcome.THROTTLED
    if error.status is None or error.status in OVERLOAD_STATUSES:
        return Outcome.OVERLOADED
    return Outcome.FAILED


def _positive(owner: str, **values: timedelta | float) -> None:
    for name, value in values.items():
        amount = value.total_seconds() if isinstance(value, timedelta) else value
        if not (math.isfinite(amount) and amount > 0):
            raise ValueError(f"{owner}.{name} must be above zero, not {value}")


# --- retries -------------------------------------------------------------------------------------


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
        _positive(
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
    if asked is not None and math.isfinite(asked) and timedelta(seconds=asked) > delay:
        delay = timedelta(seconds=asked)
        if delay > left:
            return GiveUp(reason=f"the sink asked to wait {delay}, past max_age ({limits.max_age})")
    delay = min(delay, left)
    return Retry(at=now + delay, delay=delay)


# --- the circuit breaker -------------------------------------------------------------------------


class Circuit(StrEnum):
    """A sink's circuit."""

    CLOSED = "closed"  #: requests go
    OPEN = "open"  #: no request goes until ``open_until``
    HALF_OPEN = "half-open"  #: one probe at a time; its answer closes or re-opens the circuit


@dataclass(frozen=True, kw_only=True)
class BreakerLimits:
    """When a sink's circuit opens, and for how long."""

    #: consecutive failures that open it
    failures: int = 5
    #: or: this share of the outcomes within ``window`` failed...
    failure_rate: float = 0.5
    #: ...once the window holds at least this many
    min_samples: int = 20
    window: timedelta = timedelta(seconds=60)
    #: how long the first trip keeps it open; each trip before it closes again doubles it
    cooldown: timedelta = timedelta(seconds=5)
    #: the longest cool-down
    max_cooldown: timedelta = timedelta(minutes=5)
    #: a probe with no answer after this (its worker died) lets another probe go
    probe_timeout: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        for name in ("failures", "min_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BreakerLimits.{name} must be a whole number from 1, not {value}")
        if not 0 < self.failure_rate <= 1:
            raise ValueError(
                f"BreakerLimits.failure_rate must be above 0 and at most 1, not {self.failure_rate}"
            )
        _positive(
            "BreakerLimits",
            window=self.window,
            cooldown=self.cooldown,
            max_cooldown=self.max_cooldown,
            probe_timeout=self.probe_timeout,
        )
        if self.max_cooldown < self.cooldown:
            raise ValueError("BreakerLimits.max_cooldown must be at least cooldown")

    def cooldown_after(self, trips: int) -> timedelta:
        """How long the circuit stays open after its ``trips``-th trip in a row.

        >>> [BreakerLimits().cooldown_after(n).total_seconds() for n in (1, 2, 3, 9, 99)]
        [5.0, 10.0, 20.0, 300.0, 300.0]
        """
        grown = self.cooldown.total_seconds() * 2.0 ** min(trips - 1, 64)
        return timedelta(seconds=min(grown, self.max_cooldown.total_seconds()))


@dataclass(frozen=True, kw_only=True)
class Ticket:
    """Leave to send one request, from :meth:`CircuitBreaker.allow`: hand it back with the
    outcome. A ticket from before the circuit last changed counts for nothing."""

    generation: int
    #: the half-open circuit's one probe
    probe: bool


@dataclass(frozen=True, kw_only=True)
class BreakerState:
    """A circuit as operators see it."""

    circuit: Circuit
    #: while open: when the next probe may go
    open_until: datetime | None
    #: trips since it was last closed by a probe (each doubles the cool-down)
    trips: int
    #: failures in a row while closed
    consecutive_failures: int

    def as_json(self) -> dict[str, Any]:
        return {
            "circuit": self.circuit.value,
            "open_until": None if self.open_until is None else self.open_until.isoformat(),
            "trips": self.trips,
            "consecutive_failures": self.consecutive_failures,
        }


class CircuitBreaker:
    """One sink's circuit breaker.

    Closed, it lets every request go and counts transient failures (:class:`Outcome`
    ``overloaded`` and ``failed``); ``failures`` in a row, or a ``failure_rate`` over ``window``,
    open it. Open, it lets nothing go for a cool-down that doubles with each trip in a row (up to
    ``max_cooldown``); then it is half-open and lets one probe go at a time: the probe's success
    closes it, its failure opens it again for longer. A sink that answers, even with a permanent
    refusal, is up: that is a success.

    A ``429`` is throttling, not a failure of the sink: it neither trips the circuit nor counts
    toward tripping it, and a throttled probe leaves the circuit half-open for the next one. The
    pause a ``429`` asks for is kept by the sink's request budget and the item's retry time
    (:func:`next_attempt`), not here.

    Outcomes of requests let go before the circuit last changed state are ignored: a burst of
    failures already in flight when it opened does not open it again, and a late success from
    then does not close it.
    """

    def __init__(self, limits: BreakerLimits, *, clock: Callable[[], datetime]) -> None:
        self.limits = limits
        self._clock = clock
        self._circuit = Circuit.CLOSED
        self._generation = 0
        self._open_until: datetime | None = None
        self._trips = 0
        self._consecutive = 0
        #: closed: (when, failed) of the outcomes within the window
        self._recent: deque[tuple[datetime, bool]] = deque()
        self._recent_failures = 0
        #: half-open: when the probe now out went (None: no probe out)
        self._probe_sent: datetime | None = None

    def allow(self) -> Ticket | None:
        """A ticket to send one request now, or None while the circuit lets nothing go."""
        now = self._clock()
        if self._circuit is Circuit.CLOSED:
            return Ticket(generation=self._generation, probe=False)
        if self._circuit is Circuit.OPEN:
            assert self._open_until is not None
            if now < self._open_until:
                return None
            self._change(Circuit.HALF_OPEN)
        elif self._probe_sent is not None and now - self._probe_sent < self.limits.probe_timeout:
            return None
        elif self._probe_sent is not None:
            self._generation += 1  # the lost probe's late answer counts for nothing
        self._probe_sent = now
        return Ticket(generation=self._generation, probe=True)

    def record(self, ticket: Ticket, outcome: Outcome) -> None:
        """The outcome of the request ``ticket`` let go."""
        if ticket.generation != self._generation:
            return
        failed = outcome in (Outcome.OVERLOADED, Outcome.FAILED)
        if self._circuit is Circuit.HALF_OPEN:
            if not ticket.probe:
                return
            self._probe_sent = None
            if outcome is Outcome.THROTTLED:
                return
            if failed:
                self._trip()
            else:
                self._trips = 0
                self._change(Circuit.CLOSED)
            return
        if self._circuit is Circuit.OPEN or outcome is Outcome.THROTTLED:
            return
        now = self._clock()
        self._consecutive = self._consecutive + 1 if failed else 0
        self._recent.append((now, failed))
        self._recent_failures += failed
        while now - self._recent[0][0] > self.limits.window:
            self._recent_failures -= self._recent.popleft()[1]
        if not failed:
            return  # a success never opens it, whatever the share before it
        share = self._recent_failures / len(self._recent)
        if self._consecutive >= self.limits.failures or (
            len(self._recent) >= self.limits.min_samples and share >= self.limits.failure_rate
        ):
            self._trip()

    def cancel(self, ticket: Ticket) -> None:
        """The request ``ticket`` let go was not sent after all, or will never be answered (the
        claim was released, the worker stopped): a probe's place is free for another."""
        if ticket.probe and ticket.generation == self._generation:
            self._probe_sent = None

    def state(self) -> BreakerState:
        """The circuit now, for operators."""
        return BreakerState(
            circuit=self._circuit,
            open_until=self._open_until if self._circuit is Circuit.OPEN else None,
            trips=self._trips,
            consecutive_failures=self._consecutive,
        )

    def _trip(self) -> None:
        self._trips += 1
        self._open_until = self._clock() + self.limits.cooldown_after(self._trips)
        self._change(Circuit.OPEN)

    def _change(self, circuit: Circuit) -> None:
        self._circuit = circuit
        self._generation += 1
        self._consecutive = 0
        self._recent.clear()
        self._recent_failures = 0
        self._probe_sent = None


# --- adaptive concurrency ------------------------------------------------------------------------


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
    #: how fast the baseline (a decaying minimum latency) follows slower successes: the share of
    #: the gap it closes per sample (a faster success lowers it at once)
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
    divided by a patience that doubles each time the sink fails at the same level again (up to
    ``max_patience``), so a steady sink sees a request over its capacity rarely, not once per
    sawtooth; a success with that many requests in flight shows the sink has room again and
    forgets the level.

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
                again = level == self._failed_at
                self._patience = min(self._patience * 2, self.limits.max_patience) if again else 1
                self._failed_at = level
                cut = min(self._limit - 1, self._limit * self.limits.backoff_ratio)
                self._limit = max(float(self.limits.min), cut)
                self._cut_at = sent + latency
        elif answered:
            if self._failed_at is not None and in_flight >= self._failed_at:
                self._failed_at, self._patience = None, 1
            if in_flight * 2 >= self.limit:
                step = 1 / self._limit
                if self._failed_at is not None and self._limit >= self._failed_at - 1:
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


def sink_state(breaker: CircuitBreaker, limiter: AdaptiveLimiter) -> dict[str, Any]:
    """One sink's limits as operators see them, as JSON (what a dispatcher saves with
    :meth:`~ehrbridge.outbound.outbox.Outbox.save_sink_state`).

    >>> from datetime import UTC
    >>> breaker = CircuitBreaker(BreakerLimits(), clock=lambda: datetime(2026, 12, 4, tzinfo=UTC))
    >>> state = sink_state(breaker, AdaptiveLimiter(ConcurrencyLimits(max=4)))
    >>> state["circuit"], state["open_until"], state["limit"], state["in_flight"]
    ('closed', None, 4, 0)
    """
    return {**breaker.state().as_json(), **limiter.state().as_json()}
