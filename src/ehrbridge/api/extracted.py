"""The extracted channel (DESIGN §10): what the agent heard, written at voice confidence.

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

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import uuid4

from ehrbridge.api.models import (
    AppointmentBooking,
    EntityView,
    Evidence,
    ObservationWrite,
    TranscriptAttach,
    WriteResult,
)
from ehrbridge.api.slots import SlotIndex
from ehrbridge.audit import WriteAudit
from ehrbridge.confidence import Level
from ehrbridge.errors import IdempotencyConflict, InvalidInput, NotFound, SlotUnavailable
from ehrbridge.runner.storage import open_runner_store
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
        raise InvalidInput(f"level: unknown level {name[:32]!r}") from None


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


async def existing(model: WorldModel, entity_type: str, entity_id: str) -> EntityState:
    """The entity (a merged one as its survivor); :class:`NotFound` when this workspace has no
    such entity."""
    state = await model.state(entity_type, entity_id)
    if state is not None and state.merged_into:
        state = await model.state(entity_type, state.merged_into)
    if state is None:
        raise NotFound(f"no {entity_type}/{entity_id}")
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
) -> tuple[Literal["recorded", "duplicate"], Event]:
    """Write one voice event (with ``audit``'s entries in its transaction); a retry under the
    same idempotency key is a duplicate of the event first written, and writes nothing."""
    key = store_key(agent, idempotency_key)
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
    )
    return await _result(model, status, event)


async def attach_transcript(
    model: WorldModel,
    request: TranscriptAttach,
    *,
    agent: str,
    max_chars: int,
    audit: WriteAudit,
) -> WriteResult:
    """Keep a call's transcript as the ``Call`` entity of that call."""
    if len(request.transcript) > max_chars:
        raise InvalidInput(f"transcript: longer than {max_chars} characters")
    data: dict[str, Any] = {"transcript": request.transcript, "call_id": request.call_id}
    if request.patient_id is not None:
        patient = await existing(model, "Patient", request.patient_id)
        data["patient"] = f"Patient/{patient.entity_id}"
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
    )
    return await _result(model, status, event)


#: how long a booking may hold its slot's claim (a process that dies holding it lets go then)
CLAIM_TTL = timedelta(seconds=30)
#: how long a booking waits for another process's booking of the same slot to finish
CLAIM_WAIT = 5.0


@asynccontextmanager
async def _claimed(model: WorldModel, slot_id: str | None) -> AsyncIterator[None]:
    """Across processes, one booking of a slot at a time: a lease ``book:Slot/<id>`` on the
    shared database around the check and the write (the slot index's lock covers one process).
    The booking that waits then reads the other's Appointment and finds the slot taken."""
    if slot_id is None:
        yield
        return
    leases = open_runner_store(model.store)
    name, holder = f"book:Slot/{slot_id}", uuid4().hex
    deadline = asyncio.get_running_loop().time() + CLAIM_WAIT
    while await leases.acquire(model.workspace, name, holder, CLAIM_TTL) is None:
        if asyncio.get_running_loop().time() > deadline:
            raise SlotUnavailable(f"Slot/{slot_id}", f"Slot/{slot_id} is being booked by a call")
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        await leases.release(model.workspace, name, holder)


async def book_appointment(
    model: WorldModel,
    request: AppointmentBooking,
    *,
    level: Level,
    agent: str,
    slots: SlotIndex,
    audit: WriteAudit,
) -> WriteResult:
    """Record a booked Appointment at once; with a slot, only if the slot is free."""
    patient = await existing(model, "Patient", request.patient_id)
    data: dict[str, Any] = {"status": "booked", "patient": f"Patient/{patient.entity_id}"}
    for field, entity_type in (("practitioner", "Practitioner"), ("location", "Location")):
        wanted = getattr(request, f"{field}_id")
        if wanted is not None:
            data[field] = f"{entity_type}/{(await existing(model, entity_type, wanted)).entity_id}"
    key = request.idempotency_key
    entity_id = derived_id(agent, key) if key else new_id()
    async with slots.booking, _claimed(model, request.slot_id):
        start, end = request.start, request.end
        if request.slot_id is not None:
            await slots.refresh(model)
            slot = slots.slots.get(request.slot_id)
            ref = f"Slot/{request.slot_id}"
            if slot is None:
                raise NotFound(f"no {ref}")
            if not slots.is_free(slot, ignoring=entity_id):
                raise SlotUnavailable(ref)
            start, end = start or slot.start, end or slot.end
            if (start, end) != (slot.start, slot.end):
                raise InvalidInput("start and end: not the slot's")
            data["slot"] = ref
            view = slots.view(slot)
            for field, refs in (("practitioner", view.practitioners), ("location", view.locations)):
                if field not in data and len(refs) == 1:
                    data[field] = refs[0]
        if start is None or end is None:
            raise InvalidInput("start and end: needed when no slot is given")
        if end <= start:
            raise InvalidInput("end: must be after start")
        data["start"], data["end"] = start.isoformat(), end.isoformat()
        data["minutes_duration"] = int((end - start).total_seconds() // 60)
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
        )
    return await _result(model, status, event)
