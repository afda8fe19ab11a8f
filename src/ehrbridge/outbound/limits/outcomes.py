"""How one request to a sink ended, as the limits read it (the table in
:mod:`ehrbridge.outbound.limits`)."""

from __future__ import annotations

import math
from datetime import timedelta
from enum import StrEnum

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


def check_positive(owner: str, **values: timedelta | float) -> None:
    """Refuse a limit's setting that is not above zero, naming it (``RetryLimits.max_age``).

    >>> check_positive("RetryLimits", max_age=timedelta(0))
    Traceback (most recent call last):
    ValueError: RetryLimits.max_age must be above zero, not 0:00:00
    """
    for name, value in values.items():
        amount = value.total_seconds() if isinstance(value, timedelta) else value
        if not (math.isfinite(amount) and amount > 0):
            raise ValueError(f"{owner}.{name} must be above zero, not {value}")
