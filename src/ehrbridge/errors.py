"""One error hierarchy for ehrbridge.

::

    EhrbridgeError
    ├── InvalidInput            bad input from a caller, a file or a config
    │   ├── InvalidEvent        an event that may not be written (names the field)
    │   ├── MappingError        a FHIR resource or entity that cannot be mapped (names the element)
    │   ├── ConfigError         the runner's config file is not valid (one line per problem)
    │   ├── TransformError      a REST value a transform cannot make canonical (names the transform)
    │   ├── RecordError         a REST record that cannot be mapped (names the field)
    │   └── Hl7Error            an HL7 v2 message that cannot be read (reserved)
    ├── NotFound                no such entity / conflict / record in this workspace
    ├── ConcurrencyError        an optimistic-concurrency check failed (someone wrote first)
    │   ├── WriteRace           a unique key caught two writers racing; the batch may be retried
    │   └── RecordClaimed       another writer linked a new record to another entity first
    ├── IdempotencyConflict     an idempotency key was reused for different content
    ├── SlotUnavailable         the appointment slot asked for is not free (taken, busy, gone)
    ├── ReviewConflict          a review item cannot take that action now (a 409)
    │   ├── ItemClaimed         another operator holds the item's claim
    │   └── ItemDecided         the item was already decided
    ├── AuthError               who is asking, or what they may do, stops the request
    │   ├── Unauthenticated     no API key, or one that is unknown, malformed or revoked
    │   └── PermissionDenied    the key's role or write scope does not allow the operation
    ├── StorageError            the database failed (translated at the adapter boundary)
    │   └── SchemaError         the database schema is missing, newer, or inconsistent
    ├── SourceError             a data source refused a request or sent something unusable
    │   ├── SourceAuthError     the source or its token endpoint refused our credentials
    │   ├── SourceUnavailable   unreachable, timed out, or still failing after the retries
    │   ├── SourceProtocolError the response is not what the request calls for
    │   ├── FhirError           a FHIR server refused a request (status, OperationOutcome issues)
    │   │   ├── FhirNotFound        404 Not Found or 410 Gone
    │   │   ├── FhirPreconditionFailed  412: the If-Match version is no longer current
    │   │   ├── FhirAuthError       +SourceAuthError: the server or its token endpoint refused us
    │   │   ├── FhirUnavailable     +SourceUnavailable: unreachable, timed out, or still failing
    │   │   ├── FhirProtocolError   +SourceProtocolError: not FHIR (HTML, truncated, wrong type)
    │   │   └── ExportFailed        a Bulk Data export failed on the server (start a new one)
    │   └── RestSourceError     a custom REST source refused a request or sent something unusable
    │       ├── RestAuthError       +SourceAuthError: 401/403, or the token endpoint refused us
    │       ├── RestUnavailable     +SourceUnavailable: unreachable, timed out, or 429/5xx
    │       └── RestProtocolError   +SourceProtocolError: not JSON, HTML, a bad next link
    ├── SinkError               a sink refused a write, or its outcome is unknown
    │   └── SinkConflict            the sink changed the record since the write was decided
    ├── OutboxConflict          an outbox item cannot take that action now (a 409)
    ├── BrowserError            a portal script failed in the browser (reserved)
    ├── LoopFailed              a runner loop died (names the loop)
    └── SyncFailed              the demo's sync did not finish

``+Kind``: a second base class. Each class's docstring is its default message. Errors carry
structured fields (ids, versions, a FhirError's :class:`OutcomeIssue` s), never patient data;
source errors name the operation and the URL path (never the query string: parameters can be
patient data), the status and what was wrong, never a body or a secret.

**Source errors.** Every client of a data source raises the kinds of its own family (``Fhir*``
for the FHIR and Bulk Data clients, ``Rest*`` for the REST connector), so a caller that handles
one source catches exactly that source's errors, and one that handles any source may catch the
``Source*`` kind, which each family's kind also is. The HTTP code
the clients share (:mod:`ehrbridge.http.retry`, :mod:`ehrbridge.http.oauth`) knows no family:
it raises the bare ``Source*`` kinds, and each client translates them once, at its boundary,
with :func:`fhir_errors` or :func:`rest_errors`. That keeps the shared driver free of
error-class arguments (there is nothing to pass wrong) and keeps the families' meaning: an
``except FhirUnavailable`` still sees every FHIR failure and never a REST one.

**Reserved kinds.** :class:`SinkError`, :class:`BrowserError` and :class:`Hl7Error` are raised by
the issues that build them (outbound sinks, design.md §9; browser portals, §7; HL7 v2 input);
they are here now so that those issues add raises, not a new branch of the tree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any


class EhrbridgeError(Exception):
    """ehrbridge failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or type(self).__name__).strip())


