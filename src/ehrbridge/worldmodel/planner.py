"""Turning a batch of submissions into rows, the same way on every backend.

An adapter opens a transaction, loads (and locks) what the batch touches into :class:`Loaded`,
calls :func:`plan`, writes the :class:`Plan`, and commits. All the rules (dedup by content hash,
asserting only changed fields, idempotency keys, optimistic concurrency, merges, conflict
detection) live here, once, as pure code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ehrbridge.confidence import DEFAULT_THRESHOLDS, Thresholds
from ehrbridge.errors import (
    ConcurrencyError,
    IdempotencyConflict,
    InvalidEvent,
    InvalidInput,
    RecordClaimed,
    WriteRace,
)
from ehrbridge.worldmodel.canonical import JsonProblem, canonical_json, is_volatile
from ehrbridge.worldmodel.canonical import digest as canonical_digest
from ehrbridge.worldmodel.events import (
    Event,
    EventType,
    NewEvent,
    Observation,
    RecordKey,
    Source,
    check_keys,
    event_hash,
    json_problem,
    new_id,
    validate_event,
    validate_observation,
)
from ehrbridge.worldmodel.matching import lookup_keys
from ehrbridge.worldmodel.projection import EntityState, Ledger, current

EntityKey = tuple[str, str]  #: (entity_type, entity_id)
Submission = NewEvent | Observation


@dataclass(frozen=True, kw_only=True)
class RecordRow:
    """What the store remembers of one source record: its entity and last snapshot."""

    key: RecordKey
    entity_type: str
    entity_id: str
    content_hash: str
    snapshot: Mapping[str, Any]  #: the last snapshot, flat, volatile metadata left out
    last_event_id: str
    new: bool = False  #: first seen in this batch: inserted, so a concurrent first sighting fails


@dataclass(frozen=True, kw_only=True)
class AppendResult:
    """What became of one submission."""

    status: Literal["created", "updated", "unchanged", "duplicate", "recorded"]
    entity_type: str
    entity_id: str
    events: tuple[Event, ...] = ()  #: the events written for it (conflicts included)


@dataclass(kw_only=True)
class Loaded:
    """What the batch touches, read inside the transaction."""

    entities: dict[EntityKey, Ledger] = field(default_factory=dict)
    records: dict[RecordKey, RecordRow] = field(default_factory=dict)
    idempotent: dict[str, Event] = field(default_factory=dict)
    #: observations made canonical while loading, by ``id()`` of the observation (the batch
    #: outlives the plan): the snapshot, its canonical JSON and hash
    snapshots: dict[int, tuple[dict[str, Any], bytes, str]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EntityWrite:
    """One entity's projection after the batch."""

    ledger: Ledger
    state: EntityState
    keys: frozenset[str]  #: lookup keys (phone, identifiers, ...) of the state
    new: bool  #: no row existed before


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Everything one batch writes."""

    events: list[Event]
    entities: list[EntityWrite]
    records: list[RecordRow]
    results: list[AppendResult]


#: Reference fields indexed as ``ref:<Type/id>`` so a patient's appointments, encounters,
#: medications, results and coverage are found without a scan.
REFERENCE_KEYS = ("patient", "beneficiary")


def index_keys(entity_type: str, values: Mapping[str, Any]) -> frozenset[str]:
    """Every lookup key the store keeps for an entity's state."""
    refs = {f"ref:{values[name]}" for name in REFERENCE_KEYS if isinstance(values.get(name), str)}
    return lookup_keys(entity_type, values) | refs


#: Appointment statuses that no longer hold the slot they name.
SLOT_RELEASED = frozenset({"cancelled", "noshow", "entered-in-error"})


def claim_keys(entity_type: str, values: Mapping[str, Any]) -> frozenset[str]:
    """What an entity's projected ``values`` hold exclusively in its workspace: an Appointment
    that names a ``slot`` (``Slot/<id>``) and is not released claims that slot. The store keeps
    claims under a unique key, written in the write's own transaction, so no two entities hold
    one claim (the second claimant's write fails with :class:`~ehrbridge.errors.SlotUnavailable`).

    >>> sorted(claim_keys("Appointment", {"slot": "Slot/s1", "status": "booked"}))
    ['Slot/s1']
    >>> claim_keys("Appointment", {"slot": "Slot/s1", "status": "cancelled"})
    frozenset()
    >>> claim_keys("Encounter", {"slot": "Slot/s1"}), claim_keys("Appointment", {})
    (frozenset(), frozenset())
    """
    slot = values.get("slot")
    if entity_type != "Appointment" or not isinstance(slot, str) or not slot.startswith("Slot/"):
        return frozenset()
    return frozenset() if values.get("status") in SLOT_RELEASED else frozenset({slot})


