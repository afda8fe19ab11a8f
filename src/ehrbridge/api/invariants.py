"""What every agent-API write keeps true, checked in one place (docs/design.md §10).

Every write of the extracted channel (an observation, a transcript, a booking) goes through
:func:`checked`, called by :func:`ehrbridge.api.extracted.write`, the one function that writes;
no route or tool can go around it. It returns the data to write, or refuses:

- **References resolve inside the workspace.** Every reference field the write sets (the
  documented ``reference`` and ``reference_list`` fields of docs/entities.md, and the API's own
  :data:`API_REFERENCES`: ``Appointment.slot`` and ``Call.patient``) must be ``Type/<id>`` of an
  allowed type naming an entity of the principal's workspace. A merged entity becomes its
  survivor. An entity of another workspace is refused exactly like one that does not exist
  (:class:`~ehrbridge.errors.NotFound`, naming the field).
- **A time range does not end before it starts**: ``start``/``end``, ``started_at``/``ended_at``
  and ``start_ms``/``end_ms`` at any depth (``period.start``/``period.end``), taken from the
  entity as the write leaves it; an Appointment's ``end`` must be after its ``start``.
- **A slot is booked once.** An Appointment the write leaves holding a slot it did not hold
  (``slot`` set and a status that does not release it) needs a slot that exists, is free at its
  source, is on an active schedule and is not held by another booking, with the slot's own
  start and end if it gives them. The last word is the database's: the store writes the claim
  ``Slot/<id>`` under a unique key in the write's own transaction
  (:func:`~ehrbridge.worldmodel.planner.claim_keys`), so two writers (two routes, two processes,
  two stores on one database) cannot both commit a booking of one slot; the check here gives
  the early, clear answer.

Messages name the field (``fields.patient``, ``slot_id``), never a submitted value or id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final

from ehrbridge.api.permissions import type_named
from ehrbridge.api.slots import SlotIndex
from ehrbridge.errors import InvalidInput, NotFound, SlotUnavailable
from ehrbridge.worldmodel.entities import spec_for
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.planner import claim_keys

#: Reference fields the agent API writes that the entity catalog does not list: the types each
#: may point to.
API_REFERENCES: Final[Mapping[tuple[str, str], tuple[str, ...]]] = {
    ("Appointment", "slot"): ("Slot",),
    ("Call", "patient"): ("Patient",),
}
#: The ends of a time range: the last part of a field path that starts one, and its end.
RANGE_ENDS: Final[Mapping[str, str]] = {
    "start": "end",
    "started_at": "ended_at",
    "start_ms": "end_ms",
}
_REFERENCE = re.compile(r"([A-Z][A-Za-z0-9]{0,63})/([A-Za-z0-9][A-Za-z0-9._:-]{0,127})", re.ASCII)


def reference_targets(entity_type: str, path: str) -> tuple[tuple[str, ...], bool] | None:
    """The types the field may reference (empty: any) and whether it holds a list; None when
    the field is not a reference.

    >>> reference_targets("Appointment", "patient"), reference_targets("Appointment", "slot")
    ((('Patient',), False), (('Slot',), False))
    >>> reference_targets("Patient", "name.family") is None
    True
    """
    extra = API_REFERENCES.get((entity_type, path))
    if extra is not None:
        return extra, False
    spec = spec_for(entity_type)
    field = spec.field(path) if spec is not None else None
    if field is None or field.kind not in ("reference", "reference_list"):
        return None
    return field.targets, field.kind == "reference_list"


def field_name(path: str, names: Mapping[str, str] | None) -> str:
    """How an error names the data field ``path``: as the request called it (``names``), else
    as a path in the observation's ``fields``."""
    return names.get(path, f"fields.{path}") if names else f"fields.{path}"


