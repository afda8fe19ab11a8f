"""The sandbox's one error: an HTTP status and an OperationOutcome issue.

Every refusal in the core raises :class:`OperationFailed`; the app turns it into a response in one
place. Texts name elements and ids, never values (they may be patient data).
"""

from __future__ import annotations

from typing import Any

#: The reason phrases the sandbox uses in ``Bundle.entry.response.status``.
REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

#: The issue code per status when none is given (https://hl7.org/fhir/R4/valueset-issue-type.html).
_CODES = {
    400: "invalid",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    503: "transient",
}


def status_line(status: int) -> str:
    """``"201 Created"``: a status as ``Bundle.entry.response.status`` writes it.

    >>> status_line(201), status_line(299)
    ('201 Created', '299')
    """
    reason = REASONS.get(status)
    return f"{status} {reason}" if reason else str(status)


def operation_outcome(
    text: str,
    *,
    code: str = "processing",
    severity: str = "error",
    expression: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An OperationOutcome with one issue.

    >>> operation_outcome("ok", severity="information", code="informational")["issue"][0]["code"]
    'informational'
    """
    issue: dict[str, Any] = {"severity": severity, "code": code, "details": {"text": text}}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class OperationFailed(Exception):
    """A FHIR interaction was refused: a status and the issues of its OperationOutcome."""

    def __init__(
        self,
        status: int,
        text: str,
        *,
        code: str | None = None,
        expression: tuple[str, ...] = (),
        issues: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status}: {text}")
        #: the HTTP status
        self.status = status
        issue_code = code or _CODES.get(status, "processing")
        outcome = operation_outcome(text, code=issue_code, expression=expression)
        if issues:
            outcome["issue"] = issues
        #: the OperationOutcome sent as the body
        self.outcome: dict[str, Any] = outcome
