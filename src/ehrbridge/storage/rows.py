"""The row codec both backends share: how events, records, entity states and conflicts become
column values and back (docs/design.md §4). The stored forms of a ledger and a state are in
:mod:`ehrbridge.storage.packing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ehrbridge.audit import AuditEntry
from ehrbridge.confidence import Thresholds
from ehrbridge.errors import InvalidInput
from ehrbridge.storage.packing import pack_ledger, pack_state, unpack_ledger, unpack_state
from ehrbridge.times import utc
from ehrbridge.worldmodel.events import Event, EventType, RecordKey, Source
from ehrbridge.worldmodel.planner import EntityWrite, RecordRow, index_keys
from ehrbridge.worldmodel.projection import EntityState, Ledger, OpenConflict, replay
from ehrbridge.worldmodel.store import LogPage, LogPosition


def unstorable(exc: Exception) -> InvalidInput:
    """A value the database cannot take (a NUL or a character its encoding lacks, a number
    out of range) is bad input, never "retry later": the same write fails again. The world
    model's validation refuses these first (:mod:`ehrbridge.worldmodel.canonical`); the
    adapters translate their driver's data errors with this as the safety net. Names the
    error's kind, never its message, which may quote the value."""
    return InvalidInput(
        f"the database cannot store a value of this input ({type(exc).__name__}, e.g. a NUL "
        "character U+0000 or a character the database's encoding lacks): change the input, "
        "retrying will not help"
    )


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def event_row(event: Event) -> tuple[Any, ...]:
    """The column values of an event, in :data:`EVENT_COLUMNS` order (JSON as text)."""
    return (
        event.seq,
        event.id,
        event.workspace,
        event.entity_type,
        event.entity_id,
        event.version,
        event.event_type.value,
        dumps(event.data),
        dumps(list(event.fields)),
        event.source.kind,
        event.source.id,
        event.source.ref,
        event.confidence,
        utc(event.effective_at),
        utc(event.recorded_at),
        event.content_hash,
        event.supersedes,
        event.correlation_id,
        dumps(event.evidence) if event.evidence is not None else None,
        event.idempotency_key,
    )


EVENT_COLUMNS = (
    "seq, id, workspace, entity_type, entity_id, version, event_type, data, fields, source_kind, "
    "source_id, source_ref, confidence, effective_at, recorded_at, content_hash, supersedes, "
    "correlation_id, evidence, idempotency_key"
)


