"""The event record (docs/design.md §5.1) and what callers submit to be recorded.

An :class:`Event` is immutable and never deleted. Callers submit either a :class:`NewEvent` (an
assertion, a re-grade, a correction, an operator decision) or an :class:`Observation` (a source's
full snapshot of one record, which the store turns into an event asserting only what changed, or
into nothing when the content is unchanged).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import orjson

from ehrbridge.errors import InvalidEvent
from ehrbridge.worldmodel.canonical import (
    JsonProblem,
    canonical_json,
    canonical_value,
    digest,
    is_volatile,
    path_text,
    text_problem,
)
from ehrbridge.worldmodel.entities import validate_fields

SourceKind = Literal["ehr", "voice", "operator", "review", "browser", "system"]
SOURCE_KINDS: frozenset[str] = frozenset(
    {"ehr", "voice", "operator", "review", "browser", "system"}
)

_WORKSPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ENTITY_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
_ENTITY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


class EventType(StrEnum):
    """What an event does to its entity."""

    RECORDED = "recorded"  #: a source asserts field values (``data``; ``None`` = removed)
    REGRADED = "regraded"  #: re-grades ``data.target`` to this event's confidence (0.0 = reject)
    CORRECTED = "corrected"  #: an operator's correction: asserts values, excludes ``supersedes``
    CONFLICT_RECORDED = "conflict_recorded"  #: two trusted sources disagree (``data``: the field)
    CONFLICT_RESOLVED = "conflict_resolved"  #: an operator resolves ``data.conflict`` with a value
    MATCH_CANDIDATE = "match_candidate"  #: an uncertain match to ``data.candidate``, for review
    MERGED = "merged"  #: ``data.member`` is merged into this entity (its twin, ``data.into``)
    UNMERGED = "unmerged"  #: ``data.member`` is split off again (its twin, ``data.into``)


#: Event types that assert field values.
ASSERTING = frozenset({EventType.RECORDED, EventType.CORRECTED, EventType.CONFLICT_RESOLVED})


def new_id() -> str:
    """A new event or entity id: 26 characters, sortable by creation time (ms), random after.

    >>> a, b = new_id(), new_id()
    >>> len(a), a < b or a[:12] == b[:12]
    (26, True)
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(7).hex()}"


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where an event came from."""

    kind: SourceKind  #: ehr, voice, operator, review, browser or system
    id: str  #: the data source id, agent, operator or judge
    ref: str | None = None  #: external reference, e.g. the record ``Patient/123`` at that source

    def as_dict(self) -> dict[str, str]:
        out = {"kind": self.kind, "id": self.id}
        if self.ref is not None:
            out["ref"] = self.ref
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Source:
        return cls(kind=raw["kind"], id=raw["id"], ref=raw.get("ref"))


@dataclass(frozen=True, kw_only=True)
class RecordKey:
    """One record at one data source: (data source, resource type, external id)."""

    data_source: str  #: the configured data source id
    resource_type: str  #: e.g. ``Patient``
    external_id: str  #: the id at that source

    @property
    def ref(self) -> str:
        return f"{self.resource_type}/{self.external_id}"


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event a caller wants recorded. The store assigns id, seq, version and times."""

    workspace: str  #: the tenant
    entity_type: str  #: e.g. ``Patient``; open: any CamelCase name
    entity_id: str  #: the entity within its type
    event_type: EventType = EventType.RECORDED
    data: Mapping[str, Any] = field(default_factory=dict)  #: field path -> JSON value
    fields: tuple[str, ...] | None = None  #: the fields asserted; default: the keys of ``data``
    source: Source  #: who says so
    confidence: float  #: 0.0-1.0 (docs/design.md §5.2)
    effective_at: datetime  #: when it became true at the source
    supersedes: str | None = None  #: the event this one supersedes
    correlation_id: str | None = None  #: e.g. the call
    evidence: Mapping[str, Any] | None = None  #: e.g. the transcript span
    idempotency_key: str | None = None  #: the same key twice records one event
    expected_version: int | None = None  #: optimistic concurrency: the entity's version now

    @property
    def asserted(self) -> tuple[str, ...]:
        """The field paths this event asserts (none for non-asserting types)."""
        if self.event_type not in ASSERTING:
            return ()
        return self.fields if self.fields is not None else tuple(self.data)


