"""Compact stored forms of a :class:`Ledger` and an :class:`EntityState`.

The plain ``as_json`` forms repeat an event's provenance (source, times, confidence, ...) for every
field the event asserts, which made the stored ledger and state several times the size of the
data itself. The packed forms (``"v": 2``) list each distinct provenance once and refer to it by
index, so an entity with one event costs about one copy of its values. The unpackers read both
forms, so rows written before the packed forms existed still load.

>>> from datetime import UTC, datetime
>>> from ehrbridge.worldmodel.events import Source
>>> from ehrbridge.worldmodel.projection import FieldValue
>>> at = datetime(2024, 1, 2, tzinfo=UTC)
>>> fv = FieldValue(value="A", confidence=1.0, source=Source(kind="ehr", id="x"),
...                 effective_at=at, event_id="e1")
>>> state = EntityState(workspace="w", entity_type="Patient", entity_id="p", version=1,
...                     fields={"phone": fv, "name.family": fv}, pending={})
>>> packed = pack_state(state)
>>> packed["f"]
{'phone': ['A', 0], 'name.family': ['A', 0]}
>>> packed["p"]
[[1.0, {'kind': 'ehr', 'id': 'x'}, '2024-01-02T00:00:00+00:00', 'e1']]
>>> unpack_state("w", packed) == state == unpack_state("w", state.as_json())
True
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ehrbridge.worldmodel.events import Source
from ehrbridge.worldmodel.projection import (
    Assertion,
    EntityState,
    FieldValue,
    Ledger,
    OpenConflict,
)

#: The version tag of the packed forms; the plain forms have none.
PACKED = 2


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# --- ledger ----------------------------------------------------------------------------------


def pack_ledger(ledger: Ledger) -> dict[str, Any]:
    """The packed form of ``ledger``: assertions as ``[provenance index, value]``."""
    index: dict[tuple[Any, ...], int] = {}
    table: list[list[Any]] = []
    assertions: dict[str, list[list[Any]]] = {}
    for path, items in ledger.assertions.items():
        packed = []
        for a in items:
            # Every assertion of one event shares these (they come from the event and its
            # origin), so an entity's assertions collapse to one row per event.
            key = (
                a.event_id,
                a.seq,
                a.origin,
                a.contributor,
                a.confidence,
                a.source,
                a.effective_at,
                a.effective_at.utcoffset(),
                a.recorded_at,
                a.recorded_at.utcoffset(),
            )
            at = index.get(key)
            if at is None:
                at = index[key] = len(table)
                table.append(
                    [
                        a.event_id,
                        a.seq,
                        a.origin,
                        a.contributor,
                        a.confidence,
                        a.source.as_dict(),
                        a.effective_at.isoformat(),
                        a.recorded_at.isoformat(),
                    ]
                )
            packed.append([at, a.value])
        assertions[path] = packed
    return {
        "v": PACKED,
        "t": ledger.entity_type,
        "i": ledger.entity_id,
        "n": ledger.version,
        "p": table,
        "a": assertions,
        "g": {t: list(g) for t, g in ledger.grades.items()},
        "x": ledger.excluded,
        "c": [c.as_json() for c in ledger.conflicts.values()],
        "m": ledger.members,
        "into": ledger.merged_into,
        "u": ledger.updated_at.isoformat() if ledger.updated_at else None,
    }


def unpack_ledger(raw: Mapping[str, Any]) -> Ledger:
    """A ledger from its packed or plain stored form."""
    if raw.get("v") != PACKED:
        return Ledger.from_json(raw)
    table: list[dict[str, Any]] = [
        {
            "event_id": row[0],
            "seq": row[1],
            "origin": row[2],
            "contributor": row[3],
            "confidence": row[4],
            "source": Source.from_dict(row[5]),
            "effective_at": datetime.fromisoformat(row[6]),
            "recorded_at": datetime.fromisoformat(row[7]),
        }
        for row in raw["p"]
    ]
    return Ledger(
        entity_type=raw["t"],
        entity_id=raw["i"],
        version=raw["n"],
        assertions={
            path: [Assertion(value=value, **table[at]) for at, value in items]
            for path, items in raw["a"].items()
        },
        grades={t: (g[0], g[1], g[2]) for t, g in raw["g"].items()},
        excluded=dict(raw["x"]),
        conflicts={c["conflict_id"]: OpenConflict.from_json(c) for c in raw["c"]},
        members=list(raw["m"]),
        merged_into=raw["into"],
        updated_at=_time(raw["u"]),
    )


# --- state -----------------------------------------------------------------------------------


def pack_state(state: EntityState) -> dict[str, Any]:
    """The packed form of ``state``: values as ``[value, provenance index]``.

    ``conflicts`` keeps its plain form (the adapters copy each into ``open_conflicts``)."""
    index: dict[tuple[Any, ...], int] = {}
    table: list[list[Any]] = []

    def at(fv: FieldValue) -> int:
        key = (
            fv.confidence,
            fv.source,
            fv.effective_at,
            fv.effective_at.utcoffset(),
            fv.event_id,
        )
        found = index.get(key)
        if found is None:
            found = index[key] = len(table)
            table.append(
                [fv.confidence, fv.source.as_dict(), fv.effective_at.isoformat(), fv.event_id]
            )
        return found

    return {
        "v": PACKED,
        "entity_type": state.entity_type,
        "entity_id": state.entity_id,
        "version": state.version,
        "f": {path: [fv.value, at(fv)] for path, fv in state.fields.items()},
        "q": {path: [[fv.value, at(fv)] for fv in items] for path, items in state.pending.items()},
        "p": table,
        "conflicts": [c.as_json() for c in state.conflicts],
        "merged_into": state.merged_into,
        "members": list(state.members),
        "updated_at": state.updated_at.isoformat() if state.updated_at else None,
    }


def unpack_state(workspace: str, raw: Mapping[str, Any]) -> EntityState:
    """An entity state from its packed or plain stored form."""
    if raw.get("v") != PACKED:
        return EntityState.from_json(workspace, raw)
    table: list[dict[str, Any]] = [
        {
            "confidence": row[0],
            "source": Source.from_dict(row[1]),
            "effective_at": datetime.fromisoformat(row[2]),
            "event_id": row[3],
        }
        for row in raw["p"]
    ]
    return EntityState(
        workspace=workspace,
        entity_type=raw["entity_type"],
        entity_id=raw["entity_id"],
        version=raw["version"],
        fields={path: FieldValue(value=v, **table[at]) for path, (v, at) in raw["f"].items()},
        pending={
            path: tuple(FieldValue(value=v, **table[at]) for v, at in items)
            for path, items in raw["q"].items()
        },
        conflicts=tuple(OpenConflict.from_json(c) for c in raw["conflicts"]),
        merged_into=raw["merged_into"],
        members=tuple(raw["members"]),
        updated_at=_time(raw["updated_at"]),
    )