class InvalidInput(EhrbridgeError):
    """The input is not valid."""


class InvalidEvent(InvalidInput):
    """The event is not valid."""

    def __init__(self, field: str, problem: str) -> None:
        #: the event field that is wrong, e.g. ``confidence`` or ``data.birth_date``
        self.field = field
        super().__init__(f"invalid event: {field}: {problem}")


class MappingError(InvalidInput):
    """The FHIR resource or entity data cannot be mapped."""

    def __init__(self, path: str, problem: str) -> None:
        #: the element or field that is wrong, FHIRPath-like: ``Patient.telecom[1].value``, or
        #: ``<EntityType>.<field path>`` for entity data
        self.path = path
        #: what is wrong, never the value itself (values are PHI)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ConfigError(InvalidInput):
    """The runner's config is not valid."""

    def __init__(self, problems: list[str]) -> None:
        #: one line per problem: ``file:line: key.path: what is wrong``
        self.problems = problems
        super().__init__("\n".join(problems))


class NotFound(EhrbridgeError):
    """Not found."""


class ConcurrencyError(EhrbridgeError):
    """Another writer changed the entity first; re-read it and try again."""

    def __init__(self, entity: str, expected: int, actual: int | None) -> None:
        #: ``EntityType/entity_id``
        self.entity = entity
        self.expected = expected
        #: the version found, when known
        self.actual = actual
        now = f"is at version {actual}" if actual is not None else "has moved on"
        super().__init__(
            f"{entity} {now}, not the expected version {expected}: "
            "another writer changed it first; re-read and retry"
        )


class WriteRace(ConcurrencyError):
    """Another writer created the same entity version or record first; retry the batch."""

    def __init__(self, constraint: str) -> None:
        self.entity = ""
        self.expected, self.actual = -1, None
        #: the database constraint that caught the race (names columns, never values)
        self.constraint = constraint
        EhrbridgeError.__init__(self, f"{type(self).__doc__} ({constraint})")


class RecordClaimed(ConcurrencyError):
    """Another writer linked the record to another entity first; resolve again and retry."""

    def __init__(self, record: str) -> None:
        self.entity = ""
        self.expected, self.actual = -1, None
        #: ``data source ResourceType/external id`` (a source's own id, never patient data)
        self.record = record
        EhrbridgeError.__init__(
            self,
            f"{record} was linked to another entity by a concurrent writer; the references "
            "translated for it are stale: resolve the batch again and retry",
        )


class IdempotencyConflict(EhrbridgeError):
    """The idempotency key was already used for an event with different content."""

    def __init__(self, key: str) -> None:
        #: the key (not in the message: callers build keys from call data)
        self.key = key
        super().__init__("the idempotency key was already used for different content")


class ReviewConflict(EhrbridgeError):
    """The review item cannot take that action now."""

    def __init__(self, item_id: str, message: str | None = None) -> None:
        #: the review item
        self.item_id = item_id
        super().__init__(message)


class ItemClaimed(ReviewConflict):
    """Another operator holds the review item's claim."""

    def __init__(self, item_id: str, holder: str) -> None:
        #: the operator holding the claim
        self.holder = holder
        super().__init__(item_id, f"this review item is claimed by {holder}")


class ItemDecided(ReviewConflict):
    """The review item was already decided."""

    def __init__(self, item_id: str, decision: str, by: str) -> None:
        #: what it was decided as (approved, rejected, corrected) and by whom
        self.decision, self.by = decision, by
        super().__init__(item_id, f"this review item was already {decision} by {by}")


class SlotUnavailable(EhrbridgeError):
    """The appointment slot is not free."""

    def __init__(self, slot: str, message: str | None = None) -> None:
        #: ``Slot/<entity id>``
        self.slot = slot
        super().__init__(message or f"{slot} is not free")


class AuthError(EhrbridgeError):
    """The request is not allowed."""


class Unauthenticated(AuthError):
    """No valid API key was presented."""


class PermissionDenied(AuthError):
    """This key may not do that."""

    def __init__(
        self, permission: str, message: str | None = None, *, entity_type: str | None = None
    ) -> None:
        #: the permission that was missing, e.g. ``write.voice``
        self.permission = permission
        #: the entity type a write-scope refusal is about
        self.entity_type = entity_type
        super().__init__(message or f"this key may not {permission}")


class StorageError(EhrbridgeError):
    """The database failed."""


class SchemaError(StorageError):
    """The database schema is not the one this version of ehrbridge expects."""