@dataclass(frozen=True, kw_only=True)
class Observation:
    """A source's full snapshot of one record, to be deduplicated and diffed
    (docs/design.md §5.5)."""

    workspace: str
    record: RecordKey  #: which record at which source
    entity_type: str
    data: Mapping[str, Any]  #: the whole record in flat form; volatile ``meta.*`` ignored
    kind: SourceKind = "ehr"
    confidence: float = 1.0
    effective_at: datetime  #: e.g. FHIR ``meta.lastUpdated``
    entity_id: str | None = None  #: for a record not seen before: link to this entity
    correlation_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Event:
    """A recorded, immutable event."""

    id: str  #: sortable id
    seq: int  #: store order
    tx: int  #: transaction order key (PostgreSQL xid; 0 on SQLite); the log reads by (tx, seq)
    version: int  #: the entity's version after this event (1 for its first)
    workspace: str
    entity_type: str
    entity_id: str
    event_type: EventType
    data: Mapping[str, Any]
    fields: tuple[str, ...]
    source: Source
    confidence: float
    effective_at: datetime
    recorded_at: datetime
    content_hash: str
    supersedes: str | None = None
    correlation_id: str | None = None
    evidence: Mapping[str, Any] | None = None
    idempotency_key: str | None = None

    @property
    def entity(self) -> str:
        return f"{self.entity_type}/{self.entity_id}"


def event_hash(event: NewEvent, canonical_data: bytes | None = None) -> str:
    """The content hash of what an event says (not when it was recorded).

    ``canonical_data`` is ``canonical_json(event.data)`` when the caller has it already, so the
    data is not made canonical twice; the hash is the same either way. The data is made
    canonical on its own so that the head's one level around it does not count against
    :data:`~ehrbridge.worldmodel.canonical.MAX_DEPTH`."""
    if canonical_data is None:
        canonical_data = canonical_json(dict(event.data))
    data = orjson.Fragment(canonical_data)
    head = {
        "entity": f"{event.entity_type}/{event.entity_id}",
        "type": event.event_type.value,
        "data": data,
        "fields": list(event.asserted),
        "source": event.source.as_dict(),
        "confidence": event.confidence,
        "effective_at": event.effective_at.isoformat(),
        "supersedes": event.supersedes,
    }
    # The data is canonical already; only the small head needs making canonical.
    return digest(orjson.dumps(canonical_value(head), option=orjson.OPT_SORT_KEYS))


def _check_common(workspace: str, expected_workspace: str, entity_type: str) -> None:
    if not isinstance(workspace, str) or not _WORKSPACE.fullmatch(workspace):
        raise InvalidEvent("workspace", "must be 1-63 lowercase letters, digits, '-' or '_'")
    if workspace != expected_workspace:
        raise InvalidEvent("workspace", f"{workspace!r} is not this store's {expected_workspace!r}")
    if not isinstance(entity_type, str) or not _ENTITY_TYPE.fullmatch(entity_type):
        raise InvalidEvent("entity_type", "missing, or not a CamelCase name like 'Patient'")


def _check_confidence(confidence: object) -> None:
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not math.isfinite(confidence)
        or not 0.0 <= confidence <= 1.0
    ):
        raise InvalidEvent("confidence", f"{confidence!r} is not a number between 0 and 1")


def _check_time(name: str, value: object) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidEvent(name, "must be a timezone-aware datetime")


def _check_json(name: str, value: object) -> None:
    if not isinstance(value, Mapping):
        raise InvalidEvent(name, "must be a JSON object")
    try:
        canonical_json(value)
    except JsonProblem as exc:
        raise json_problem(name, exc) from None
    except (ValueError, TypeError) as exc:
        raise InvalidEvent(name, f"not JSON: {exc}") from None


def json_problem(name: str, exc: JsonProblem) -> InvalidEvent:
    """The error for a document ``name`` (``data``, ``evidence``) that no store can hold:
    ``invalid event: data.name.family: a NUL character (U+0000) is not allowed``."""
    where = path_text(exc.where)
    if where and not where.startswith("["):
        where = f".{where}"
    return InvalidEvent(f"{name}{where}", exc.problem)


def check_keys(item: NewEvent | Observation) -> None:
    """Raise :class:`InvalidEvent` for a text the store looks rows up by (ids, record keys,
    idempotency keys) that no store can hold: called before those lookups, so the error names
    the field; :func:`validate_event` and :func:`validate_observation` check the rest."""
    if isinstance(item, Observation):
        for name in ("data_source", "resource_type", "external_id"):
            _check_text(f"record.{name}", getattr(item.record, name, None))
        _check_text("entity_id", item.entity_id)
        return
    _check_text("entity_type", item.entity_type)
    _check_text("entity_id", item.entity_id)
    _check_text("idempotency_key", item.idempotency_key)
    if isinstance(item.data, Mapping) and isinstance(item.data.get("member"), str):
        _check_text("data.member", item.data["member"])


def _check_text(name: str, value: object) -> None:
    """A string column (ids, sources, keys): a string every store can hold, or absent."""
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidEvent(name, "must be a string")
    if (problem := text_problem(value)) is not None:
        raise InvalidEvent(name, problem)


