"""Sinks: where the dispatcher delivers outbox items (docs/design.md §9).

A sink is a data source that also takes writes. Each kind (``fhir``, ``rest``, later
``browser``) implements :class:`Sink`; the dispatcher knows nothing else of it. A sink raises
:class:`~ehrbridge.errors.SinkError` for every failure, saying whether it is ``transient``
(retry later), whether the request ``may_have_reached_sink`` (look it up before sending again),
and, for a throttle, the ``retry_after`` the sink asked for; and
:class:`~ehrbridge.errors.SinkConflict` when the sink changed what the item would write since the
base it was decided on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ehrbridge.outbound.outbox import OutboxItem

#: the identifier system of the ehrbridge identifier a created resource carries (its value is
#: the outbox item's key), by which a write of unknown outcome is found again
IDENTIFIER_SYSTEM = "https://ehrbridge.dev/fhir/outbox-key"


@dataclass(frozen=True, kw_only=True)
class Delivered:
    """What the sink holds after a write: the record written and its version."""

    #: the record at the sink, ``Patient/123``
    ref: str
    #: its version after the write (None when the sink has no versions)
    version: str | None
    #: whether this write created the record
    created: bool
    #: the record as the sink holds it now, when it answered with it (its echo is then
    #: recorded as the sink's snapshot, so the next poll finds nothing new)
    record: Mapping[str, Any] | None = None
    #: anything else worth keeping in the item's result
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ref": self.ref, "version": self.version, "created": self.created}
        out.update(self.extra)
        return out


@dataclass(frozen=True, kw_only=True)
class Conflicting:
    """A field the sink changed since the item's base: what we would write, what it has."""

    field: str
    ours: Any
    theirs: Any
    #: the sink's version holding ``theirs``
    version: str | None = None


class Sink(Protocol):
    """One configured sink."""

    @property
    def id(self) -> str: ...

    async def lookup(self, item: OutboxItem) -> Delivered | None:
        """Find a write of ``item`` that may have reached the sink (an in-doubt item): by its
        ehrbridge identifier for a create, by reading the record back for an update. None when
        the sink does not hold it; raises SinkError when it cannot tell."""

    async def send(self, item: OutboxItem) -> Delivered:
        """Deliver the item once. Raises SinkError (transient or not, maybe sent), or
        :class:`~ehrbridge.errors.SinkConflict` naming the fields the sink changed since."""

    async def read_back(self, item: OutboxItem) -> bool:
        """Whether a synced item's write shows at the sink now (the reconcile loop); raises
        SinkError when it cannot tell."""

    async def aclose(self) -> None: ...
