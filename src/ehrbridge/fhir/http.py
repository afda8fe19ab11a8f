"""The FHIR client's HTTP boundary: retry policy, ``Retry-After``, and responses to JSON or errors.

This is the one place where an HTTP response becomes FHIR JSON or an
:class:`~ehrbridge.errors.FhirError`. Messages name the operation, the URL path (never the query
string: search parameters are patient data), the status and what was wrong; they never quote a
response body, except the issue texts of an OperationOutcome.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from ehrbridge.errors import (
    FhirAuthError,
    FhirError,
    FhirNotFound,
    FhirPreconditionFailed,
    FhirProtocolError,
    FhirUnavailable,
    OutcomeIssue,
)

log = logging.getLogger(__name__)

#: A FHIR resource as parsed JSON.
Resource = dict[str, Any]

#: Media types we read as FHIR JSON (``application/json+fhir`` is the DSTU2 spelling).
JSON_MEDIA_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
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
    (or what ``Retry-After`` asks) and returns for the next attempt, or raises ``unavailable``'s
    error once the policy allows no more. The FHIR client, the Bulk Data client and the REST
    connector share it; each keeps its own rules for what is transient.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        operation: str,
        *,
        unavailable: Callable[..., Exception],
        sleep: Callable[[float], Awaitable[object]],
        now: Callable[[], datetime],
    ) -> None:
        self.policy = policy
        self.operation = operation
        self.unavailable = unavailable
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
            raise self.unavailable(
                f"still failing after {self.count - 1} retries: {problem}",
                operation=self.operation,
                status=status,
            )
        log.warning("%s: %s; retry %d in %.1fs", self.operation, problem, self.count, delay)
        await self.sleep(delay)
        self.waited += delay


def transport_problem(exc: httpx.TransportError) -> str:
    """What went wrong with a request that got no response, for messages (never its URL)."""
    timed_out = isinstance(exc, httpx.TimeoutException)
    return f"{type(exc).__name__} ({'timed out' if timed_out else 'failed'})"


def describe(request: httpx.Request, name: str) -> str:
    """``name METHOD /path``: what a request was, without its query string."""
    return f"{name} {request.method} {request.url.path}"


def _media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower()


def _parse(response: httpx.Response) -> Resource | str:
    """The body as a FHIR resource, or what is wrong with it (never quoting it)."""
    media_type = _media_type(response)
    size = len(response.content)
    if media_type not in JSON_MEDIA_TYPES:
        kind = "an HTML page" if media_type == "text/html" else (media_type or "no Content-Type")
        return f"expected FHIR JSON, got {kind} ({size} bytes)"
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return f"the body is not valid JSON, perhaps truncated ({size} bytes)"
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        return "the body is JSON but not a FHIR resource (no resourceType)"
    return body


def decode_resource(
    response: httpx.Response, operation: str, expected: Collection[str] = ()
) -> Resource:
    """The response body as a FHIR resource, of one of the ``expected`` types if given."""
    body = _parse(response)
    status = response.status_code
    if isinstance(body, str):
        raise FhirProtocolError(body, operation=operation, status=status)
    if expected and body["resourceType"] not in expected:
        wanted = " or ".join(sorted(expected))
        problem = f"expected {wanted}, got {body['resourceType']}"
        raise FhirProtocolError(problem, operation=operation, status=status)
    return body


def outcome_issues(resource: Resource) -> tuple[OutcomeIssue, ...]:
    """The issues of an OperationOutcome (none for any other resource).

    >>> outcome_issues({"resourceType": "OperationOutcome", "issue": [
    ...     {"severity": "error", "code": "invalid", "details": {"text": "bad date"},
    ...      "expression": ["Patient.birthDate"]}]})[0].expression
    ('Patient.birthDate',)
    """
    if resource.get("resourceType") != "OperationOutcome":
        return ()
    issues = []
    for issue in resource.get("issue") or ():
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        text = details.get("text") if isinstance(details, dict) else None
        expression = issue.get("expression") or issue.get("location") or ()
        issues.append(
            OutcomeIssue(
                severity=str(issue.get("severity", "")),
                code=str(issue.get("code", "")),
                text=str(text or issue.get("diagnostics") or ""),
                expression=tuple(str(e) for e in expression if isinstance(e, str)),
            )
        )
    return tuple(issues)


def error_for(response: httpx.Response, operation: str, *, write: bool) -> FhirError:
    """The error for a response that is not a success."""
    status = response.status_code
    body = _parse(response)
    issues = () if isinstance(body, str) else outcome_issues(body)
    problem = body if isinstance(body, str) else None
    where: dict[str, Any] = {"operation": operation, "status": status, "issues": issues}
    if status in (404, 410):
        return FhirNotFound(**where)
    if status == 412:
        return FhirPreconditionFailed(**where)
    if status in (401, 403):
        return FhirAuthError(**where)
    if status in RETRY_STATUSES:
        reached = write and status != 429
        suffix = "; the write may have been applied" if reached else ""
        message = f"the server failed{f' ({problem})' if problem else ''}{suffix}"
        return FhirUnavailable(message, may_have_reached_server=reached, **where)
    if problem is not None:
        return FhirProtocolError(f"an error without an OperationOutcome: {problem}", **where)
    return FhirError(**where)
