"""Available appointment slots from FHIR Slot and Schedule data (docs/design.md §5.6, §10).

FHIR Slot and Schedule have no first-class mapping: the importer keeps each as a generic entity
(``{"resource": <the resource>}``) with its references translated to entity references, so a
Slot's ``schedule.reference`` is ``Schedule/<entity id>`` and a Schedule's ``actor`` references
are ``Practitioner/<id>`` and ``Location/<id>``.

The world model's lookup index has no key for them (no names, phones or patient references), so
:class:`SlotIndex` follows the workspace's event log (``Store.read_log``), asking the database
for the Slot, Schedule and Appointment events only, and keeps every Slot and Schedule it has
seen, re-reading an entity's projected state only when the log shows a new event for it. The
first search of a workspace reads those events once; later ones read only what was appended
since. It also notes which slots appointments booked through the agent API hold
(``Appointment.slot``), so a slot booked on a call is not offered again before the EHR marks it
busy.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ehrbridge.api.models import SlotSearch, SlotView
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.planner import SLOT_RELEASED
from ehrbridge.worldmodel.store import START, LogPosition

#: Appointment statuses that no longer hold their slot.
RELEASED = SLOT_RELEASED
_PAGE = 1000
#: the entity types whose events the index follows
FOLLOWED = frozenset({"Slot", "Schedule", "Appointment"})


@dataclass(frozen=True, kw_only=True)
class Slot:
    """A slot as read from its entity."""

    slot_id: str
    schedule: str | None
    status: str
    start: datetime
    end: datetime
    service_types: tuple[str, ...]
    confidence: float


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A schedule: whose and where, and what it offers."""

    actors: tuple[str, ...]
    service_types: tuple[str, ...]
    active: bool


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _concepts(value: object) -> tuple[str, ...]:
    """The texts (else displays, else codes) of a list of CodeableConcepts."""
    out: list[str] = []
    for concept in value if isinstance(value, list) else []:
        if not isinstance(concept, Mapping):
            continue
        if isinstance(concept.get("text"), str):
            out.append(concept["text"])
            continue
        for coding in concept.get("coding") or []:
            if isinstance(coding, Mapping):
                label = coding.get("display") or coding.get("code")
                if isinstance(label, str):
                    out.append(label)
    return tuple(out)


def _reference(value: object) -> str | None:
    if isinstance(value, Mapping) and isinstance(value.get("reference"), str):
        return str(value["reference"])
    return None


def read_slot(slot_id: str, resource: Mapping[str, Any], confidence: float) -> Slot | None:
    """A Slot resource as a :class:`Slot`; None when it lacks a start, end or status."""
    start, end = _time(resource.get("start")), _time(resource.get("end"))
    status = resource.get("status")
    if start is None or end is None or not isinstance(status, str):
        return None
    return Slot(
        slot_id=slot_id,
        schedule=_reference(resource.get("schedule")),
        status=status,
        start=start,
        end=end,
        service_types=_concepts(resource.get("serviceType")),
        confidence=confidence,
    )


def read_schedule(resource: Mapping[str, Any]) -> Schedule:
    """A Schedule resource as a :class:`Schedule`."""
    actors = tuple(
        ref for actor in resource.get("actor") or [] if (ref := _reference(actor)) is not None
    )
    return Schedule(
        actors=actors,
        service_types=_concepts(resource.get("serviceType")),
        active=resource.get("active") is not False,
    )


