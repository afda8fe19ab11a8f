"""A sink's circuit breaker: closed, open after repeated transient failures, half-open for one
probe at a time (docs/outbound-limits.md)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ehrbridge.outbound.limits.outcomes import Outcome, check_positive


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
        check_positive(
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
