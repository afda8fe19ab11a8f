"""Fault injection: a plan of faults, switchable at run time, consumed by counted requests.

Counted faults are exact, so a test can say "the next 3 requests get 503" and assert it. Per FHIR
request, in this order: the capacity (a request beyond ``capacity`` in flight at once gets 503 at
once, and no other fault); added latency; an outage window (every request fails: 503 or a dropped
connection); connection resets; bursts of 5xx; 429 with ``Retry-After``; the requests-per-second
limit (429 beyond it, in one-second windows); writes refused with 422 and an OperationOutcome;
then, for a request that passes, a stale read (an instance read or a search served one version
behind, like a lagging replica), or for a write a reset after it (stored, then the connection is
dropped before the answer: the client cannot tell that it landed) or a dropped write (answered as
stored, rolled back).
:attr:`Faults.injected` counts what was injected, by kind.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

#: Kinds of faults, as counted in :attr:`Faults.injected`.
KINDS = (
    "capacity",
    "latency",
    "outage",
    "reset",
    "error",
    "throttle",
    "rate_limit",
    "unprocessable",
    "stale_read",
    "dropped_write",
    "reset_after_write",
)


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """Which faults to inject; all off by default. ``POST /$faults`` takes these fields as JSON."""

    #: seconds added before answering every FHIR request
    latency: float = 0.0
    #: the next N requests get 429 Too Many Requests
    throttle: int = 0
    #: the ``Retry-After`` seconds sent with every 429
    retry_after: int = 1
    #: the next N requests get ``error_status``
    errors: int = 0
    #: the status of ``errors`` (a 5xx)
    error_status: int = 503
    #: an outage from now for this many seconds (0: none)
    outage_seconds: float = 0.0
    #: an outage until the plan is changed
    outage: bool = False
    #: how an outage fails requests: ``status`` (503) or ``drop`` (the connection is closed)
    outage_mode: Literal["status", "drop"] = "status"
    #: the next N requests have their connection dropped mid-response
    resets: int = 0
    #: the next N reads (instance reads and searches) serve the version before the current one
    #: of each resource (one with one version is served as it is; a deleted one is read as it
    #: was before the deletion)
    stale_reads: int = 0
    #: the next N writes are answered as stored but not stored
    dropped_writes: int = 0
    #: the next N writes are stored, then their connection is dropped before the answer
    resets_after_write: int = 0
    #: the next N writes get 422 Unprocessable Entity with an OperationOutcome
    unprocessable: int = 0
    #: requests per second admitted (0: no limit); beyond it 429 with ``Retry-After: 1``
    rate_limit: float = 0.0
    #: FHIR requests served at once (0: no limit); one beyond it gets 503 (an overloaded server)
    capacity: int = 0

    @classmethod
    def from_json(cls, body: object) -> FaultPlan:
        """A plan from a JSON object; ValueError names a field that is unknown or of a bad type.

        >>> FaultPlan.from_json({"errors": 3}).errors
        3
        >>> FaultPlan.from_json({"errrors": 3})
        Traceback (most recent call last):
        ValueError: unknown fault field 'errrors'
        """
        if not isinstance(body, Mapping):
            raise ValueError("the fault plan must be a JSON object")
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name not in types:
                raise ValueError(f"unknown fault field {name!r}")
            kind = types[name]
            if kind == "int" and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(f"{name} must be a non-negative integer")
            if kind == "float" and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise ValueError(f"{name} must be a non-negative number")
            if kind == "bool" and not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
            if name == "outage_mode" and value not in ("status", "drop"):
                raise ValueError("outage_mode must be 'status' or 'drop'")
            if name == "error_status" and not (isinstance(value, int) and 500 <= value <= 599):
                raise ValueError("error_status must be a 5xx status")
            values[name] = float(value) if kind == "float" else value
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What to do to one request."""

    #: seconds to wait first
    latency: float = 0.0
    #: answer with this status instead (429, 5xx), or None
    status: int | None = None
    #: the ``Retry-After`` to send with ``status``
    retry_after: int | None = None
    #: close the connection instead of answering
    drop_connection: bool = False
    #: serve a read (instance read or search) one version behind
    stale: bool = False
    #: answer a write as stored, but do not store it
    drop_write: bool = False
    #: store a write, then close the connection instead of answering
    reset_after_write: bool = False


