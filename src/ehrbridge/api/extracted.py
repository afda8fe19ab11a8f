"""The extracted channel (docs/design.md §10): what the agent heard, written at voice confidence.

Every write is one voice event (:meth:`WorldModel.write_voice`) whose source is
``voice:<the key id>``, with the call as its correlation id and the transcript span as its
evidence; the answer is the entity's projected state right after, before any EHR is involved.

**Idempotency.** A request's idempotency key is scoped to the API key that sends it and stored
on its event (as ``api:<key id>:<key>``); the database refuses a second event with the same key.
A retry of the same request is recognised even though it is recorded at another moment: the
event held under the key is read back and compared on what the request says (entity, fields,
level, call, evidence), and the answer is ``duplicate`` with nothing new written. The same key
with different content is an :class:`~ehrbridge.errors.IdempotencyConflict`. A new entity
written with a key gets an id derived from the two keys, so a retry lands on the same entity.

**Transcripts** are ``Call`` entities: the entity id is the call id, the fields ``transcript``,
``call_id``, ``patient`` (a reference, so the call is found with the patient's other entities),
``started_at``, ``ended_at``, ``direction``, ``caller_phone`` and ``language``, at voice confirmed
(0.5). Attaching the same transcript again writes nothing; a longer one replaces it.

**Bookings** are Appointment entities with ``status: booked``, the patient, start and end, and
optionally the practitioner, location, service type, reason and the ``slot`` booked
(``Slot/<id>``; see :mod:`.slots`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from ehrbridge.api.invariants import checked
from ehrbridge.api.models import (
    AppointmentBooking,
    EntityView,
    Evidence,
    ObservationWrite,
    TranscriptAttach,
    WriteResult,
)
from ehrbridge.api.permissions import type_named
from ehrbridge.api.slots import SlotIndex
from ehrbridge.audit import WriteAudit
from ehrbridge.confidence import Level
from ehrbridge.errors import IdempotencyConflict, InvalidInput, NotFound, SlotUnavailable
from ehrbridge.worldmodel.events import Event, new_id
from ehrbridge.worldmodel.matching import normalize_phone
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.projection import EntityState

#: The voice levels by the names the API uses.
LEVELS: Mapping[str, Level] = {
    "confirmed": Level.VOICE_CONFIRMED,
    "mentioned": Level.VOICE_MENTIONED,
    "inferred": Level.VOICE_INFERRED,
}


def level_named(name: str) -> Level:
    """The level an API level name stands for: ``confirmed``, ``mentioned``, ``inferred``, or
    any :class:`Level` name (which the service then refuses unless it is a voice level).

    >>> level_named("mentioned").value
    0.3
    >>> level_named("verified").value
    0.8
    """
    if name in LEVELS:
        return LEVELS[name]
    try:
        return Level.named(name)
    except ValueError:
        raise InvalidInput("level: not a level name") from None


def store_key(agent: str, key: str | None) -> str | None:
    """The idempotency key as stored: scoped to the API key that sent it, so two agents'
    keys never collide, and namespaced so no other writer's keys do."""
    return f"api:{agent}:{key}" if key else None


def derived_id(agent: str, key: str) -> str:
    """The id of a new entity written under idempotency key ``key`` by API key ``agent``: the
    same on every retry.

    >>> derived_id("k1", "call-1:turn-3") == derived_id("k1", "call-1:turn-3")
    True
    >>> derived_id("k1", "x") != derived_id("k2", "x"), len(derived_id("k1", "x"))
    (True, 26)
    """
    return "k" + hashlib.sha256(f"{agent}\0{key}".encode()).hexdigest()[:25]


def evidence_of(evidence: Evidence | None) -> dict[str, Any] | None:
    return evidence.model_dump(exclude_none=True) if evidence is not None else None


async def existing(
    model: WorldModel, entity_type: str, entity_id: str, *, where: str = "entity_id"
) -> EntityState:
    """The entity (a merged one as its survivor); :class:`NotFound` naming the request field
    ``where`` (never the id) when this workspace has no such entity."""
    state = await model.state(entity_type, entity_id)
    if state is not None and state.merged_into:
        state = await model.state(entity_type, state.merged_into)
    if state is None:
        raise NotFound(f"{where}: no such {type_named(entity_type)} in this workspace")
    return state


async def write(
    model: WorldModel,
    entity_type: str,
    entity_id: str,
    data: Mapping[str, Any],
    *,
    level: Level,
    agent: str,
    call_id: str | None,
    evidence: dict[str, Any] | None,
    idempotency_key: str | None,
    audit: WriteAudit,
    slots: SlotIndex,
    names: Mapping[str, str] | None = None,
) -> tuple[Literal["recorded", "duplicate"], Event]:
    """Write one voice event (with ``audit``'s entries in its transaction): the one way the
    agent API writes, so every write keeps :mod:`.invariants` (``names``: how the request
    calls the data's fields, for the errors). A retry under the same idempotency key is a
    duplicate of the event first written, and writes nothing."""
    key = store_key(agent, idempotency_key)
    data = await checked(model, slots, entity_type, entity_id, data, names=names)
    try:
        result = await model.write_voice(
            entity_type,
            entity_id,
            data,
            level=level,
            agent=agent,
            call_id=call_id,
            evidence=evidence,
            idempotency_key=key,
            audit=audit,
        )
    except SlotUnavailable as exc:
        # the store's claim: another booking of the slot committed after the check
        where = names.get("slot", "fields.slot") if names else "fields.slot"
        raise SlotUnavailable(exc.slot, f"{where}: the slot is not free") from None
    except IdempotencyConflict:
        held = await _held(model, entity_type, entity_id, key)
        wanted = (dict(data), level.value, call_id, evidence, agent)
        if held is None or _said(held) != wanted:
            raise
        return "duplicate", held
    status: Literal["recorded", "duplicate"] = (
        "duplicate" if result.status == "duplicate" else "recorded"
    )
    return status, result.events[0]


