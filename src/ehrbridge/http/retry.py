"""Retries of idempotent HTTP requests: the policy, ``Retry-After``, and the retry driver.

Shared by every HTTP client of ehrbridge (the FHIR and Bulk Data clients, the REST connector, and
soon the outbound sinks); each keeps its own rules for what is transient.

The driver belongs to no family of errors: giving up raises the bare
:class:`~ehrbridge.errors.SourceUnavailable`, and each client turns it into its own kind
(``FhirUnavailable``, ``RestUnavailable``) once, at its boundary
(:func:`~ehrbridge.errors.fhir_errors`, :func:`~ehrbridge.errors.rest_errors`). A driver that took
the class to raise as an argument would trust every caller to pass a matching one; this way the
kind is decided in one place per client and the driver can be tested alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx

from ehrbridge.errors import SourceUnavailable

log = logging.getLogger(__name__)

#: Statuses worth retrying an idempotent request on.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How idempotent requests (GET) are retried; writes are never retried."""

    #: retries after the first attempt
    max_retries: int = 3
    #: the first backoff in seconds; it doubles with every retry
    backoff: float = 0.5
    #: the longest single wait; a ``Retry-After`` asking for more makes us give up at once
    max_wait: float = 30.0
    #: the most time spent waiting over all retries of one request
    max_total_wait: float = 60.0

    def delay(self, retry: int, retry_after: float | None, waited: float) -> float | None:
        """Seconds to wait before retry number ``retry`` (from 1), or None to give up.

        >>> policy = RetryPolicy()
        >>> policy.delay(1, None, 0.0), policy.delay(3, None, 0.0), policy.delay(1, 7.0, 0.0)
        (0.5, 2.0, 7.0)
        >>> policy.delay(4, None, 0.0), policy.delay(1, 31.0, 0.0), policy.delay(2, 5.0, 58.0)
        (None, None, None)
        """
        if retry > self.max_retries:
            return None
        wait = retry_after if retry_after is not None else self.backoff * 2 ** (retry - 1)
        wait = max(wait, 0.0)
        if retry_after is None:
            wait = min(wait, self.max_wait)
        if wait > self.max_wait or waited + wait > self.max_total_wait:
            return None
        return wait


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent.

    https://www.rfc-editor.org/rfc/rfc9110#field.retry-after

    >>> from datetime import UTC
    >>> now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    >>> retry_after_seconds("3", now), retry_after_seconds("Wed, 21 Oct 2026 07:28:05 GMT", now)
    (3.0, 5.0)
    >>> retry_after_seconds("Wed, 21 Oct 2026 07:27:00 GMT", now), retry_after_seconds("soon", now)
    (0.0, None)
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - now).total_seconds(), 0.0)


class Retries:
    """The retries of one idempotent request under a :class:`RetryPolicy`.

    The request loop calls :meth:`wait` after each transient failure: it waits the policy's delay
    (or what ``Retry-After`` asks) and returns for the next attempt, or raises
    :class:`~ehrbridge.errors.SourceUnavailable` once the policy allows no more. The FHIR client,
    the Bulk Data client and the REST connector share it; each keeps its own rules for what is
    transient.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        operation: str,
        *,
        sleep: Callable[[float], Awaitable[object]],
        now: Callable[[], datetime],
    ) -> None:
        self.policy = policy
        self.operation = operation
        self.sleep = sleep
        self.now = now
        #: retries so far
        self.count = 0
        #: seconds waited so far
        self.waited = 0.0

    async def wait(self, problem: str, response: httpx.Response | None = None) -> None:
        """After a failed attempt (``problem``; the ``response`` if there was one): wait for the
        next, or raise."""
        status = None if response is None else response.status_code
        retry_after = None
        if response is not None:
            retry_after = retry_after_seconds(response.headers.get("retry-after"), self.now())
        self.count += 1
        delay = self.policy.delay(self.count, retry_after, self.waited)
        if delay is None:
            raise SourceUnavailable(
                f"still failing after {self.count - 1} retries: {problem}",
                operation=self.operation,
                status=status,
                retry_after=retry_after,
            )
        log.warning("%s: %s; retry %d in %.1fs", self.operation, problem, self.count, delay)
        await self.sleep(delay)
        self.waited += delay


def transport_problem(exc: httpx.TransportError) -> str:
    """What went wrong with a request that got no response, for messages (never its URL)."""
    timed_out = isinstance(exc, httpx.TimeoutException)
    return f"{type(exc).__name__} ({'timed out' if timed_out else 'failed'})"
