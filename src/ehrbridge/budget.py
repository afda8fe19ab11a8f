"""Request budgets: how fast, and how many at once, requests may go to one external system.

A data source's budget (``budget: {rate: 5/s, concurrency: 2}`` in the runner config,
:data:`DEFAULT_BUDGET` when unset) holds for the whole source::

    every runner on the database ── the pace: one row, ``request_budgets``
         │                          (:class:`Budgets`)
    every poll task in a process ── one :class:`Budget` (from the process's
         │                          :class:`BudgetRegistry`): the concurrency, and one task at a
         │                          time asks the database for the next slot
    each request ────────────────── :class:`BudgetTransport`, under the source's HTTP client

- **Rate.** Requests start at least ``1 / rate`` apart, over all runners together: a request takes
  a slot only once its time has come, so nothing is booked ahead of a pause.
- **Concurrency.** At most ``concurrency`` requests of a process are in flight at once (a seat is
  held until the response body is read). A source is polled by one runner at a time (its lease),
  so for polls that is the source's bound.
- **429.** A ``429`` moves the pace past its ``Retry-After`` (:data:`DEFAULT_PAUSE` without one):
  no task of any runner sends to that source until then. The retry driver
  (:mod:`ehrbridge.http.retry`) waits and retries the one request as before.

The transport works under any ``httpx`` client (FHIR, REST, later the sinks: a sink's budget is
a budget of another name, ``sink:<id>``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

import httpx

from ehrbridge.http.retry import retry_after_seconds

log = logging.getLogger("ehrbridge.runner")

#: the fastest rate a budget takes (requests per second)
MAX_RATE = 1000.0
#: the most requests at once a budget takes
MAX_CONCURRENCY = 64
#: how long a ``429`` without a usable ``Retry-After`` pauses the budget
DEFAULT_PAUSE = timedelta(seconds=1)
#: waking a hair late costs nothing; waking early costs a round trip to the database
_LATE = 0.001
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)", re.ASCII)
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


#: the longest pause a budget takes (a ``Retry-After`` asking for more is cut to it); a slot further
#: off than this and one interval is taken as left by a clock that went back, and is due
MAX_PAUSE = timedelta(minutes=10)


class Budgets(Protocol):
    """The pace of each request budget, shared by every runner on the database
    (:mod:`ehrbridge.budget` builds on it).

    A budget is a name (``source:<id>``, later ``sink:<id>``) and the earliest moment its next
    request may start. Both methods are one atomic statement, so runners never both take a slot.
    """

    async def take_slot(self, workspace: str, name: str, interval: timedelta) -> timedelta:
        """Take the next request slot if it has come: then move it ``interval`` on and return
        zero. Otherwise take nothing and return how long until it comes."""

    async def pause(self, workspace: str, name: str, delay: timedelta) -> None:
        """No slot for ``delay`` from now (a ``429``'s ``Retry-After``), unless one is
        already further off."""


@dataclass(frozen=True, kw_only=True)
class RequestBudget:
    """How fast and how many at once requests may go to one external system."""

    #: requests per second, over all runners together
    rate: float
    #: requests in flight at once, per runner process
    concurrency: int

    @property
    def interval(self) -> timedelta:
        """The least time between two requests' starts.

        >>> RequestBudget(rate=4, concurrency=1).interval
        datetime.timedelta(microseconds=250000)
        """
        return timedelta(seconds=1 / self.rate)


#: a source's budget when its config sets none: gentle enough for a production EHR
DEFAULT_BUDGET = RequestBudget(rate=10.0, concurrency=4)


def parse_rate(text: str) -> float:
    """Requests per second from ``5/s``, ``120/min`` or ``1000/h`` (``m`` is minutes here).

    >>> parse_rate("5/s"), parse_rate("120/min"), parse_rate("1800/h"), parse_rate("0.5 / s")
    (5.0, 2.0, 0.5, 0.5)
    >>> parse_rate("5")
    Traceback (most recent call last):
    ValueError: expected a rate such as 5/s, 120/min or 1000/h
    """
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise ValueError("expected a rate such as 5/s, 120/min or 1000/h")
    rate = float(match.group(1)) / _PER[match.group(2)]
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError("a rate must be above zero")
    if rate > MAX_RATE:
        raise ValueError(f"a rate must be at most {MAX_RATE:g}/s")
    return rate


def source_budget(source_id: str) -> str:
    """The budget name of a data source.

    >>> source_budget("ehr")
    'source:ehr'
    """
    return f"source:{source_id}"


class Budget:
    """One budget in one process: every task that sends to the system shares it."""

    def __init__(
        self,
        pace: Budgets,
        workspace: str,
        name: str,
        limit: RequestBudget,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.pace = pace
        self.workspace = workspace
        #: e.g. ``source:ehr``
        self.name = name
        self._sleep = sleep
        self._limit = limit
        self._seats = asyncio.Semaphore(limit.concurrency)
        # One task of this process at a time asks the database; the others wait here, not there.
        self._turn = asyncio.Lock()
        #: no slot before this (monotonic seconds): the one this process took last was then
        self._due = 0.0

    @property
    def limit(self) -> RequestBudget:
        """The rate and concurrency in force."""
        return self._limit

    def set_limit(self, limit: RequestBudget) -> None:
        """Take a new rate and concurrency (a reloaded config); requests in flight finish under
        the old concurrency."""
        if limit.concurrency != self._limit.concurrency:
            self._seats = asyncio.Semaphore(limit.concurrency)
        self._limit = limit

    async def acquire(self) -> Callable[[], None]:
        """Wait for a seat and the next slot; returns the function that gives the seat back."""
        seats = self._seats
        await seats.acquire()
        try:
            async with self._turn:
                # The slot this process took last moved the pace an interval on: wait that out
                # here rather than ask the database for a wait it already knows.
                ahead = self._due - time.monotonic()
                if ahead > 0:
                    await self._sleep(ahead)
                interval = self._limit.interval
                while wait := await self.pace.take_slot(self.workspace, self.name, interval):
                    await self._sleep(wait.total_seconds() + _LATE)
                self._due = time.monotonic() + interval.total_seconds()
        except BaseException:
            seats.release()
            raise
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                seats.release()

        return release

    async def throttled(self, retry_after: float | None) -> None:
        """The system answered ``429``: pause every task of every runner for ``retry_after``
        seconds (:data:`DEFAULT_PAUSE` when it said nothing usable)."""
        if retry_after is None:
            delay = DEFAULT_PAUSE
        else:  # the store cuts a pause to MAX_PAUSE; so does this, before timedelta overflows
            delay = timedelta(seconds=min(retry_after, MAX_PAUSE.total_seconds()))
        seconds = delay.total_seconds()
        log.warning("%s: 429 Too Many Requests; pausing it for %.1fs", self.name, seconds)
        await self.pace.pause(self.workspace, self.name, max(delay, self._limit.interval))


class BudgetRegistry:
    """The budgets of one runner process by name, so all of a source's tasks share one."""

    def __init__(
        self,
        pace: Budgets,
        workspace: str,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.pace = pace
        self.workspace = workspace
        self._sleep = sleep
        self._budgets: dict[str, Budget] = {}

    def budget(self, name: str, limit: RequestBudget) -> Budget:
        """The budget of that name, with ``limit`` in force from now."""
        known = self._budgets.get(name)
        if known is None:
            known = Budget(self.pace, self.workspace, name, limit, sleep=self._sleep)
            self._budgets[name] = known
        elif known.limit != limit:
            known.set_limit(limit)
        return known

    def transport(
        self,
        source_id: str,
        limit: RequestBudget,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> BudgetTransport:
        """An HTTP transport that sends under the source's budget (through ``inner``)."""
        return BudgetTransport(self.budget(source_budget(source_id), limit), inner)


class BudgetTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport that sends each request under a :class:`Budget`."""

    def __init__(self, budget: Budget, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.budget = budget
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        release = await self.budget.acquire()
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            release()
            raise
        stream = cast(httpx.AsyncByteStream, response.stream)
        if response.status_code == 429:
            try:
                now = datetime.now(UTC)
                await self.budget.throttled(
                    retry_after_seconds(response.headers.get("retry-after"), now)
                )
            except BaseException:
                release()
                await stream.aclose()
                raise
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Releasing(stream, release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Releasing(httpx.AsyncByteStream):
    """A response body that gives its seat back when it is closed (read or not)."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()