def claim_rows(workspace: str, writes: Sequence[EntityWrite]) -> list[tuple[str, str, str, str]]:
    """The ``entity_claims`` rows of ``writes``: (workspace, claim, entity_type, entity_id)."""
    return [
        (workspace, claim, w.state.entity_type, w.state.entity_id)
        for w in writes
        if w.state.merged_into is None
        for claim in sorted(claim_keys(w.state.entity_type, w.state.values))
    ]


def needed(items: Sequence[Submission]) -> tuple[set[EntityKey], set[RecordKey], set[str]]:
    """The entity keys, record keys and idempotency keys a batch needs loaded.

    The entities of observations are not among them: which are needed depends on the records
    loaded, see :func:`observed`."""
    entities: set[EntityKey] = set()
    records: set[RecordKey] = set()
    keys: set[str] = set()
    for item in items:
        check_keys(item)  # before any lookup, so a bad key is named, not a database error
        if isinstance(item, Observation):
            records.add(item.record)
            continue
        entities.add((item.entity_type, item.entity_id))
        if item.event_type in (EventType.MERGED, EventType.UNMERGED) and "member" in item.data:
            entities.add((item.entity_type, str(item.data["member"])))
        if item.idempotency_key:
            keys.add(item.idempotency_key)
    return entities, records, keys


def canonical_snapshot(obs: Observation) -> tuple[dict[str, Any], bytes, str]:
    """An observation's snapshot (volatile metadata left out), its canonical JSON and hash."""
    snapshot = {k: v for k, v in obs.data.items() if not is_volatile(k)}
    try:
        canonical = canonical_json(snapshot)
    except JsonProblem as exc:
        raise json_problem("data", exc) from None
    except (ValueError, TypeError) as exc:
        raise InvalidEvent("data", f"not JSON: {exc}") from None
    return snapshot, canonical, canonical_digest(canonical)


def observed(items: Sequence[Submission], loaded: Loaded) -> set[EntityKey]:
    """The entities the batch's observations may write to: call after loading the records.

    A known record observed unchanged writes nothing, so its entity is not needed (a re-import
    of unchanged data loads no entity); a known record changed needs its entity, a new one the
    entity it is linked to. The snapshots made canonical here are kept in ``loaded``."""
    seen: dict[RecordKey, int] = {}
    for item in items:
        if isinstance(item, Observation):
            seen[item.record] = seen.get(item.record, 0) + 1
    out: set[EntityKey] = set()
    for item in items:
        if not isinstance(item, Observation):
            continue
        held = loaded.records.get(item.record)
        if held is None:
            if item.entity_id:
                out.add((item.entity_type, item.entity_id))
            continue
        if seen[item.record] == 1 and held.entity_type == item.entity_type:
            try:
                prepared = canonical_snapshot(item)
            except InvalidEvent:
                prepared = None  # the planner names the problem, in batch order
            if prepared is not None:
                loaded.snapshots[id(item)] = prepared
                if prepared[2] == held.content_hash:
                    continue
        out.add((held.entity_type, held.entity_id))
    return out


def related(loaded: Loaded) -> set[EntityKey]:
    """The survivors that loaded entities are merged into and that are not loaded yet."""
    return {
        (key[0], ledger.merged_into)
        for key, ledger in loaded.entities.items()
        if ledger.merged_into and (key[0], ledger.merged_into) not in loaded.entities
    }


def race_error(items: Sequence[Submission], constraint: str) -> ConcurrencyError:
    """The error for a batch that lost a race caught by a unique key.

    With a version expectation the loser learns which entity moved on; otherwise the batch may
    simply be retried (it will then see what the winner wrote).
    """
    for item in items:
        if isinstance(item, NewEvent) and item.expected_version is not None:
            return ConcurrencyError(
                f"{item.entity_type}/{item.entity_id}", item.expected_version, None
            )
    return WriteRace(constraint)


def upper_bound(items: Sequence[Submission]) -> int:
    """The most events a batch can write (each field may add a conflict event)."""
    total = 0
    for item in items:
        total += 2 + len(item.data)
    return total