@dataclass(frozen=True, kw_only=True)
class OutcomeIssue:
    """One ``OperationOutcome.issue`` (https://hl7.org/fhir/R4/operationoutcome.html)."""

    #: fatal | error | warning | information
    severity: str
    #: the issue type, e.g. ``invalid``, ``not-found``, ``conflict``
    code: str
    #: ``details.text`` or ``diagnostics``, as the server wrote it
    text: str = ""
    #: FHIRPath expressions of the elements concerned
    expression: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f" at {', '.join(self.expression)}" if self.expression else ""
        return f"{self.severity} {self.code}{where}: {self.text}" if self.text else self.code


class SourceError(EhrbridgeError):
    """The data source refused the request."""

    def __init__(
        self, message: str | None = None, *, operation: str = "", status: int | None = None
    ) -> None:
        #: what was asked, with the URL path but never the query: ``read GET /fhir/R4/Patient/1``
        self.operation = operation
        #: the HTTP status, when there was a response
        self.status = status
        #: what was wrong: the message given, or the class's docstring
        self.reason = message or (type(self).__doc__ or type(self).__name__).strip()
        super().__init__(self._text())

    def _text(self) -> str:
        """``operation: HTTP status: reason``, leaving out what is not known."""
        parts = [self.operation, f"HTTP {self.status}" if self.status is not None else ""]
        return ": ".join(p for p in [*parts, self.reason] if p)


class SourceAuthError(SourceError):
    """The data source or its token endpoint refused our credentials."""


class SourceUnavailable(SourceError):
    """The data source could not be reached or kept failing."""

    def __init__(
        self,
        message: str | None = None,
        *,
        operation: str = "",
        status: int | None = None,
        may_have_reached_server: bool = False,
        retry_after: float | None = None,
    ) -> None:
        #: a write may have been applied: check before sending it again
        self.may_have_reached_server = may_have_reached_server
        #: seconds the source asked us to wait (``Retry-After`` of its last ``429`` or ``503``)
        self.retry_after = retry_after
        super().__init__(message, operation=operation, status=status)


class SourceProtocolError(SourceError):
    """The data source sent something that is not what the request calls for."""


class FhirError(SourceError):
    """The FHIR server refused the request."""

    def __init__(
        self,
        message: str | None = None,
        *,
        operation: str = "",
        status: int | None = None,
        issues: tuple[OutcomeIssue, ...] = (),
    ) -> None:
        #: the OperationOutcome issues the server sent back
        self.issues = issues
        super().__init__(message, operation=operation, status=status)

    def _text(self) -> str:
        text = super()._text()
        detail = "; ".join(str(issue) for issue in self.issues[:5])
        return f"{text} ({detail})" if detail else text


class FhirNotFound(FhirError):
    """The resource does not exist or was deleted."""


class FhirPreconditionFailed(FhirError):
    """The resource changed since the version given in If-Match; read it again and retry."""


class FhirAuthError(FhirError, SourceAuthError):
    """The FHIR server or its token endpoint refused our credentials."""


class FhirUnavailable(FhirError, SourceUnavailable):
    """The FHIR server could not be reached or kept failing."""

    def __init__(
        self,
        message: str | None = None,
        *,
        operation: str = "",
        status: int | None = None,
        issues: tuple[OutcomeIssue, ...] = (),
        may_have_reached_server: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, operation=operation, status=status, issues=issues)
        # after super(): SourceUnavailable.__init__ (later in the MRO) sets its defaults
        self.may_have_reached_server = may_have_reached_server
        self.retry_after = retry_after


class FhirProtocolError(FhirError, SourceProtocolError):
    """The response is not the FHIR JSON the request calls for."""


class ExportFailed(FhirError):
    """The export failed on the server; start a new one."""


class RestSourceError(SourceError):
    """The REST data source refused the request.

    Messages name the operation and the URL path (never the query string: parameters can be
    patient data), the status and what was wrong; never a body or a secret.
    """


class RestAuthError(RestSourceError, SourceAuthError):
    """The REST data source or its token endpoint refused our credentials."""


class RestUnavailable(RestSourceError, SourceUnavailable):
    """The REST data source could not be reached or kept failing."""


class RestProtocolError(RestSourceError, SourceProtocolError):
    """The REST data source sent something that is not the JSON the config describes."""


#: each family's kind for each bare kind the shared HTTP code raises
_FHIR_KINDS: dict[type[SourceError], type[FhirError]] = {
    SourceError: FhirError,
    SourceAuthError: FhirAuthError,
    SourceUnavailable: FhirUnavailable,
    SourceProtocolError: FhirProtocolError,
}
_REST_KINDS: dict[type[SourceError], type[RestSourceError]] = {
    SourceError: RestSourceError,
    SourceAuthError: RestAuthError,
    SourceUnavailable: RestUnavailable,
    SourceProtocolError: RestProtocolError,
}


