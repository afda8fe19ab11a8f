"""The FHIR client's HTTP boundary: responses to FHIR JSON or errors.

Retries (the policy, ``Retry-After``) are in :mod:`ehrbridge.http.retry`, shared with the REST
connector and the sinks.

This is the one place where an HTTP response becomes FHIR JSON or an
:class:`~ehrbridge.errors.FhirError`. Messages name the operation, the URL path (never the query
string: search parameters are patient data), the status and what was wrong; they never quote a
response body, except the issue texts of an OperationOutcome.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
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
from ehrbridge.http.retry import RETRY_STATUSES, retry_after_seconds

#: A FHIR resource as parsed JSON.
Resource = dict[str, Any]

#: Media types we read as FHIR JSON (``application/json+fhir`` is the DSTU2 spelling).
JSON_MEDIA_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


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
        retry_after = retry_after_seconds(response.headers.get("retry-after"), datetime.now(UTC))
        return FhirUnavailable(
            message, may_have_reached_server=reached, retry_after=retry_after, **where
        )
    if problem is not None:
        return FhirProtocolError(f"an error without an OperationOutcome: {problem}", **where)
    return FhirError(**where)