def _check_data(
    entity_type: str, data: object, fields: tuple[str, ...], *, json_checked: bool = False
) -> None:
    """Entity field values: JSON (unless the caller has made them canonical already), valid
    paths, and the documented kinds of known fields."""
    if not json_checked:
        _check_json("data", data)
    assert isinstance(data, Mapping)
    for path in [*data, *fields]:
        if not _FIELD.fullmatch(path):
            raise InvalidEvent(f"data.{path}", "not a field path like 'name.family'")
    try:
        validate_fields(entity_type, data)
    except ValueError as exc:
        path = str(exc).split(":", 1)[0].split(".", 1)[-1]
        raise InvalidEvent(f"data.{path}", str(exc).split(":", 1)[-1].strip()) from None


def validate_event(event: NewEvent, workspace: str) -> None:
    """Raise :class:`InvalidEvent` naming the first wrong field of ``event``."""
    _check_common(event.workspace, workspace, event.entity_type)
    if not isinstance(event.entity_id, str) or not _ENTITY_ID.fullmatch(event.entity_id):
        raise InvalidEvent("entity_id", "missing, or not 1-128 letters, digits, '.', '_', ':', '-'")
    if not isinstance(event.event_type, EventType):
        raise InvalidEvent("event_type", f"{event.event_type!r} is not an event type")
    _check_confidence(event.confidence)
    _check_time("effective_at", event.effective_at)
    if not isinstance(event.source, Source) or event.source.kind not in SOURCE_KINDS:
        raise InvalidEvent("source", "must be a Source with a known kind")
    if not event.source.id:
        raise InvalidEvent("source.id", "must not be empty")
    for name, text in (
        ("source.id", event.source.id),
        ("source.ref", event.source.ref),
        ("supersedes", event.supersedes),
        ("correlation_id", event.correlation_id),
        ("idempotency_key", event.idempotency_key),
    ):
        _check_text(name, text)
    asserted = event.asserted
    # Only assertions carry entity fields; other events' data is their own small document.
    if asserted:
        _check_data(event.entity_type, event.data, asserted)
    else:
        _check_json("data", event.data)
    if missing := [f for f in asserted if f not in event.data]:
        raise InvalidEvent("fields", f"asserted fields without a value in data: {missing}")
    if event.event_type in ASSERTING and not asserted:
        raise InvalidEvent("fields", "an assertion must assert at least one field")
    if volatile := [f for f in asserted if is_volatile(f)]:
        raise InvalidEvent("fields", f"volatile metadata cannot be asserted: {volatile}")
    if event.event_type is EventType.REGRADED and not isinstance(event.data.get("target"), str):
        raise InvalidEvent("data.target", "a re-grade names the event it re-grades")
    if event.event_type is EventType.CORRECTED and not event.supersedes:
        raise InvalidEvent("supersedes", "a correction names the event it corrects")
    if event.event_type in (EventType.MERGED, EventType.UNMERGED) and not isinstance(
        event.data.get("member", event.data.get("into")), str
    ):
        raise InvalidEvent("data.member", "a merge names the member entity id")
    if event.evidence is not None:
        _check_json("evidence", event.evidence)
    if event.expected_version is not None and (
        isinstance(event.expected_version, bool)
        or not isinstance(event.expected_version, int)
        or event.expected_version < 0
    ):
        raise InvalidEvent("expected_version", "must be a non-negative integer")


def validate_observation(obs: Observation, workspace: str, *, json_checked: bool = False) -> None:
    """Raise :class:`InvalidEvent` naming the first wrong field of ``obs``; ``json_checked``
    when the caller has made ``obs.data`` canonical already (which checks it is JSON)."""
    _check_common(obs.workspace, workspace, obs.entity_type)
    for name in ("data_source", "resource_type", "external_id"):
        value = getattr(obs.record, name, None)
        if not isinstance(value, str) or not value or len(value) > 256:
            raise InvalidEvent(f"record.{name}", "must be a non-empty string of at most 256")
        _check_text(f"record.{name}", value)
    if obs.kind not in SOURCE_KINDS:
        raise InvalidEvent("kind", f"{obs.kind!r} is not a source kind")
    _check_confidence(obs.confidence)
    _check_time("effective_at", obs.effective_at)
    if obs.entity_id is not None and not _ENTITY_ID.fullmatch(obs.entity_id):
        raise InvalidEvent("entity_id", "not 1-128 letters, digits, '.', '_', ':', '-'")
    _check_text("correlation_id", obs.correlation_id)
    _check_data(obs.entity_type, obs.data, (), json_checked=json_checked)