@dataclass(kw_only=True)
class SlotIndex:
    """The Slots and Schedules of one workspace, following its log."""

    position: LogPosition = START
    slots: dict[str, Slot] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    #: slot id -> appointment ids that name it (booked through the agent API)
    holders: dict[str, set[str]] = field(default_factory=dict)
    #: appointment id -> its latest status seen in the log
    appointment_status: dict[str, str] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: the slots by (start, id), rebuilt after the slots change
    _order: list[Slot] | None = None
    _starts: list[datetime] = field(default_factory=list)

    def put_slot(self, slot: Slot) -> None:
        self.slots[slot.slot_id] = slot
        self._order = None

    def drop_slot(self, slot_id: str) -> None:
        if self.slots.pop(slot_id, None) is not None:
            self._order = None

    def _by_start(self) -> tuple[list[Slot], list[datetime]]:
        if self._order is None or len(self._order) != len(self.slots):
            self._order = sorted(self.slots.values(), key=lambda s: (s.start, s.slot_id))
            self._starts = [s.start for s in self._order]
        return self._order, self._starts

    async def refresh(self, model: WorldModel) -> None:
        """Read the log from where the index stands; re-read changed Slots and Schedules."""
        async with self.lock:
            dirty: set[tuple[str, str]] = set()
            while True:
                page = await model.store.read_log(
                    model.workspace, self.position, _PAGE, entity_types=FOLLOWED
                )
                for event in page.events:
                    if event.entity_type in ("Slot", "Schedule"):
                        dirty.add((event.entity_type, event.entity_id))
                    elif event.entity_type == "Appointment":
                        self.note_appointment(event.entity_id, event.data)
                self.position = page.position
                if len(page.events) < _PAGE:
                    break
            for entity_type, entity_id in sorted(dirty):
                await self._reload(model, entity_type, entity_id)

    def note_appointment(self, appointment_id: str, data: Mapping[str, Any]) -> None:
        """Note the slot an Appointment event names and the status it asserts."""
        slot = data.get("slot")
        if isinstance(slot, str) and slot.startswith("Slot/"):
            self.holders.setdefault(slot.removeprefix("Slot/"), set()).add(appointment_id)
        if isinstance(data.get("status"), str):
            self.appointment_status[appointment_id] = data["status"]

    async def _reload(self, model: WorldModel, entity_type: str, entity_id: str) -> None:
        state = await model.state(entity_type, entity_id)
        resource = state.fields.get("resource") if state is not None else None
        if state is None or resource is None or not isinstance(resource.value, Mapping):
            self.drop_slot(entity_id)
            self.schedules.pop(entity_id, None)
            return
        if entity_type == "Slot":
            slot = read_slot(entity_id, resource.value, resource.confidence)
            if slot is None:
                self.drop_slot(entity_id)
            else:
                self.put_slot(slot)
        else:
            self.schedules[entity_id] = read_schedule(resource.value)

    def held(self, slot_id: str, *, ignoring: str | None = None) -> bool:
        """Whether an appointment booked through the agent API (other than ``ignoring``) holds
        the slot."""
        return any(
            self.appointment_status.get(a) not in RELEASED
            for a in self.holders.get(slot_id, ())
            if a != ignoring
        )

    def schedule_of(self, slot: Slot) -> Schedule | None:
        if slot.schedule is None or not slot.schedule.startswith("Schedule/"):
            return None
        return self.schedules.get(slot.schedule.removeprefix("Schedule/"))

    def is_free(self, slot: Slot, *, ignoring: str | None = None) -> bool:
        """Free at the source, on an active schedule, and not held by a booking (other than
        the appointment ``ignoring``)."""
        schedule = self.schedule_of(slot)
        active = schedule is None or schedule.active
        return slot.status == "free" and active and not self.held(slot.slot_id, ignoring=ignoring)

    def view(self, slot: Slot) -> SlotView:
        schedule = self.schedule_of(slot)
        actors = schedule.actors if schedule is not None else ()
        services = slot.service_types or (schedule.service_types if schedule else ())
        return SlotView(
            slot_id=slot.slot_id,
            schedule=slot.schedule,
            start=slot.start,
            end=slot.end,
            service_types=list(services),
            practitioners=[a for a in actors if a.startswith("Practitioner/")],
            locations=[a for a in actors if a.startswith("Location/")],
            confidence=slot.confidence,
        )

    def search(self, query: SlotSearch) -> tuple[list[SlotView], bool]:
        """Free slots starting in the query's window that match its filters, soonest first;
        and whether more matched than its limit."""
        wanted_service = query.service_type.casefold() if query.service_type else None
        found: list[SlotView] = []
        order, starts = self._by_start()
        for slot in order[bisect_left(starts, query.start) :]:
            if slot.start >= query.end or len(found) > query.limit:
                break
            if not self.is_free(slot):
                continue
            view = self.view(slot)
            if query.practitioner_id and (
                f"Practitioner/{query.practitioner_id}" not in view.practitioners
            ):
                continue
            if query.location_id and f"Location/{query.location_id}" not in view.locations:
                continue
            if wanted_service and wanted_service not in {s.casefold() for s in view.service_types}:
                continue
            found.append(view)
        return found[: query.limit], len(found) > query.limit