def _json(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    return orjson.loads(value)


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def log_page(
    rows: Sequence[Sequence[Any]], after: LogPosition, limit: int, head: LogPosition | None
) -> LogPage:
    """A page of :meth:`EventLog.read_log` from its rows; ``head`` (a filtered read's newest
    event looked past) is the position of a page that is not full."""
    events = [event_from_row(r) for r in rows]
    position = LogPosition(tx=events[-1].tx, seq=events[-1].seq) if events else after
    if head is not None and len(events) < limit:
        position = max(position, head)
    return LogPage(events=events, position=position)


def event_from_row(row: Sequence[Any]) -> Event:
    """An event from a row of :data:`EVENT_COLUMNS` followed by ``tx``."""
    return Event(
        seq=row[0],
        id=row[1],
        workspace=row[2],
        entity_type=row[3],
        entity_id=row[4],
        version=row[5],
        event_type=EventType(row[6]),
        data=_json(row[7]),
        fields=tuple(_json(row[8])),
        source=Source(kind=row[9], id=row[10], ref=row[11]),
        confidence=row[12],
        effective_at=_time(row[13]),
        recorded_at=_time(row[14]),
        content_hash=row[15],
        supersedes=row[16],
        correlation_id=row[17],
        evidence=_json(row[18]),
        idempotency_key=row[19],
        tx=int(row[20]),
    )


def record_values(workspace: str, r: RecordRow) -> tuple[Any, ...]:
    """The columns of a new ``source_records`` row."""
    key = r.key
    return (
        workspace,
        key.data_source,
        key.resource_type,
        key.external_id,
        r.entity_type,
        r.entity_id,
        r.content_hash,
        dumps(r.snapshot),
        r.last_event_id,
    )


def record_update(workspace: str, r: RecordRow) -> tuple[Any, ...]:
    """The parameters of the update of a known ``source_records`` row."""
    key = r.key
    return (
        r.content_hash,
        dumps(r.snapshot),
        r.last_event_id,
        workspace,
        key.data_source,
        key.resource_type,
        key.external_id,
    )


def record_from_row(key: RecordKey, row: Sequence[Any]) -> RecordRow:
    """A record row from (entity_type, entity_id, content_hash, snapshot, last_event_id)."""
    return RecordRow(
        key=key,
        entity_type=row[0],
        entity_id=row[1],
        content_hash=row[2],
        snapshot=_json(row[3]),
        last_event_id=row[4],
    )


def state_from_json(workspace: str, raw: Any) -> EntityState:
    """An entity state from its stored JSON (packed or plain, see :mod:`.packing`)."""
    return unpack_state(workspace, _json(raw))


def ledger_from_json(raw: Any) -> Ledger:
    """A ledger from its stored JSON bytes (packed or plain, see :mod:`.packing`)."""
    return unpack_ledger(_json(raw))


def conflict_from_body(body: Any) -> OpenConflict:
    """An open conflict from its stored JSON body."""
    return OpenConflict.from_json(_json(body))


@dataclass(frozen=True, kw_only=True)
class EntityRows:
    """The rows an adapter writes for a set of entity projections."""

    stale: list[tuple[str, str, str]]  #: (workspace, type, id) whose keys/conflicts are replaced
    entities: list[tuple[Any, ...]]  #: ``entities`` rows (packed ledger as bytes, packed state
    #: as JSON text)
    keys: list[tuple[str, str, str, str]]  #: ``entity_keys`` rows
    conflicts: list[tuple[Any, ...]]  #: ``open_conflicts`` rows


def entity_rows(workspace: str, writes: Sequence[EntityWrite]) -> EntityRows:
    """Rows for ``writes``, each state serialised once."""
    stale, entities, keys, conflicts = [], [], [], []
    for w in writes:
        s = w.state
        raw = pack_state(s)
        if not w.new:
            stale.append((workspace, s.entity_type, s.entity_id))
        entities.append(
            (
                workspace,
                s.entity_type,
                s.entity_id,
                s.version,
                s.merged_into,
                utc(s.updated_at) if s.updated_at else None,
                orjson.dumps(pack_ledger(w.ledger)),
                dumps(raw),
            )
        )
        keys += [(workspace, key, s.entity_type, s.entity_id) for key in w.keys]
        conflicts += [
            (workspace, c["conflict_id"], s.entity_type, s.entity_id, c["field"], dumps(c))
            for c in raw["conflicts"]
        ]
    return EntityRows(stale=stale, entities=entities, keys=keys, conflicts=conflicts)


def rebuild_writes(
    workspace: str, grouped: dict[tuple[str, str], list[Event]], thresholds: Thresholds
) -> list[EntityWrite]:
    """Replay every entity (members before the survivors that absorb them)."""
    ledgers: dict[tuple[str, str], Ledger] = {}
    survivors = []
    for key, events in grouped.items():
        if any(e.event_type is EventType.MERGED and "member" in e.data for e in events):
            survivors.append(key)
        else:
            ledgers[key] = replay(key[0], key[1], events)
    for key in survivors:
        members = {k[1]: v for k, v in ledgers.items() if k[0] == key[0]}
        ledgers[key] = replay(key[0], key[1], grouped[key], members)
    writes = []
    for ledger in ledgers.values():
        state = ledger.state(workspace, thresholds)
        writes.append(
            EntityWrite(
                ledger=ledger,
                state=state,
                keys=index_keys(state.entity_type, state.values),
                new=True,
            )
        )
    return writes


# --- the audit trail ---------------------------------------------------------------------------

#: the audit_log columns an entry fills, in the order of :func:`audit_values`
AUDIT_COLUMNS = (
    "workspace, at, key_id, role, action, outcome, entity_type, entity_id, phi, request_id, details"
)


def audit_values(e: AuditEntry, at: Any, phi: Any) -> tuple[Any, ...]:
    """An entry's :data:`AUDIT_COLUMNS`, with its time and ``phi`` as the backend stores them."""
    details = orjson.dumps(e.details).decode()
    return (
        e.workspace,
        at,
        e.key_id,
        e.role,
        e.action,
        e.outcome,
        e.entity_type,
        e.entity_id,
        phi,
        e.request_id,
        details,
    )


def audit_select(
    mark: str, workspace: str, filters: Sequence[tuple[str, Any]], limit: int
) -> tuple[str, list[Any]]:
    """The audit trail query of both backends, newest first: ``workspace``, and each of the
    ``filters`` (``("at >=", since)``, ``("key_id =", key)``, ...) whose value is not None, with
    ``mark`` (``?`` or ``%s``) as the placeholder; the SQL and its arguments."""
    where, args = [f"workspace = {mark}"], [workspace]
    for clause, value in filters:
        if value is not None:
            where.append(f"{clause} {mark}")
            args.append(value)
    query = (
        f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} "
        f"ORDER BY at DESC, id DESC LIMIT {mark}"
    )
    return query, [*args, limit]


# --- the review queue ----------------------------------------------------------------------------

#: the review_items columns, in the order both adapters read and write them
REVIEW_COLUMNS = (
    "item_id, workspace, entity_type, entity_id, status, priority, reason, created_at, "
    "updated_at, body"
)