@dataclass(kw_only=True)
class Planner:
    """Plans one batch. Use once."""

    workspace: str
    loaded: Loaded
    now: datetime
    next_seq: Callable[[], int]
    tx: int = 0  #: the writing transaction's id (PostgreSQL), 0 where writes are serialised
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    conflict_window: timedelta = timedelta(minutes=15)
    _events: list[Event] = field(default_factory=list)
    _touched: dict[EntityKey, None] = field(default_factory=dict)
    _new: set[EntityKey] = field(default_factory=set)
    _records: dict[RecordKey, RecordRow] = field(default_factory=dict)

    def plan(self, items: Sequence[Submission]) -> Plan:
        results = [self._one(item) for item in items]
        writes = []
        for key in self._touched:
            ledger = self.loaded.entities[key]
            state = ledger.state(self.workspace, self.thresholds)
            writes.append(
                EntityWrite(
                    ledger=ledger,
                    state=state,
                    keys=index_keys(key[0], state.values),
                    new=key in self._new,
                )
            )
        return Plan(
            events=self._events,
            entities=writes,
            records=list(self._records.values()),
            results=results,
        )

    def _ledger(self, entity_type: str, entity_id: str) -> Ledger:
        key = (entity_type, entity_id)
        ledger = self.loaded.entities.get(key)
        if ledger is None:
            ledger = Ledger(entity_type=entity_type, entity_id=entity_id)
            self.loaded.entities[key] = ledger
            self._new.add(key)
        return ledger

    def _one(self, item: Submission) -> AppendResult:
        if isinstance(item, Observation):
            return self._observe(item)
        validate_event(item, self.workspace)
        if item.idempotency_key:
            held = self.loaded.idempotent.get(item.idempotency_key)
            if held is not None:
                if held.content_hash != event_hash(item):
                    raise IdempotencyConflict(item.idempotency_key)
                return AppendResult(
                    status="duplicate",
                    entity_type=held.entity_type,
                    entity_id=held.entity_id,
                    events=(held,),
                )
        ledger = self._ledger(item.entity_type, item.entity_id)
        if item.expected_version is not None and item.expected_version != ledger.version:
            raise ConcurrencyError(
                f"{item.entity_type}/{item.entity_id}", item.expected_version, ledger.version
            )
        events = self._record(item)
        if item.idempotency_key:
            self.loaded.idempotent[item.idempotency_key] = events[0]
        return AppendResult(
            status="recorded",
            entity_type=item.entity_type,
            entity_id=item.entity_id,
            events=tuple(events),
        )

    def _observe(self, obs: Observation) -> AppendResult:
        prepared = self.loaded.snapshots.get(id(obs))
        snapshot, canonical, digest = prepared or canonical_snapshot(obs)
        validate_observation(obs, self.workspace, json_checked=True)
        held = self._records.get(obs.record) or self.loaded.records.get(obs.record)
        if held is not None and held.entity_type != obs.entity_type:
            raise InvalidInput(
                f"{obs.record.data_source} {obs.record.ref} is a {held.entity_type}, "
                f"not a {obs.entity_type}"
            )
        if held is not None and obs.entity_id is not None and obs.entity_id != held.entity_id:
            # The caller chose the entity (and translated references to it) believing the
            # record new; another writer linked it first. Keeping either silently would leave
            # references to an entity that does not exist (docs/design.md, "Concurrent writers").
            raise RecordClaimed(f"{obs.record.data_source} {obs.record.ref}")
        if held is not None and held.content_hash == digest:
            return AppendResult(
                status="unchanged", entity_type=held.entity_type, entity_id=held.entity_id
            )
        # The event's data is the whole snapshot for a new record without removals: reuse its
        # canonical form for the event's hash.
        reuse: bytes | None = None
        if held is None:
            entity_id = obs.entity_id or new_id()
            changed = {k: v for k, v in snapshot.items() if v is not None}
            reuse = canonical if len(changed) == len(snapshot) else None
        else:
            entity_id = held.entity_id
            changed = {k: v for k, v in snapshot.items() if held.snapshot.get(k) != v}
            changed |= {
                k: None for k, v in held.snapshot.items() if k not in snapshot and v is not None
            }
        events: list[Event] = []
        if changed:
            events = self._record(
                NewEvent(
                    workspace=obs.workspace,
                    entity_type=obs.entity_type,
                    entity_id=entity_id,
                    data=changed,
                    source=Source(kind=obs.kind, id=obs.record.data_source, ref=obs.record.ref),
                    confidence=obs.confidence,
                    effective_at=obs.effective_at,
                    supersedes=held.last_event_id if held else None,
                    correlation_id=obs.correlation_id,
                ),
                canonical_data=reuse,
            )
        self._records[obs.record] = RecordRow(
            key=obs.record,
            entity_type=obs.entity_type,
            entity_id=entity_id,
            content_hash=digest,
            snapshot=snapshot,
            last_event_id=events[0].id if events else held.last_event_id if held else "",
            new=held is None or held.new,
        )
        status: Literal["created", "updated", "unchanged"] = (
            "created" if held is None else "updated" if events else "unchanged"
        )
        return AppendResult(
            status=status, entity_type=obs.entity_type, entity_id=entity_id, events=tuple(events)
        )

    def _record(self, item: NewEvent, *, canonical_data: bytes | None = None) -> list[Event]:
        """Write one event (and any conflict it reveals); returns them."""
        ledger = self._ledger(item.entity_type, item.entity_id)
        event = self._event(item, ledger.version + 1, canonical_data)
        written = [event]
        self._apply(event)
        if item.event_type in (EventType.RECORDED, EventType.REGRADED):
            for conflict in self._conflicts(ledger, event):
                written.append(conflict)
                self._apply(conflict)
        return written

    def _event(self, item: NewEvent, version: int, canonical_data: bytes | None = None) -> Event:
        event = Event(
            id=new_id(),
            seq=self.next_seq(),
            tx=self.tx,
            version=version,
            workspace=item.workspace,
            entity_type=item.entity_type,
            entity_id=item.entity_id,
            event_type=item.event_type,
            data=dict(item.data),
            fields=item.asserted,
            source=item.source,
            confidence=float(item.confidence),
            effective_at=item.effective_at,
            recorded_at=self.now,
            content_hash=event_hash(item, canonical_data),
            supersedes=item.supersedes,
            correlation_id=item.correlation_id,
            evidence=dict(item.evidence) if item.evidence is not None else None,
            idempotency_key=item.idempotency_key,
        )
        self._events.append(event)
        return event

    def _apply(self, event: Event) -> None:
        key = (event.entity_type, event.entity_id)
        ledger = self._ledger(*key)
        self._touched[key] = None
        if event.event_type is EventType.MERGED and "member" in event.data:
            member = self._ledger(event.entity_type, str(event.data["member"]))
            if member.merged_into or member.members or ledger.merged_into:
                raise InvalidInput("merge one entity at a time: unmerge chained entities first")
            ledger.apply(event)
            ledger.absorb(member)
            self._twin(event, member)
            return
        if event.event_type is EventType.UNMERGED and "member" in event.data:
            member = self._ledger(event.entity_type, str(event.data["member"]))
            if member.merged_into != event.entity_id:
                raise InvalidInput(f"{event.data['member']} is not merged into {event.entity_id}")
            ledger.apply(event)
            self._twin(event, member)
            return
        ledger.apply(event)
        if ledger.merged_into:
            survivor_key = (event.entity_type, ledger.merged_into)
            self.loaded.entities[survivor_key].apply(event, own=False)
            self._touched[survivor_key] = None

    def _twin(self, event: Event, member: Ledger) -> None:
        """The member's own record of a merge or unmerge."""
        twin = self._event(
            NewEvent(
                workspace=event.workspace,
                entity_type=event.entity_type,
                entity_id=member.entity_id,
                event_type=event.event_type,
                data={"into": event.entity_id},
                source=event.source,
                confidence=event.confidence,
                effective_at=event.effective_at,
                correlation_id=event.correlation_id,
            ),
            member.version + 1,
        )
        member.apply(twin)
        self._touched[(event.entity_type, member.entity_id)] = None

    def _conflicts(self, ledger: Ledger, event: Event) -> Iterable[Event]:
        """Conflict events for trusted sources that disagree within the window
        (docs/design.md §5.4)."""
        fields = list(event.fields)
        if event.event_type is EventType.REGRADED:
            target = str(event.data["target"])
            fields = [
                p
                for p, items in ledger.assertions.items()
                if any(a.event_id == target for a in items)
            ]
        subject = event.id if event.event_type is EventType.RECORDED else str(event.data["target"])
        trusted = self.thresholds.trusted
        grades = ledger.grade_map()
        for path in fields:
            asserted = ledger.assertions.get(path, ())
            if len(asserted) < 2:
                continue  # one assertion of the field (this one) has no rival
            live = current(asserted, grades, ledger.excluded)
            mine = [(a, c) for a, c in live if a.event_id == subject and c >= trusted]
            if not mine:
                continue
            a, _ = mine[0]
            rivals = [
                (b, c)
                for b, c in live
                if c >= trusted
                and (b.source.kind, b.source.id) != (a.source.kind, a.source.id)
                and b.value != a.value
                and abs(b.effective_at - a.effective_at) <= self.conflict_window
            ]
            if not rivals:
                continue
            if any(
                c.field == path and {x.get("event_id") for x in c.candidates} >= {a.event_id}
                for c in ledger.conflicts.values()
            ):
                continue
            yield self._event(
                NewEvent(
                    workspace=event.workspace,
                    entity_type=event.entity_type,
                    entity_id=event.entity_id,
                    event_type=EventType.CONFLICT_RECORDED,
                    data={
                        "field": path,
                        "reason": "trusted sources disagree within the conflict window",
                        "candidates": [
                            {
                                "event_id": x.event_id,
                                "value": x.value,
                                "source": x.source.as_dict(),
                                "confidence": c,
                                "effective_at": x.effective_at.isoformat(),
                            }
                            for x, c in [mine[0], *rivals]
                        ],
                    },
                    source=Source(kind="system", id="conflict-detector"),
                    confidence=1.0,
                    effective_at=event.effective_at,
                    correlation_id=event.correlation_id,
                ),
                ledger.version + 1,
            )