def _said(event: Event) -> tuple[dict[str, Any], float, str | None, Any, str]:
    evidence = dict(event.evidence) if event.evidence is not None else None
    return dict(event.data), event.confidence, event.correlation_id, evidence, event.source.id


async def _held(
    model: WorldModel, entity_type: str, entity_id: str, key: str | None
) -> Event | None:
    for event in await model.events(entity_type, entity_id):
        if event.idempotency_key == key:
            return event
    return None


async def _result(
    model: WorldModel, status: Literal["recorded", "duplicate"], event: Event
) -> WriteResult:
    state = await model.state(event.entity_type, event.entity_id)
    assert state is not None  # it was just written
    return WriteResult(status=status, event_id=event.id, entity=EntityView.of(state))


async def write_observation(
    model: WorldModel,
    request: ObservationWrite,
    *,
    level: Level,
    agent: str,
    audit: WriteAudit,
    slots: SlotIndex,
) -> WriteResult:
    """Record ``request``'s fields on an existing entity, or on a new one."""
    if request.entity_id is not None:
        entity_id = (await existing(model, request.entity_type, request.entity_id)).entity_id
    elif request.idempotency_key is not None:
        entity_id = derived_id(agent, request.idempotency_key)
    else:
        entity_id = new_id()
    status, event = await write(
        model,
        request.entity_type,
        entity_id,
        request.fields,
        level=level,
        agent=agent,
        call_id=request.call_id,
        evidence=evidence_of(request.evidence),
        idempotency_key=request.idempotency_key,
        audit=audit,
        slots=slots,
    )
    return await _result(model, status, event)


async def attach_transcript(
    model: WorldModel,
    request: TranscriptAttach,
    *,
    agent: str,
    max_chars: int,
    audit: WriteAudit,
    slots: SlotIndex,
) -> WriteResult:
    """Keep a call's transcript as the ``Call`` entity of that call."""
    if len(request.transcript) > max_chars:
        raise InvalidInput(f"transcript: longer than {max_chars} characters")
    data: dict[str, Any] = {"transcript": request.transcript, "call_id": request.call_id}
    if request.patient_id is not None:
        data["patient"] = f"Patient/{request.patient_id}"
    if request.caller_phone is not None:
        phone = normalize_phone(request.caller_phone)
        if phone is None:
            raise InvalidInput("caller_phone: not a phone number")
        data["caller_phone"] = phone
    for name in ("started_at", "ended_at"):
        moment: datetime | None = getattr(request, name)
        if moment is not None:
            data[name] = moment.isoformat()
    if request.direction is not None:
        data["direction"] = request.direction
    if request.language is not None:
        data["language"] = request.language
    digest = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()[:32]
    status, event = await write(
        model,
        "Call",
        request.call_id,
        data,
        level=Level.VOICE_CONFIRMED,
        agent=agent,
        call_id=request.call_id,
        evidence=None,
        idempotency_key=f"transcript:{request.call_id}:{digest}",
        audit=audit,
        slots=slots,
        names=TRANSCRIPT_NAMES,
    )
    return await _result(model, status, event)


#: how a transcript's errors name its fields
TRANSCRIPT_NAMES: Mapping[str, str] = {
    "patient": "patient_id",
    "started_at": "started_at",
    "ended_at": "ended_at",
}
#: how a booking's errors name its fields
BOOKING_NAMES: Mapping[str, str] = {
    "patient": "patient_id",
    "practitioner": "practitioner_id",
    "location": "location_id",
    "slot": "slot_id",
    "start": "start",
    "end": "end",
}


async def book_appointment(
    model: WorldModel,
    request: AppointmentBooking,
    *,
    level: Level,
    agent: str,
    slots: SlotIndex,
    audit: WriteAudit,
) -> WriteResult:
    """Record a booked Appointment at once; with a slot, only if the slot is free (checked by
    :func:`write`, held by the store's claim of the slot)."""
    data: dict[str, Any] = {"status": "booked", "patient": f"Patient/{request.patient_id}"}
    for field, entity_type in (("practitioner", "Practitioner"), ("location", "Location")):
        wanted = getattr(request, f"{field}_id")
        if wanted is not None:
            data[field] = f"{entity_type}/{wanted}"
    key = request.idempotency_key
    entity_id = derived_id(agent, key) if key else new_id()
    start, end = request.start, request.end
    if request.slot_id is not None:
        await existing(model, "Slot", request.slot_id, where="slot_id")
        await slots.refresh(model)
        slot = slots.slots.get(request.slot_id)
        if slot is not None:
            start, end = start or slot.start, end or slot.end
            view = slots.view(slot)
            for field, refs in (("practitioner", view.practitioners), ("location", view.locations)):
                if field not in data and len(refs) == 1:
                    data[field] = refs[0]
        data["slot"] = f"Slot/{request.slot_id}"
    if start is None or end is None:
        raise InvalidInput("start and end: needed when no slot is given")
    data["start"], data["end"] = start.isoformat(), end.isoformat()
    data["minutes_duration"] = max(0, int((end - start).total_seconds() // 60))
    if request.service_type is not None:
        data["service_type"] = request.service_type
    if request.reason is not None:
        data["reason"] = request.reason
    status, event = await write(
        model,
        "Appointment",
        entity_id,
        data,
        level=level,
        agent=agent,
        call_id=request.call_id,
        evidence=evidence_of(request.evidence),
        idempotency_key=request.idempotency_key,
        audit=audit,
        slots=slots,
        names=BOOKING_NAMES,
    )
    return await _result(model, status, event)
