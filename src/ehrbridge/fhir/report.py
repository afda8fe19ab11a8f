"""What an import did: counts per resource type and status, and every entry that failed.

Filled by :mod:`ehrbridge.fhir.importer`; read by the file-drop and Bulk Data connectors, the push
command and the command-line summaries, and written as NDJSON (:func:`dumps_errors`) for a report
file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import orjson

Status = Literal["created", "updated", "unchanged", "failed"]
STATUSES: tuple[Status, ...] = ("created", "updated", "unchanged", "failed")


@dataclass(frozen=True, kw_only=True)
class EntryError:
    """One entry that was not imported, and why."""

    file: str
    position: str  #: ``entry[3]``, ``line 12`` or ``file``
    resource_type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.position}: {self.reason}"


@dataclass(kw_only=True)
class ImportReport:
    """What an import did, per resource type and entry."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)  #: resource type -> status -> n
    errors: list[EntryError] = field(default_factory=list)
    events: int = 0  #: events written
    files: int = 0

    def count(self, resource_type: str, status: Status, n: int = 1) -> None:
        self.counts.setdefault(resource_type, Counter())[status] += n

    def add(self, other: ImportReport) -> None:
        """Count ``other``'s entries, errors and events in this report too."""
        for resource_type, counts in other.counts.items():
            self.counts.setdefault(resource_type, Counter()).update(counts)
        self.errors += other.errors
        self.events += other.events

    def total(self, status: Status) -> int:
        return sum(c[status] for c in self.counts.values())

    @property
    def resources(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())


def dumps_errors(errors: Iterable[EntryError]) -> bytes:
    """The errors as NDJSON, for a report file."""
    return b"".join(
        orjson.dumps(
            {
                "file": e.file,
                "position": e.position,
                "resourceType": e.resource_type,
                "reason": e.reason,
            }
        )
        + b"\n"
        for e in errors
    )
