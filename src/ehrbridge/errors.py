"""One error hierarchy for ehrbridge.

::

    EhrbridgeError
    ├── InvalidInput            bad input from a caller, a file or a config
    │   ├── InvalidEvent        an event that may not be written (names the field)
    │   ├── MappingError        a FHIR resource or entity that cannot be mapped (names the element)
    │   └── ConfigError         the runner's config file is not valid (one line per problem)
    ├── NotFound                no such entity / conflict / record in this workspace
    ├── ConcurrencyError        an optimistic-concurrency check failed (someone wrote first)
    │   ├── WriteRace           a unique key caught two writers racing; the batch may be retried
    │   └── RecordClaimed       another writer linked a new record to another entity first
    ├── IdempotencyConflict     an idempotency key was reused for different content
    ├── SlotUnavailable         the appointment slot asked for is not free (taken, busy, gone)
    ├── AuthError               who is asking, or what they may do, stops the request
    │   ├── Unauthenticated     no API key, or one that is unknown, malformed or revoked
    │   └── PermissionDenied    the key's role or write scope does not allow the operation
    ├── StorageError            the database failed (translated at the adapter boundary)
    │   └── SchemaError         the database schema is missing, newer, or inconsistent
    ├── FhirError               a FHIR server refused a request (status, OperationOutcome issues)
    │   ├── FhirNotFound        404 Not Found or 410 Gone
    │   ├── FhirPreconditionFailed  412: the If-Match version is no longer current
    │   ├── FhirAuthError       the server or its token endpoint refused our credentials
    │   ├── FhirUnavailable     unreachable, timed out, or still failing after the retries
    │   ├── FhirProtocolError   the response is not FHIR (an HTML page, truncated JSON, wrong type)
    │   └── ExportFailed        a Bulk Data export failed on the server (start a new one)
    ├── RestSourceError         a custom REST source refused a request or sent something unusable
    │   ├── RestAuthError       401/403, or the OAuth2 token endpoint refused our client
    │   ├── RestUnavailable     unreachable, timed out, or 429/5xx after the retries
    │   └── RestProtocolError   not JSON, an HTML page, records not a list, a bad next link
    ├── LoopFailed              a runner loop died (names the loop)
    └── SyncFailed              the demo's sync did not finish

Each class's docstring is its default message. Errors carry structured fields (ids, versions),
never patient data.
"""

from __future__ import annotations

from dataclasses import dataclass


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


class FhirError(EhrbridgeError):
    """The FHIR server refused the request."""

    def __init__(
        self,
        message: str | None = None,
        *,
        operation: str = "",
        status: int | None = None,
        issues: tuple[OutcomeIssue, ...] = (),
    ) -> None:
        #: what was asked, with the URL path but never the query: ``read GET /fhir/R4/Patient/1``
        self.operation = operation
        #: the HTTP status, when there was a response
        self.status = status
        #: the OperationOutcome issues the server sent back
        self.issues = issues
        head = message or (type(self).__doc__ or type(self).__name__).strip()
        parts = [operation, f"HTTP {status}" if status is not None else "", head]
        detail = "; ".join(str(issue) for issue in issues[:5])
        text = ": ".join(p for p in parts if p)
        super().__init__(f"{text} ({detail})" if detail else text)


class FhirNotFound(FhirError):
    """The resource does not exist or was deleted."""


class FhirPreconditionFailed(FhirError):
    """The resource changed since the version given in If-Match; read it again and retry."""


class FhirAuthError(FhirError):
    """The FHIR server or its token endpoint refused our credentials."""


class FhirUnavailable(FhirError):
    """The FHIR server could not be reached or kept failing."""

    def __init__(
        self,
        message: str | None = None,
        *,
        operation: str = "",
        status: int | None = None,
        issues: tuple[OutcomeIssue, ...] = (),
        may_have_reached_server: bool = False,
    ) -> None:
        #: a write may have been applied: check before sending it again
        self.may_have_reached_server = may_have_reached_server
        super().__init__(message, operation=operation, status=status, issues=issues)


class FhirProtocolError(FhirError):
    """The response is not the FHIR JSON the request calls for."""


class ExportFailed(FhirError):
    """The export failed on the server; start a new one."""


class RestSourceError(EhrbridgeError):
    """The REST data source refused the request.

    Messages name the operation and the URL path (never the query string: parameters can be
    patient data), the status and what was wrong; never a body or a secret.
    """

    def __init__(
        self, message: str | None = None, *, operation: str = "", status: int | None = None
    ) -> None:
        #: ``GET /api/v2/appointments``: what was asked, without the query
        self.operation = operation
        #: the HTTP status, when there was a response
        self.status = status
        head = message or (type(self).__doc__ or type(self).__name__).strip()
        parts = [operation, f"HTTP {status}" if status is not None else "", head]
        super().__init__(": ".join(p for p in parts if p))


class RestAuthError(RestSourceError):
    """The REST data source or its token endpoint refused our credentials."""


class RestUnavailable(RestSourceError):
    """The REST data source could not be reached or kept failing."""


class RestProtocolError(RestSourceError):
    """The REST data source sent something that is not the JSON the config describes."""


class LoopFailed(EhrbridgeError):
    """A runner loop died."""

    def __init__(self, loop: str, cause: BaseException) -> None:
        #: the loop's name, e.g. ``poll:ehr:Patient``
        self.loop = loop
        super().__init__(f"loop {loop} died: {type(cause).__name__}: {cause}")


class SyncFailed(EhrbridgeError):
    """The demo's sync did not finish."""
