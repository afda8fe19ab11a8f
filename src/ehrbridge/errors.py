"""One error hierarchy for ehrbridge.

::

    EhrbridgeError
    ├── InvalidInput            bad input from a caller, a file or a config
    │   ├── InvalidEvent        an event that may not be written (names the field)
    │   └── MappingError        a FHIR resource or entity that cannot be mapped (names the element)
    ├── NotFound                no such entity / conflict / record in this workspace
    ├── ConcurrencyError        an optimistic-concurrency check failed (someone wrote first)
    │   └── WriteRace           a unique key caught two writers racing; the batch may be retried
    ├── IdempotencyConflict     an idempotency key was reused for different content
    └── StorageError            the database failed (translated at the adapter boundary)
        └── SchemaError         the database schema is missing, newer, or inconsistent

Each class's docstring is its default message. Errors carry structured fields (ids, versions),
never patient data.
"""

from __future__ import annotations


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


class IdempotencyConflict(EhrbridgeError):
    """The idempotency key was already used for an event with different content."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"idempotency key {key!r} was already used for different content")


class StorageError(EhrbridgeError):
    """The database failed."""


class SchemaError(StorageError):
    """The database schema is not the one this version of ehrbridge expects."""