PASS = Decision()
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Faults:
    """The current fault plan and its counters; safe to change from another thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._plan = FaultPlan()
        self._outage_until = 0.0
        self._window = (0, 0)  # (second, requests admitted in it)
        self._in_flight = 0
        #: how many faults of each kind were injected since the last :meth:`clear`
        self.injected: Counter[str] = Counter()

    @property
    def plan(self) -> FaultPlan:
        """The plan in force, with its counters as they are now."""
        return self._plan

    def set(self, plan: FaultPlan | None = None, **changes: Any) -> FaultPlan:
        """Replace the plan (or, with keywords only, change some of its fields)."""
        with self._lock:
            new = replace(plan or self._plan, **changes) if changes else (plan or FaultPlan())
            self._plan = new
            self._outage_until = self._clock() + new.outage_seconds if new.outage_seconds else 0.0
            self._window = (0, 0)
            return new

    def clear(self) -> None:
        """No faults, and zero counts."""
        self.set(FaultPlan())
        with self._lock:
            self.injected.clear()

    @property
    def in_flight(self) -> int:
        """FHIR requests entered and not yet left (:meth:`enter`)."""
        return self._in_flight

    def enter(self) -> bool:
        """A FHIR request arrives: True, and it is in flight until :meth:`leave`; False when
        ``capacity`` requests are in flight already (answer it 503 at once; it is not counted,
        and no other fault is decided for it)."""
        with self._lock:
            if self._plan.capacity and self._in_flight >= self._plan.capacity:
                self.injected["capacity"] += 1
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        """A request :meth:`enter` let in has been answered."""
        with self._lock:
            self._in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        """The plan and the counts, as JSON for ``GET /$faults``."""
        with self._lock:
            return {"plan": asdict(self._plan), "injected": dict(self.injected)}

    def decide(self, method: str, *, read: bool) -> Decision:
        """What to do to the next FHIR request; consumes one count of the fault it gets."""
        with self._lock:
            plan, now = self._plan, self._clock()
            latency = plan.latency
            if latency:
                self.injected["latency"] += 1
            failure = self._failure(plan, now)
            if failure is not None:
                return replace(failure, latency=latency)
            if method in _WRITES and plan.unprocessable:
                self._count(unprocessable=plan.unprocessable - 1)
                self.injected["unprocessable"] += 1
                return Decision(latency=latency, status=422)
            if read and plan.stale_reads:
                self._count(stale_reads=plan.stale_reads - 1)
                self.injected["stale_read"] += 1
                return Decision(latency=latency, stale=True)
            if method in _WRITES and plan.resets_after_write:
                self._count(resets_after_write=plan.resets_after_write - 1)
                self.injected["reset_after_write"] += 1
                return Decision(latency=latency, reset_after_write=True)
            if method in _WRITES and plan.dropped_writes:
                self._count(dropped_writes=plan.dropped_writes - 1)
                self.injected["dropped_write"] += 1
                return Decision(latency=latency, drop_write=True)
            return Decision(latency=latency) if latency else PASS

    def _count(self, **changes: int) -> None:
        self._plan = replace(self._plan, **changes)  # type: ignore[arg-type]  # int fields only

    def _failure(self, plan: FaultPlan, now: float) -> Decision | None:
        if plan.outage or now < self._outage_until:
            self.injected["outage"] += 1
            if plan.outage_mode == "drop":
                return Decision(drop_connection=True)
            return Decision(status=503, retry_after=None)
        if plan.resets:
            self._count(resets=plan.resets - 1)
            self.injected["reset"] += 1
            return Decision(drop_connection=True)
        if plan.errors:
            self._count(errors=plan.errors - 1)
            self.injected["error"] += 1
            return Decision(status=plan.error_status)
        if plan.throttle:
            self._count(throttle=plan.throttle - 1)
            self.injected["throttle"] += 1
            return Decision(status=429, retry_after=plan.retry_after)
        if plan.rate_limit:
            second = math.floor(now)
            start, admitted = self._window
            if start != second:
                start, admitted = second, 0
            if admitted >= plan.rate_limit:
                self.injected["rate_limit"] += 1
                return Decision(status=429, retry_after=1)
            self._window = (start, admitted + 1)
        return None
