"""The FHIR sink's errors: every failure of the FHIR client becomes a
:class:`~ehrbridge.errors.SinkError` here, and only here (the table is in docs/fhir-sink.md).

OperationOutcome texts can quote the values sent (a date, a phone number), so a message keeps an
issue's severity, code and element paths, and its text only with quoted parts and number-like or
address-like words cut out (:func:`safe_text`). Values are never in a message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from ehrbridge.errors import (
    FhirAuthError,
    FhirError,
    FhirProtocolError,
    FhirUnavailable,
    InvalidInput,
    MappingError,
    OutcomeIssue,
    SinkError,
)

_QUOTED = re.compile("'[^']*'|\"[^\"]*\"|`[^`]*`|\u2018[^\u2019]*\u2019|\u201c[^\u201d]*\u201d")
_VALUE_LIKE = re.compile(r"\S*(\d\S*\d|\d{2,}|@)\S*")


def safe_text(text: str) -> str:
    """An OperationOutcome text without what may be a value: quoted parts and words with
    digits (dates, phone numbers, ids) or an ``@`` become ``…``.

    >>> safe_text("Invalid date '1980-13-45' for birthDate")
    'Invalid date … for birthDate'
    >>> safe_text("value +16175550142 is not valid at Patient.telecom[0] for a@b.example")
    'value … is not valid at Patient.telecom[0] for …'
    >>> safe_text("Missing required property")
    'Missing required property'
    """
    return _VALUE_LIKE.sub("…", _QUOTED.sub("…", text))[:300]


def describe_issue(issue: OutcomeIssue) -> str:
    """One issue for a message: severity, code, element paths, and its :func:`safe_text`.

    >>> describe_issue(OutcomeIssue(severity="error", code="invalid",
    ...     text="Invalid date '1980-13-45'", expression=("Patient.birthDate",)))
    'error invalid at Patient.birthDate: Invalid date …'
    """
    where = f" at {', '.join(issue.expression)}" if issue.expression else ""
    text = safe_text(issue.text) if issue.text else ""
    return f"{issue.severity} {issue.code}{where}{': ' + text if text else ''}"


def sink_error(exc: FhirError, *, write: bool) -> SinkError:
    """The :class:`SinkError` for a FHIR client error (the table in docs/fhir-sink.md)."""
    operation, status = exc.operation, exc.status
    detail = "; ".join(describe_issue(i) for i in exc.issues[:5])
    reason = exc.reason if not detail else f"{exc.reason} ({detail})"
    if isinstance(exc, FhirUnavailable):
        return SinkError(
            reason,
            operation=operation,
            status=status,
            transient=True,
            may_have_reached_sink=write and exc.may_have_reached_server,
            retry_after=exc.retry_after,
        )
    if isinstance(exc, FhirProtocolError) and write and status is not None and status < 300:
        # The write was accepted; only its answer is unusable: look it up before sending again.
        return SinkError(
            reason, operation=operation, status=status, transient=True, may_have_reached_sink=True
        )
    if isinstance(exc, FhirAuthError):
        reason = f"the sink refused our credentials: {reason}"
        return SinkError(reason, operation=operation, status=status)
    return SinkError(reason, operation=operation, status=status)


@contextmanager
def translated(*, write: bool) -> Iterator[None]:
    """In the block, FHIR client errors, mapping refusals and bad input become SinkError
    (``write``: the block sends a write)."""
    try:
        yield
    except FhirError as exc:
        raise sink_error(exc, write=write) from exc
    except MappingError as exc:
        raise SinkError(f"cannot map: {exc.path}: {exc.problem}") from exc
    except InvalidInput as exc:
        raise SinkError(str(exc)) from exc