async def checked(
    model: WorldModel,
    slots: SlotIndex,
    entity_type: str,
    entity_id: str,
    data: Mapping[str, Any],
    *,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``data`` as it may be written to ``entity_type``/``entity_id`` of ``model``'s workspace
    (references to merged entities made their survivors'); refuses it with
    :class:`NotFound`, :class:`InvalidInput` or :class:`SlotUnavailable` (see the module)."""
    out = dict(data)
    for path, value in data.items():
        found = reference_targets(entity_type, path)
        if found is None or value is None:
            continue
        targets, many = found
        where = field_name(path, names)
        if many:
            if not isinstance(value, list):
                raise InvalidInput(f"{where}: expected a list of references")
            out[path] = [await resolved(model, item, targets, where) for item in value]
        else:
            out[path] = await resolved(model, value, targets, where)
    current = await model.state(entity_type, entity_id)
    before = current.values if current is not None else {}
    after = {k: v for k, v in {**before, **out}.items() if v is not None}
    _ranges_kept(entity_type, out, after, names)
    if entity_type == "Appointment":
        await _slot_free(model, slots, entity_id, before, after, names)
    return out


async def resolved(model: WorldModel, value: object, targets: tuple[str, ...], where: str) -> str:
    """The reference ``value`` to an entity of the workspace, as ``Type/<survivor id>``."""
    match = _REFERENCE.fullmatch(value) if isinstance(value, str) else None
    if match is None or (targets and match.group(1) not in targets):
        wanted = "|".join(targets) or "Type"
        raise InvalidInput(f"{where}: expected a reference '{wanted}/<id>'")
    entity_type, entity_id = match.groups()
    state = await model.state(entity_type, entity_id)
    if state is not None and state.merged_into:
        state = await model.state(entity_type, state.merged_into)
    if state is None:
        raise NotFound(f"{where}: no such {type_named(entity_type)} in this workspace")
    return f"{entity_type}/{state.entity_id}"


def _moment(value: object) -> datetime | date | int | None:
    """A range end as something comparable: a time with a zone, a date, or milliseconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    try:
        if "T" in value:
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo is not None else None
        return date.fromisoformat(value)
    except ValueError:
        return None


def _ranges_kept(
    entity_type: str,
    written: Mapping[str, Any],
    after: Mapping[str, Any],
    names: Mapping[str, str] | None,
) -> None:
    """Refuse a write that leaves a range it touches ending before it starts."""
    for path in after:
        head, _, last = path.rpartition(".")
        if last not in RANGE_ENDS:
            continue
        end_path = f"{head}.{RANGE_ENDS[last]}" if head else RANGE_ENDS[last]
        if path not in written and end_path not in written:
            continue
        start, end = _moment(after.get(path)), _moment(after.get(end_path))
        if start is None or end is None or type(start) is not type(end):
            continue
        strict = entity_type == "Appointment" and path == "start"
        assert isinstance(end, type(start))
        if end < start or (strict and end == start):  # type: ignore[operator]
            relation = "after" if strict else "at or after"
            raise InvalidInput(
                f"{field_name(end_path, names)}: must be {relation} {field_name(path, names)}"
            )


async def _slot_free(
    model: WorldModel,
    slots: SlotIndex,
    entity_id: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    names: Mapping[str, str] | None,
) -> None:
    """Refuse an Appointment write that takes a slot that is not free to take."""
    taken = claim_keys("Appointment", after) - claim_keys("Appointment", before)
    if not taken:
        return
    where = field_name("slot", names)
    (ref,) = taken
    await slots.refresh(model)
    slot = slots.slots.get(ref.removeprefix("Slot/"))
    if slot is None:
        raise SlotUnavailable(ref, f"{where}: the slot has no start, end or status to book")
    if not slots.is_free(slot, ignoring=entity_id):
        raise SlotUnavailable(ref, f"{where}: the slot is not free")
    for path, moment in (("start", slot.start), ("end", slot.end)):
        given = _moment(after.get(path))
        if given is not None and given != moment:
            raise InvalidInput(f"{field_name(path, names)}: not the slot's {path}")
