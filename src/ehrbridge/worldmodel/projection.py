"""Projection: an entity's state as a pure, deterministic function of its events
(docs/design.md §5.3).

Per field:

1. events at confidence 0.0 are ignored, and so is an event superseded by a correction;
2. each *contributor* (a source record, or else the event itself) contributes its latest assertion;
3. among trusted assertions (>= 0.8) the latest ``effective_at`` wins (ties: higher confidence,
   then later recorded); with no trusted assertion, the highest confidence wins, then the latest;
4. the winner carries its provenance; lower-confidence assertions with another value are pending.

Two implementations share :func:`pick`: :func:`project` folds a list of events directly and is the
specification; :class:`Ledger` keeps what the rule needs between events, is stored beside each
entity and updated incrementally on every append. A property test holds them equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ehrbridge.confidence import DEFAULT_THRESHOLDS, Thresholds
from ehrbridge.worldmodel.events import ASSERTING, Event, EventType, Source


@dataclass(frozen=True, kw_only=True)
class Assertion:
    """One event's assertion of one field."""

    event_id: str
    seq: int
    origin: str  #: the entity id whose log holds the event (differs for merged members)
    contributor: str  #: the source record, or the event id for one-off sources
    value: Any  #: JSON value; ``None`` = removed at the source
    confidence: float  #: the event's own confidence (re-grades apply on top)
    source: Source
    effective_at: datetime
    recorded_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "e": self.event_id,
            "s": self.seq,
            "o": self.origin,
            "c": self.contributor,
            "v": self.value,
            "k": self.confidence,
            "src": self.source.as_dict(),
            "eff": self.effective_at.isoformat(),
            "rec": self.recorded_at.isoformat(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Assertion:
        return cls(
            event_id=raw["e"],
            seq=raw["s"],
            origin=raw["o"],
            contributor=raw["c"],
            value=raw["v"],
            confidence=raw["k"],
            source=Source.from_dict(raw["src"]),
            effective_at=datetime.fromisoformat(raw["eff"]),
            recorded_at=datetime.fromisoformat(raw["rec"]),
        )


@dataclass(frozen=True, kw_only=True)
class FieldValue:
    """A projected value with its provenance."""

    value: Any
    confidence: float
    source: Source
    effective_at: datetime
    event_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "confidence": self.confidence,
            "source": self.source.as_dict(),
            "effective_at": self.effective_at.isoformat(),
            "event_id": self.event_id,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FieldValue:
        return cls(
            value=raw["value"],
            confidence=raw["confidence"],
            source=Source.from_dict(raw["source"]),
            effective_at=datetime.fromisoformat(raw["effective_at"]),
            event_id=raw["event_id"],
        )


@dataclass(frozen=True, kw_only=True)
class OpenConflict:
    """A disagreement between trusted sources waiting for an operator (docs/design.md §5.4)."""

    conflict_id: str  #: the id of the ``conflict_recorded`` event
    field: str
    reason: str
    candidates: tuple[Mapping[str, Any], ...]  #: the disagreeing assertions (as recorded)
    recorded_at: datetime

    @classmethod
    def from_event(cls, event: Event) -> OpenConflict:
        """The conflict a ``conflict_recorded`` event opens."""
        return cls(
            conflict_id=event.id,
            field=str(event.data["field"]),
            reason=str(event.data.get("reason", "")),
            candidates=tuple(event.data.get("candidates", ())),
            recorded_at=event.recorded_at,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "conflict_id": self.conflict_id,
            "field": self.field,
            "reason": self.reason,
            "candidates": list(self.candidates),
            "recorded_at": self.recorded_at.isoformat(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> OpenConflict:
        return cls(
            conflict_id=raw["conflict_id"],
            field=raw["field"],
            reason=raw["reason"],
            candidates=tuple(raw["candidates"]),
            recorded_at=datetime.fromisoformat(raw["recorded_at"]),
        )


@dataclass(frozen=True, kw_only=True)
class EntityState:
    """An entity's projected state."""

    workspace: str
    entity_type: str
    entity_id: str
    version: int  #: the number of events in the entity's own log
    fields: Mapping[str, FieldValue]  #: present fields (removed ones are absent)
    pending: Mapping[str, tuple[FieldValue, ...]]  #: lower-confidence differing values
    conflicts: tuple[OpenConflict, ...] = ()
    merged_into: str | None = None  #: the survivor's id when merged into another entity
    members: tuple[str, ...] = ()  #: entity ids merged into this one
    updated_at: datetime | None = None

    @property
    def values(self) -> dict[str, Any]:
        """Just the projected values."""
        return {path: fv.value for path, fv in self.fields.items()}

    def as_json(self) -> dict[str, Any]:
        return {
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "version": self.version,
            "fields": {k: v.as_json() for k, v in self.fields.items()},
            "pending": {k: [p.as_json() for p in v] for k, v in self.pending.items()},
            "conflicts": [c.as_json() for c in self.conflicts],
            "merged_into": self.merged_into,
            "members": list(self.members),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_json(cls, workspace: str, raw: Mapping[str, Any]) -> EntityState:
        return cls(
            workspace=workspace,
            entity_type=raw["entity_type"],
            entity_id=raw["entity_id"],
            version=raw["version"],
            fields={k: FieldValue.from_json(v) for k, v in raw["fields"].items()},
            pending={
                k: tuple(FieldValue.from_json(p) for p in v) for k, v in raw["pending"].items()
            },
            conflicts=tuple(OpenConflict.from_json(c) for c in raw["conflicts"]),
            merged_into=raw["merged_into"],
            members=tuple(raw["members"]),
            updated_at=datetime.fromisoformat(raw["updated_at"]) if raw["updated_at"] else None,
        )


def contributor_of(event: Event) -> str:
    """Who an assertion counts for: the source record when there is one, else the event."""
    if event.source.ref is not None and event.event_type is EventType.RECORDED:
        return f"{event.source.kind}:{event.source.id}:{event.source.ref}"
    return f"event:{event.id}"


def assertions_of(event: Event, origin: str) -> list[tuple[str, Assertion]]:
    """The (field path, assertion) pairs ``event`` makes (none for non-asserting events)."""
    if event.event_type not in ASSERTING:
        return []
    contributor = contributor_of(event)
    return [
        (
            path,
            Assertion(
                event_id=event.id,
                seq=event.seq,
                origin=origin,
                contributor=contributor,
                value=event.data.get(path),
                confidence=event.confidence,
                source=event.source,
                effective_at=event.effective_at,
                recorded_at=event.recorded_at,
            ),
        )
        for path in event.fields
    ]


def _as_value(a: Assertion, confidence: float) -> FieldValue:
    return FieldValue(
        value=a.value,
        confidence=confidence,
        source=a.source,
        effective_at=a.effective_at,
        event_id=a.event_id,
    )


def current(
    assertions: Iterable[Assertion],
    grades: Mapping[str, float],
    excluded: Iterable[str] | frozenset[str],
) -> list[tuple[Assertion, float]]:
    """Rules 1-2: each contributor's latest live assertion, with its effective confidence."""
    excluded = frozenset(excluded)
    latest: dict[str, tuple[Assertion, float]] = {}
    for a in assertions:
        if a.event_id in excluded:
            continue
        confidence = grades.get(a.event_id, a.confidence)
        if confidence <= 0.0:
            continue
        held = latest.get(a.contributor)
        if held is None or a.seq > held[0].seq:
            latest[a.contributor] = (a, confidence)
    return sorted(latest.values(), key=lambda item: item[0].seq)


def pick(
    live: Sequence[tuple[Assertion, float]], thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> tuple[FieldValue | None, tuple[FieldValue, ...]]:
    """Rules 3-4: the winner among live assertions and the pending lower-confidence values."""
    if not live:
        return None, ()
    trusted = [item for item in live if item[1] >= thresholds.trusted]
    if trusted:
        a, c = max(
            trusted, key=lambda it: (it[0].effective_at, it[1], it[0].recorded_at, it[0].seq)
        )
    else:
        a, c = max(live, key=lambda it: (it[1], it[0].effective_at, it[0].recorded_at, it[0].seq))
    winner = _as_value(a, c)
    pending = tuple(
        _as_value(other, oc)
        for other, oc in live
        if oc < c and other.value is not None and other.value != a.value
    )
    return winner, pending


@dataclass(kw_only=True)
class Ledger:
    """What the projection rule needs of an entity's history, kept incrementally.

    Holds every field assertion (so a correction or rejection can let an earlier assertion of
    the same contributor re-emerge), the latest re-grade of each event, the events excluded by a
    correction, the open conflicts, and merge membership.
    """

    entity_type: str
    entity_id: str
    version: int = 0
    assertions: dict[str, list[Assertion]] = field(default_factory=dict)
    grades: dict[str, tuple[int, float, str]] = field(default_factory=dict)  #: target->seq,c,origin
    excluded: dict[str, str] = field(default_factory=dict)  #: event id -> origin
    conflicts: dict[str, OpenConflict] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    merged_into: str | None = None
    updated_at: datetime | None = None

    def grade_map(self) -> dict[str, float]:
        return {target: conf for target, (_, conf, _) in self.grades.items()}

    def apply(self, event: Event, *, own: bool = True) -> set[str]:
        """Fold one event in; returns the field paths whose projection may have changed.

        ``own`` is False for an event of a merged member, folded into the survivor.
        """
        origin = event.entity_id
        if own:
            self.version = event.version
            if self.updated_at is None or event.recorded_at > self.updated_at:
                self.updated_at = event.recorded_at
        kind = event.event_type
        touched: set[str] = set()
        for path, a in assertions_of(event, origin):
            bucket = self.assertions.setdefault(path, [])
            bucket.append(a)
            bucket.sort(key=lambda x: x.seq)
            touched.add(path)
        if kind is EventType.REGRADED:
            target = str(event.data["target"])
            held = self.grades.get(target)
            if held is None or event.seq > held[0]:
                self.grades[target] = (event.seq, event.confidence, origin)
            touched |= self._fields_of(target)
        if kind is EventType.CORRECTED and event.supersedes:
            self.excluded[event.supersedes] = origin
            touched |= self._fields_of(event.supersedes)
        if kind is EventType.CONFLICT_RECORDED and own:
            self.conflicts[event.id] = OpenConflict.from_event(event)
        if kind is EventType.CONFLICT_RESOLVED and own:
            self.conflicts.pop(str(event.data.get("conflict")), None)
        if kind in (EventType.MERGED, EventType.UNMERGED) and own:
            touched |= self._membership(event)
        return touched

    def _membership(self, event: Event) -> set[str]:
        merged = event.event_type is EventType.MERGED
        if "into" in event.data:  # the member's side of a merge
            self.merged_into = str(event.data["into"]) if merged else None
            return set()
        member = str(event.data["member"])
        if merged:
            if member not in self.members:
                self.members.append(member)
            return set()  # the member's assertions arrive through absorb()
        return self.drop_origin(member)

    def _fields_of(self, event_id: str) -> set[str]:
        return {
            path
            for path, items in self.assertions.items()
            if any(a.event_id == event_id for a in items)
        }

    def absorb(self, member: Ledger) -> set[str]:
        """Fold a merged member's ledger in (docs/design.md §5.5: merges are events and can be
        undone)."""
        touched: set[str] = set()
        for path, items in member.assertions.items():
            mine = self.assertions.setdefault(path, [])
            seen = {a.event_id for a in mine}
            mine.extend(a for a in items if a.event_id not in seen)
            mine.sort(key=lambda x: x.seq)
            touched.add(path)
        for target, held in member.grades.items():
            if target not in self.grades or held[0] > self.grades[target][0]:
                self.grades[target] = held
        self.excluded.update(member.excluded)
        return touched

    def drop_origin(self, member: str) -> set[str]:
        """Take out everything a member contributed (an unmerge)."""
        touched: set[str] = set()
        for path, items in list(self.assertions.items()):
            kept = [a for a in items if a.origin != member]
            if len(kept) != len(items):
                touched.add(path)
                if kept:
                    self.assertions[path] = kept
                else:
                    del self.assertions[path]
        self.grades = {t: g for t, g in self.grades.items() if g[2] != member}
        self.excluded = {t: o for t, o in self.excluded.items() if o != member}
        if member in self.members:
            self.members.remove(member)
        return touched

    def live(self, path: str) -> list[tuple[Assertion, float]]:
        """Each contributor's latest live assertion of ``path``."""
        return current(self.assertions.get(path, ()), self.grade_map(), self.excluded)

    def state(self, workspace: str, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> EntityState:
        """The projected state."""
        grades = self.grade_map()
        excluded = frozenset(self.excluded)
        fields: dict[str, FieldValue] = {}
        pending: dict[str, tuple[FieldValue, ...]] = {}
        for path in sorted(self.assertions):
            items = self.assertions[path]
            if len(items) == 1:
                # The common case (a field asserted once): what current() and pick() make of a
                # single assertion, without building their lists; nothing can be pending.
                a = items[0]
                confidence = grades.get(a.event_id, a.confidence)
                if a.event_id not in excluded and confidence > 0.0 and a.value is not None:
                    fields[path] = _as_value(a, confidence)
                continue
            winner, waiting = pick(current(items, grades, excluded), thresholds)
            if winner is not None and winner.value is not None:
                fields[path] = winner
            if waiting:
                pending[path] = waiting
        return EntityState(
            workspace=workspace,
            entity_type=self.entity_type,
            entity_id=self.entity_id,
            version=self.version,
            fields=fields,
            pending=pending,
            conflicts=tuple(sorted(self.conflicts.values(), key=lambda c: c.conflict_id)),
            merged_into=self.merged_into,
            members=tuple(self.members),
            updated_at=self.updated_at,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "t": self.entity_type,
            "i": self.entity_id,
            "n": self.version,
            "a": {p: [a.as_json() for a in items] for p, items in self.assertions.items()},
            "g": {t: list(g) for t, g in self.grades.items()},
            "x": self.excluded,
            "c": [c.as_json() for c in self.conflicts.values()],
            "m": self.members,
            "into": self.merged_into,
            "u": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Ledger:
        return cls(
            entity_type=raw["t"],
            entity_id=raw["i"],
            version=raw["n"],
            assertions={
                p: [Assertion.from_json(a) for a in items] for p, items in raw["a"].items()
            },
            grades={t: (g[0], g[1], g[2]) for t, g in raw["g"].items()},
            excluded=dict(raw["x"]),
            conflicts={c["conflict_id"]: OpenConflict.from_json(c) for c in raw["c"]},
            members=list(raw["m"]),
            merged_into=raw["into"],
            updated_at=datetime.fromisoformat(raw["u"]) if raw["u"] else None,
        )


def project(
    events: Sequence[Event], workspace: str, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> EntityState | None:
    """The specification: an entity's state straight from its own events (no merges).

    Independent of :class:`Ledger` except for :func:`current` and :func:`pick`.
    """
    if not events:
        return None
    ordered = sorted(events, key=lambda e: e.seq)
    first = ordered[0]
    grades: dict[str, float] = {}
    excluded: set[str] = set()
    by_field: dict[str, list[Assertion]] = {}
    conflicts: dict[str, OpenConflict] = {}
    for e in ordered:
        if e.event_type is EventType.REGRADED:
            grades[str(e.data["target"])] = e.confidence
        elif e.event_type is EventType.CORRECTED and e.supersedes:
            excluded.add(e.supersedes)
        elif e.event_type is EventType.CONFLICT_RECORDED:
            conflicts[e.id] = OpenConflict.from_event(e)
        elif e.event_type is EventType.CONFLICT_RESOLVED:
            conflicts.pop(str(e.data.get("conflict")), None)
        for path, a in assertions_of(e, e.entity_id):
            by_field.setdefault(path, []).append(a)
    fields: dict[str, FieldValue] = {}
    pending: dict[str, tuple[FieldValue, ...]] = {}
    for path in sorted(by_field):
        winner, waiting = pick(current(by_field[path], grades, excluded), thresholds)
        if winner is not None and winner.value is not None:
            fields[path] = winner
        if waiting:
            pending[path] = waiting
    return EntityState(
        workspace=workspace,
        entity_type=first.entity_type,
        entity_id=first.entity_id,
        version=max(e.version for e in ordered),
        fields=fields,
        pending=pending,
        conflicts=tuple(sorted(conflicts.values(), key=lambda c: c.conflict_id)),
        updated_at=max(e.recorded_at for e in ordered),
    )


def replay(
    entity_type: str,
    entity_id: str,
    events: Iterable[Event],
    members: Mapping[str, Ledger] | None = None,
) -> Ledger:
    """Fold an entity's own events into a fresh ledger (a rebuild, or a state as of a time).

    ``members`` holds the replayed ledgers of entities merged into this one; a merge absorbs the
    member's ledger, an unmerge takes its contributions out again.
    """
    ledger = Ledger(entity_type=entity_type, entity_id=entity_id)
    for event in sorted(events, key=lambda e: e.seq):
        ledger.apply(event)
        if event.event_type is EventType.MERGED and "member" in event.data and members:
            member = members.get(str(event.data["member"]))
            if member is not None:
                ledger.absorb(member)
    return ledger
