"""The dispatcher's limits on one sink: when an item is tried again, when the sink gets no
requests at all, and how many requests it has at once (docs/outbound-limits.md).

Pure and clock-injected: nothing here does I/O or reads a clock it was not given, so the dispatch
loop owns time and the tests drive it.

- :func:`next_attempt` (``retries.py``) — after an item's failed attempt: retry at a time
  (exponential backoff with full jitter; a longer ``Retry-After`` wins), or give up (a permanent
  error, the attempts spent, the item too old).
- :class:`CircuitBreaker` (``breaker.py``) — one per sink: closed, open after repeated transient
  failures, half-open for one probe at a time, closed again by a probe's success.
- :class:`AimdLimit` and :class:`AdaptiveLimiter` (``concurrency.py``) — one per sink: the
  concurrency in use, between one and the configured concurrency, growing while the sink keeps
  up and cut when it does not.

Each attempt's end is first told apart by :func:`classify` (``outcomes.py``); each part reads
the :class:`Outcome` its own way:

============== =============================== =========== ==================
outcome        what the sink did               breaker     concurrency limit
============== =============================== =========== ==================
``ok``         took the write                  success     grows, unless slow
``refused``    a permanent error, a conflict   success     grows, unless slow
``throttled``  ``429``                         not counted cut
``overloaded`` ``503``, ``504``, no answer     failure     cut
``failed``     another transient error         failure     unchanged
============== =============================== =========== ==================
"""

from __future__ import annotations

from typing import Any

from ehrbridge.outbound.limits.breaker import (
    BreakerLimits,
    BreakerState,
    Circuit,
    CircuitBreaker,
    Ticket,
)
from ehrbridge.outbound.limits.concurrency import (
    AdaptiveLimiter,
    AimdLimit,
    ConcurrencyLimits,
    LimiterState,
    Slot,
)
from ehrbridge.outbound.limits.outcomes import OVERLOAD_STATUSES, Outcome, classify
from ehrbridge.outbound.limits.retries import (
    GiveUp,
    Retry,
    RetryLimits,
    backoff_ceiling,
    next_attempt,
)

__all__ = [
    "OVERLOAD_STATUSES",
    "AdaptiveLimiter",
    "AimdLimit",
    "BreakerLimits",
    "BreakerState",
    "Circuit",
    "CircuitBreaker",
    "ConcurrencyLimits",
    "GiveUp",
    "LimiterState",
    "Outcome",
    "Retry",
    "RetryLimits",
    "Slot",
    "Ticket",
    "backoff_ceiling",
    "classify",
    "next_attempt",
    "sink_state",
]


def sink_state(breaker: CircuitBreaker, limiter: AdaptiveLimiter) -> dict[str, Any]:
    """One sink's limits as operators see them, as JSON (what a dispatcher saves with
    :meth:`~ehrbridge.outbound.outbox.Outbox.save_sink_state`).

    >>> from datetime import UTC, datetime
    >>> breaker = CircuitBreaker(BreakerLimits(), clock=lambda: datetime(2026, 12, 4, tzinfo=UTC))
    >>> state = sink_state(breaker, AdaptiveLimiter(ConcurrencyLimits(max=4)))
    >>> state["circuit"], state["open_until"], state["limit"], state["in_flight"]
    ('closed', None, 4, 0)
    """
    return {**breaker.state().as_json(), **limiter.state().as_json()}
