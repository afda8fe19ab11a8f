"""The world model service: what the rest of ehrbridge calls (docs/design.md §5).

It speaks in domain operations (observe a record, write a voice fact, verify, approve, reject,
correct, resolve a conflict, merge, identify a caller) and turns each into events on a
:class:`~ehrbridge.worldmodel.store.Store`, scoped to one workspace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ehrbridge.audit import WriteAudit
from ehrbridge.confidence import DEFAULT_THRESHOLDS, VOICE_LEVELS, Level, Thresholds
from ehrbridge.errors import ConcurrencyError, InvalidInput, NotFound, RecordClaimed, WriteRace
from ehrbridge.worldmodel.events import (
    Event,
    EventType,
    NewEvent,
    Observation,
    Source,
)
from ehrbridge.worldmodel.matching import MatchDecision, decide, lookup_keys, normalize_phone
from ehrbridge.worldmodel.planner import AppendResult, Submission
from ehrbridge.worldmodel.projection import EntityState, Ledger, replay
from ehrbridge.worldmodel.store import Store

#: Entity types resolved across sources by identifiers and demographics (docs/design.md §5.5).
RESOLVED_TYPES = frozenset({"Patient", "Practitioner"})
#: Lookup-key prefixes used to find resolution candidates.
_CANDIDATE_KEYS = ("id:", "mrn:", "npi:", "phone:", "email:", "dob:")
_RETRIES = 5


def parse_entity(ref: str) -> tuple[str, str]:
    """``Patient/abc`` -> ``("Patient", "abc")``."""
    entity_type, sep, entity_id = ref.partition("/")
    if not sep or not entity_type or not entity_id:
        raise InvalidInput(f"{ref!r} is not an entity reference like 'Patient/<id>'")
    return entity_type, entity_id


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    """What became of one observed record."""

    result: AppendResult
    match: MatchDecision | None = None  #: the resolution decision for a record seen first


class WorldModel:
    """The world model of one workspace."""

    def __init__(
        self, store: Store, workspace: str, *, thresholds: Thresholds = DEFAULT_THRESHOLDS
    ) -> None:
        self.store = store
        self.workspace = workspace
        self.thresholds = thresholds

    # --- writing ----------------------------------------------------------------------------

    async def record(
        self, items: Sequence[Submission], *, audit: WriteAudit | None = None
    ) -> list[AppendResult]:
        """Append atomically (with ``audit``'s entries in the same transaction). A batch
        without version expectations is retried when it loses a race (another writer created
        the same entity or record first)."""
        optimistic = any(isinstance(i, NewEvent) and i.expected_version is not None for i in items)
        for attempt in range(_RETRIES):
            try:
                return await self.store.append(self.workspace, items, audit=audit)
            except RecordClaimed:
                raise  # the same batch would fail again: the caller must resolve anew
            except WriteRace:
                if attempt == _RETRIES - 1:
                    raise
            except ConcurrencyError:
                if optimistic or attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def ingest(
        self,
        observations: Sequence[Observation],
        *,
        resolve: bool = True,
        decisions: Sequence[MatchDecision | None] | None = None,
    ) -> list[IngestResult]:
        """Record source snapshots atomically; records seen for the first time are resolved
        against existing entities: a certain match links, an uncertain one becomes a
        ``match_candidate`` event for review, never a merge.

        A caller that resolved the records itself (to know their entity ids before writing, as
        the FHIR importer does) passes its ``decisions``, one per observation, and the entity id
        of each certain match in the observation."""
        if decisions is not None:
            if len(decisions) != len(observations):
                raise InvalidInput("one decision per observation")
            results = await self.record(observations)
        else:
            resolving = resolve and any(
                obs.entity_id is None and obs.entity_type in RESOLVED_TYPES for obs in observations
            )
            for attempt in range(_RETRIES):
                try:
                    # Matching and writing under the resolution lock: see Store.resolving.
                    async with self.store.resolving(self.workspace) if resolving else nullcontext():
                        decisions, prepared = await self._resolved(observations, resolve=resolve)
                        results = await self.record(prepared)
                    break
                except RecordClaimed:
                    # A concurrent writer linked a record we resolved; resolve against it.
                    if attempt == _RETRIES - 1:
                        raise
        assert decisions is not None
        candidates = [
            NewEvent(
                workspace=self.workspace,
                entity_type=r.entity_type,
                entity_id=r.entity_id,
                event_type=EventType.MATCH_CANDIDATE,
                data={"candidate": d.entity_id, "score": d.score, "reasons": list(d.reasons)},
                source=Source(kind="system", id="resolver"),
                confidence=1.0,
                effective_at=datetime.now(UTC),
            )
            for r, d in zip(results, decisions, strict=True)
            if d is not None and d.kind == "candidate" and r.status == "created"
        ]
        if candidates:
            await self.record(candidates)
        return [IngestResult(result=r, match=d) for r, d in zip(results, decisions, strict=True)]

    async def _resolved(
        self, observations: Sequence[Observation], *, resolve: bool
    ) -> tuple[list[MatchDecision | None], list[Observation]]:
        """The resolution decision of each observation, and the observations linked to the
        entity of each certain match."""
        decisions: list[MatchDecision | None] = []
        prepared: list[Observation] = []
        for obs in observations:
            decision = None
            if resolve and obs.entity_id is None and obs.entity_type in RESOLVED_TYPES:
                known = await self.store.get_record(self.workspace, obs.record)
                if known is None:
                    decision = await self.match(obs.entity_type, obs.data)
                    if decision is not None and decision.kind == "certain":
                        obs = _with_entity(obs, str(decision.entity_id))
            decisions.append(decision)
            prepared.append(obs)
        return decisions, prepared

    async def match(
        self,
        entity_type: str,
        data: Mapping[str, Any],
        *,
        also: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> MatchDecision | None:
        """The best resolution decision for a new record of a resolved type (None: no match).

        ``also`` adds candidates that are not stored yet (entity id -> fields), such as the
        records earlier in the same batch."""
        keys = sorted(candidate_keys(entity_type, data))
        found: dict[str, Mapping[str, Any]] = dict(also or {})
        for key in keys:
            for state in await self.store.find(self.workspace, key, entity_type):
                if state.merged_into is None:
                    found[state.entity_id] = state.values
        decisions = decide(data, list(found.items()))
        return decisions[0] if decisions else None

    async def write_voice(
        self,
        entity_type: str,
        entity_id: str,
        data: Mapping[str, Any],
        *,
        level: Level,
        agent: str,
        call_id: str | None = None,
        evidence: Mapping[str, Any] | None = None,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
        audit: WriteAudit | None = None,
    ) -> AppendResult:
        """A fact the voice agent captured, at a voice level (docs/design.md §5.2); ``audit`` as for
        :meth:`record`."""
        if level not in VOICE_LEVELS:
            raise InvalidInput(f"a voice fact is written at a voice level, not {level.name}")
        (result,) = await self.record(
            [
                NewEvent(
                    workspace=self.workspace,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    data=dict(data),
                    source=Source(kind="voice", id=agent),
                    confidence=level.value,
                    effective_at=effective_at or datetime.now(UTC),
                    correlation_id=call_id,
                    evidence=evidence,
                    idempotency_key=idempotency_key,
                )
            ],
            audit=audit,
        )
        return result

    async def regrade(
        self,
        entity: str,
        target: str,
        level: Level | float,
        *,
        by: Source,
        reason: str = "",
        evidence: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Re-grade an earlier event: verified 0.8, approved 0.95, rejected 0.0
        (docs/design.md §8). ``evidence`` says why (a judge's verdict); with
        ``idempotency_key``, the same re-grade written twice is one event."""
        entity_type, entity_id = parse_entity(entity)
        await self._event(entity_type, entity_id, target)
        confidence = level.value if isinstance(level, Level) else float(level)
        data: dict[str, Any] = {"target": target}
        if reason:
            data["reason"] = reason
        (result,) = await self.record(
            [
                NewEvent(
                    workspace=self.workspace,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    event_type=EventType.REGRADED,
                    data=data,
                    source=by,
                    confidence=confidence,
                    effective_at=datetime.now(UTC),
                    evidence=None if evidence is None else dict(evidence),
                    idempotency_key=idempotency_key,
                )
            ]
        )
        return result

    async def correct(
        self,
        entity: str,
        target: str,
        data: Mapping[str, Any],
        *,
        operator: str,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """An operator's correction: a 1.0 event that supersedes ``target`` (with
        ``idempotency_key``, the same correction written twice is one event)."""
        entity_type, entity_id = parse_entity(entity)
        await self._event(entity_type, entity_id, target)
        (result,) = await self.record(
            [
                NewEvent(
                    workspace=self.workspace,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    event_type=EventType.CORRECTED,
                    data=dict(data),
                    source=Source(kind="operator", id=operator),
                    confidence=Level.AUTHORITATIVE.value,
                    effective_at=datetime.now(UTC),
                    supersedes=target,
                    idempotency_key=idempotency_key,
                )
            ]
        )
        return result

    async def resolve_conflict(
        self, entity: str, conflict_id: str, value: Any, *, operator: str
    ) -> AppendResult:
        """Resolve an open conflict with a 1.0 operator event choosing ``value``."""
        entity_type, entity_id = parse_entity(entity)
        state = await self.state(entity_type, entity_id)
        match = [c for c in state.conflicts if c.conflict_id == conflict_id] if state else []
        if not match:
            raise NotFound(f"no open conflict {conflict_id} on {entity}")
        field = match[0].field
        (result,) = await self.record(
            [
                NewEvent(
                    workspace=self.workspace,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    event_type=EventType.CONFLICT_RESOLVED,
                    data={field: value, "conflict": conflict_id},
                    fields=(field,),
                    source=Source(kind="operator", id=operator),
                    confidence=Level.AUTHORITATIVE.value,
                    effective_at=datetime.now(UTC),
                )
            ]
        )
        return result

    async def merge(self, entity_type: str, survivor: str, member: str, *, operator: str) -> None:
        """Merge ``member`` into ``survivor`` (both keep their logs; undo with :meth:`unmerge`)."""
        await self._membership(EventType.MERGED, entity_type, survivor, member, operator)

    async def unmerge(self, entity_type: str, survivor: str, member: str, *, operator: str) -> None:
        """Split a merged member off again."""
        await self._membership(EventType.UNMERGED, entity_type, survivor, member, operator)

    async def _membership(
        self, kind: EventType, entity_type: str, survivor: str, member: str, operator: str
    ) -> None:
        if survivor == member:
            raise InvalidInput("an entity cannot be merged with itself")
        for entity_id in (survivor, member):
            if await self.store.get_state(self.workspace, entity_type, entity_id) is None:
                raise NotFound(f"no {entity_type}/{entity_id} in this workspace")
        await self.record(
            [
                NewEvent(
                    workspace=self.workspace,
                    entity_type=entity_type,
                    entity_id=survivor,
                    event_type=kind,
                    data={"member": member},
                    source=Source(kind="operator", id=operator),
                    confidence=Level.AUTHORITATIVE.value,
                    effective_at=datetime.now(UTC),
                )
            ]
        )

    # --- reading ----------------------------------------------------------------------------

    async def state(
        self, entity_type: str, entity_id: str, *, as_of: datetime | None = None
    ) -> EntityState | None:
        """The projected state now, or as the world model knew it at ``as_of``."""
        if as_of is None:
            return await self.store.get_state(self.workspace, entity_type, entity_id)
        ledger = await self._replay(entity_type, entity_id, as_of)
        return ledger.state(self.workspace, self.thresholds) if ledger is not None else None

    async def _replay(self, entity_type: str, entity_id: str, until: datetime) -> Ledger | None:
        """The entity's ledger from the events recorded by ``until``; None if there were none."""
        events = await self.events(entity_type, entity_id, until=until)
        if not events:
            return None
        members: dict[str, Ledger] = {}
        for e in events:
            if e.event_type is EventType.MERGED and "member" in e.data:
                member = str(e.data["member"])
                members[member] = replay(
                    entity_type, member, await self.events(entity_type, member, until=until)
                )
        return replay(entity_type, entity_id, events, members)

    async def events(
        self, entity_type: str, entity_id: str, *, until: datetime | None = None
    ) -> list[Event]:
        """An entity's own timeline."""
        return await self.store.read_entity(self.workspace, entity_type, entity_id, until=until)

    async def _event(self, entity_type: str, entity_id: str, event_id: str) -> Event:
        for event in await self.events(entity_type, entity_id):
            if event.id == event_id:
                return event
        # a member's event can be re-graded through its survivor
        state = await self.state(entity_type, entity_id)
        for member in state.members if state else ():
            for event in await self.events(entity_type, member):
                if event.id == event_id:
                    return event
        raise NotFound(f"no event {event_id} on {entity_type}/{entity_id}")

    async def identify_caller(self, phone: str, *, region: str = "US") -> list[EntityState]:
        """Patients with this phone number (E.164 or as dialled); merged ones as survivors."""
        e164 = normalize_phone(phone, region)
        if e164 is None:
            raise InvalidInput("not a phone number")
        found: dict[str, EntityState] = {}
        for state in await self.store.find(self.workspace, f"phone:{e164}", "Patient"):
            if state.merged_into:
                survivor = await self.state("Patient", state.merged_into)
                if survivor is not None:
                    state = survivor
            found[state.entity_id] = state
        return list(found.values())


def candidate_keys(entity_type: str, data: Mapping[str, Any]) -> frozenset[str]:
    """The lookup keys that find resolution candidates for a record (identifiers, MRN, NPI,
    phone, email, birth date)."""
    return frozenset(k for k in lookup_keys(entity_type, data) if k.startswith(_CANDIDATE_KEYS))


def _with_entity(obs: Observation, entity_id: str) -> Observation:
    return Observation(
        workspace=obs.workspace,
        record=obs.record,
        entity_type=obs.entity_type,
        data=obs.data,
        kind=obs.kind,
        confidence=obs.confidence,
        effective_at=obs.effective_at,
        entity_id=entity_id,
        correlation_id=obs.correlation_id,
    )