@contextmanager
def _translating(kinds: Mapping[type[SourceError], type[SourceError]]) -> Iterator[None]:
    try:
        yield
    except SourceError as exc:
        kind = kinds.get(type(exc))
        if kind is None:
            raise  # already a family's kind (FHIR or REST): left as it is
        error = kind(exc.reason, operation=exc.operation, status=exc.status)
        if isinstance(exc, SourceUnavailable) and isinstance(error, SourceUnavailable):
            error.may_have_reached_server = exc.may_have_reached_server
            error.retry_after = exc.retry_after
        raise error from exc


def fhir_errors() -> AbstractContextManager[None]:
    """In the block, a bare ``Source*`` error (raised by :mod:`ehrbridge.http`) becomes the
    ``Fhir*`` kind of the same meaning, with the same message: the FHIR clients' boundary."""
    return _translating(_FHIR_KINDS)


def rest_errors() -> AbstractContextManager[None]:
    """In the block, a bare ``Source*`` error (raised by :mod:`ehrbridge.http`) becomes the
    ``Rest*`` kind of the same meaning, with the same message: the REST connector's boundary."""
    return _translating(_REST_KINDS)


class TransformError(InvalidInput):
    """A value the transform cannot turn into a canonical value (the message has no value)."""


class RecordError(InvalidInput):
    """A record that cannot be mapped; the message names the field, never a value."""


# Raised by the HL7 v2 reader (the HL7 v2 issue; design.md §4, ``fhir (hl7v2)``): a segment or
# field that breaks the encoding rules, named by its position (``PID-5``), never by its value.
class Hl7Error(InvalidInput):
    """The HL7 v2 message cannot be read."""


# Raised by the outbound sinks (the outbound issue; design.md §9) and read by the dispatcher: a
# ``transient`` error is retried with backoff, any other goes to the dead letter; an error that
# ``may_have_reached_sink`` (the connection broke after the write was sent) is looked up at the
# sink before the write is ever sent again.
class SinkError(EhrbridgeError):
    """The sink refused the write."""

    def __init__(
        self,
        message: str | None = None,
        *,
        operation: str = "",
        status: int | None = None,
        transient: bool = False,
        may_have_reached_sink: bool = False,
        retry_after: float | None = None,
    ) -> None:
        #: what was asked, with the URL path but never the query: ``create POST /fhir/R4/Patient``
        self.operation = operation
        #: the HTTP status, when there was a response
        self.status = status
        #: worth retrying later (429, 5xx, a timeout); False: it would fail the same way again
        self.transient = transient
        #: the write may have been applied: look it up before sending it again
        self.may_have_reached_sink = may_have_reached_sink
        #: seconds the sink asked us to wait (``Retry-After`` of a ``429`` or ``503``)
        self.retry_after = retry_after
        head = message or (type(self).__doc__ or type(self).__name__).strip()
        parts = [operation, f"HTTP {status}" if status is not None else "", head]
        super().__init__(": ".join(p for p in parts if p))


class SinkConflict(SinkError):
    """The sink changed the record since the write was decided."""

    def __init__(
        self, conflicts: Sequence[Any], *, operation: str = "", status: int | None = None
    ) -> None:
        #: the :class:`~ehrbridge.outbound.sinks.Conflicting` fields (values never in the message)
        self.conflicts = tuple(conflicts)
        names = ", ".join(sorted({c.field for c in self.conflicts})) or "the record"
        super().__init__(f"the sink changed {names} since", operation=operation, status=status)


class OutboxConflict(EhrbridgeError):
    """The outbox item cannot take that action now."""

    def __init__(self, item_id: str, message: str) -> None:
        #: the outbox item
        self.item_id = item_id
        super().__init__(message)


# Raised by the browser tier (the browser-portal issue; design.md §7): a portal script's step that
# timed out or found nothing; the message names the script and the step, while the screenshot
# and the trace are kept beside the job, never in the message.
class BrowserError(EhrbridgeError):
    """The portal script failed in the browser."""


class LoopFailed(EhrbridgeError):
    """A runner loop died."""

    def __init__(self, loop: str, cause: BaseException) -> None:
        #: the loop's name, e.g. ``poll:ehr:Patient``
        self.loop = loop
        super().__init__(f"loop {loop} died: {type(cause).__name__}: {cause}")


class SyncFailed(EhrbridgeError):
    """The demo's sync did not finish."""
