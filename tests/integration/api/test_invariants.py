"""Every agent-API write keeps the same invariants, on every backend (issue 10, defect 3):
references resolve inside the workspace and a slot is booked once, whichever route writes,
and the database holds the second part even for writers that skip every check (two stores on
one database, two processes)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from ehrbridge.api.models import (
    AppointmentBooking,
    ObservationWrite,
    SlotSearch,
    StateRequest,
    TranscriptAttach,
)
from ehrbridge.confidence import Level
from ehrbridge.errors import InvalidInput, NotFound, SlotUnavailable
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.planner import claim_keys
from ehrbridge.worldmodel.store import START, Store
from tests.conftest import POSTGRES_DSN, MakeStore
from tests.integration.api import test_http as test_api_http
from tests.integration.api import test_service as test_api_service
from tests.integration.api.test_http import Api
from tests.integration.api.test_service import DEC_1, Clinic

WS = "clinic"
#: the sample clinic behind the HTTP API, and behind the service
api = test_api_http.api
clinic = test_api_service.clinic


def booked_on(slot_ref: str, **extra: Any) -> dict[str, Any]:
    """The generic write of a booked Appointment on ``slot_ref``."""
    return {
        "entity_type": "Appointment",
        "fields": {"status": "booked", "slot": slot_ref, **extra},
        "level": "confirmed",
    }


# --- through the HTTP API --------------------------------------------------------------------


async def test_the_generic_write_cannot_book_a_taken_slot(api: Api) -> None:
    """The issue's case: /v1/appointments refuses a taken slot (409), and so does
    /v1/observations with an Appointment naming the same slot."""
    slot = api.ids["slot-9001"]
    first = await api.call(
        "POST", "/v1/appointments", {"patient_id": api.ids["pat-1001"], "slot_id": slot}
    )
    assert first.status_code == 201, first.text
    again = await api.call(
        "POST", "/v1/appointments", {"patient_id": api.ids["pat-1002"], "slot_id": slot}
    )
    assert again.status_code == 409
    generic = await api.call(
        "POST",
        "/v1/observations",
        booked_on(f"Slot/{slot}", patient=f"Patient/{api.ids['pat-1002']}"),
    )
    assert generic.status_code == 409, generic.text
    problem = generic.json()
    assert problem["type"] == "urn:ehrbridge:problem:slot-unavailable"
    assert problem["detail"] == "fields.slot: the slot is not free"
    assert slot not in generic.text
    # the other way round: a slot taken through the generic write is taken for bookings too
    other = api.ids["slot-9003"]
    taken = await api.call("POST", "/v1/observations", booked_on(f"Slot/{other}"))
    assert taken.status_code == 200, taken.text
    refused = await api.call(
        "POST", "/v1/appointments", {"patient_id": api.ids["pat-1003"], "slot_id": other}
    )
    assert refused.status_code == 409
    assert refused.json()["detail"] == "slot_id: the slot is not free"
    # and a busy slot (at the EHR) cannot be taken through the generic write either
    busy = await api.call("POST", "/v1/observations", booked_on(f"Slot/{api.ids['slot-9002']}"))
    assert busy.status_code == 409


async def test_a_generic_write_refers_only_to_entities_of_its_workspace(api: Api) -> None:
    rival_maria = api.other_ids["pat-1001"]
    for ref in (f"Patient/{rival_maria}", "Patient/nobody-at-all"):
        answer = await api.call(
            "POST",
            "/v1/observations",
            {"entity_type": "Appointment", "fields": {"patient": ref}, "level": "confirmed"},
        )
        assert answer.status_code == 404, answer.text
        assert answer.json()["detail"] == "fields.patient: no such Patient in this workspace"
        assert ref.split("/")[1] not in answer.text
    wrong_type = await api.call(
        "POST",
        "/v1/observations",
        {
            "entity_type": "Appointment",
            "fields": {"patient": f"Practitioner/{api.ids['prac-2001']}"},
            "level": "confirmed",
        },
    )
    assert wrong_type.status_code == 422
    assert wrong_type.json()["detail"] == "fields.patient: expected a reference 'Patient/<id>'"
    own = await api.call(
        "POST",
        "/v1/observations",
        {
            "entity_type": "Appointment",
            "fields": {"patient": f"Patient/{api.ids['pat-1001']}"},
            "level": "confirmed",
        },
    )
    assert own.status_code == 200, own.text


# --- through the service ---------------------------------------------------------------------


async def test_every_write_path_checks_references(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    rival = clinic.other_ids["pat-1001"]
    with pytest.raises(NotFound, match=r"^patient_id: no such Patient"):
        await svc.attach_transcript(
            agent, TranscriptAttach(call_id="call-x", transcript="hello", patient_id=rival)
        )
    with pytest.raises(NotFound, match=r"^practitioner_id: no such Practitioner"):
        await svc.book_appointment(
            agent,
            AppointmentBooking(
                patient_id=clinic.ids["pat-1001"],
                slot_id=clinic.ids["slot-9001"],
                practitioner_id=clinic.other_ids["prac-2001"],
            ),
        )
    with pytest.raises(NotFound, match=r"^fields.location: no such Location"):
        await svc.write_observation(
            agent,
            ObservationWrite(
                entity_type="Appointment",
                fields={"location": "Location/elsewhere"},
                level="confirmed",
            ),
        )
    # nothing was written by any of them, and the slot is still free
    week = SlotSearch(start=DEC_1, end=DEC_1 + timedelta(days=7))
    free = {s.slot_id for s in (await svc.search_slots(agent, week)).items}
    assert clinic.ids["slot-9001"] in free


async def test_cancelling_releases_the_slot_and_rebooking_it_is_checked(
    clinic: Clinic, store: Store
) -> None:
    svc, agent = clinic.service, clinic.agent()
    slot = clinic.ids["slot-9004"]
    first = await svc.book_appointment(
        agent, AppointmentBooking(patient_id=clinic.ids["pat-1001"], slot_id=slot)
    )
    with pytest.raises(SlotUnavailable):
        await svc.book_appointment(
            agent, AppointmentBooking(patient_id=clinic.ids["pat-1002"], slot_id=slot)
        )
    await svc.write_observation(
        agent,
        ObservationWrite(
            entity_type="Appointment",
            entity_id=first.appointment_id,
            fields={"status": "cancelled"},
            level="confirmed",
        ),
    )
    second = await svc.book_appointment(
        agent, AppointmentBooking(patient_id=clinic.ids["pat-1002"], slot_id=slot)
    )
    # the first appointment cannot take its slot back: the second holds it now
    with pytest.raises(SlotUnavailable):
        await svc.write_observation(
            agent,
            ObservationWrite(
                entity_type="Appointment",
                entity_id=first.appointment_id,
                fields={"status": "booked"},
                level="confirmed",
            ),
        )
    # a rebuild recomputes the claims from the log: the slot stays the second's
    await store.rebuild(WS)
    model = WorldModel(store, WS)
    with pytest.raises(SlotUnavailable):
        await model.write_voice(
            "Appointment",
            first.appointment_id,
            {"status": "booked"},
            level=Level.VOICE_CONFIRMED,
            agent="raw",
        )
    state = await model.state("Appointment", second.appointment_id)
    assert state is not None and claim_keys("Appointment", state.values) == {f"Slot/{slot}"}


async def test_a_time_range_written_backwards_is_refused(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    cases: list[tuple[dict[str, JsonValue], str]] = [
        (
            {"start": "2026-12-04T10:00:00Z", "end": "2026-12-04T09:00:00Z"},
            "fields.end: must be after fields.start",
        ),
        (
            {"period.start": "2026-12-04", "period.end": "2026-12-03"},
            "fields.period.end: must be at or after fields.period.start",
        ),
    ]
    for fields, message in cases:
        with pytest.raises(InvalidInput) as refused:
            await svc.write_observation(
                agent,
                ObservationWrite(entity_type="Appointment", fields=fields, level="confirmed"),
            )
        assert str(refused.value) == message
    appointment = clinic.ids["appt-4004"]
    state = await svc.entity_state(
        agent, StateRequest(entity_type="Appointment", entity_id=appointment)
    )
    start = state.fields["start"].value
    assert isinstance(start, str)
    # an end before the start the entity already has
    with pytest.raises(InvalidInput, match=r"^fields.end: must be after fields.start"):
        await svc.write_observation(
            agent,
            ObservationWrite(
                entity_type="Appointment",
                entity_id=appointment,
                fields={"end": "2000-01-01T00:00:00Z"},
                level="confirmed",
            ),
        )


# --- the database holds it: writers that check nothing ---------------------------------------


async def test_two_stores_on_one_database_claim_a_slot_once(
    clinic: Clinic, make_store: MakeStore
) -> None:
    """Writers straight to the world model (no API check, no slot index): each of 4 slots is
    claimed by two stores at once, many rounds; exactly one Appointment holds each."""
    stores = [await make_store(), await make_store()]
    models = [WorldModel(s, WS) for s in stores]
    slots = [clinic.ids[f"slot-900{n}"] for n in (1, 3, 4, 5)]

    async def claim(model: WorldModel, slot: str, n: int) -> bool:
        try:
            await model.write_voice(
                "Appointment",
                f"raw-{n}-{slot}",
                {"status": "booked", "slot": f"Slot/{slot}"},
                level=Level.VOICE_CONFIRMED,
                agent=f"writer-{n}",
            )
        except SlotUnavailable:
            return False
        return True

    outcomes = await asyncio.gather(
        *(claim(m, slot, n) for slot in slots for n, m in enumerate(models))
    )
    assert sum(outcomes) == len(slots)
    for slot in slots:
        held = [
            n
            for n, m in enumerate(models)
            if await m.state("Appointment", f"raw-{n}-{slot}") is not None
        ]
        assert len(held) == 1, slot  # the loser wrote nothing, not even its entity


WRITER = """
import asyncio, json, sys
from ehrbridge.api.models import AppointmentBooking, ObservationWrite
from ehrbridge.api.store import Principal
from ehrbridge.api.service import AgentService
from ehrbridge.errors import SlotUnavailable

async def main(how, url, schema, slots, patient, go):
    from ehrbridge.storage import open_backend
    backend = await open_backend(url, **({"schema": schema} if schema else {}))
    service = AgentService.on_store(backend.worldmodel, backend.security)
    agent = Principal(workspace="clinic", key_id=f"key-{how}", role="agent")
    await service.warm_slots(["clinic"])
    import os, time
    while not os.path.exists(go):
        time.sleep(0.01)
    won = []
    for slot in slots:
        try:
            if how == "book":
                await service.book_appointment(
                    agent, AppointmentBooking(patient_id=patient, slot_id=slot))
            else:
                await service.write_observation(agent, ObservationWrite(
                    entity_type="Appointment", level="confirmed",
                    fields={"status": "booked", "slot": f"Slot/{slot}",
                            "patient": f"Patient/{patient}"}))
            won.append(slot)
        except SlotUnavailable:
            pass
    await backend.close()
    print(json.dumps(won))

asyncio.run(main(*sys.argv[1:4], json.loads(sys.argv[4]), *sys.argv[5:7]))
"""


async def test_two_processes_through_both_routes_book_each_slot_once(
    clinic: Clinic, store: Store, tmp_path: Path
) -> None:
    """Two API processes at once, one booking through /v1/appointments' operation, the other
    through the generic write, the same free slots in the same order: each slot is booked once
    and the winners are exactly the slots the log shows held."""
    if isinstance(store, SQLiteStore):
        url, schema = f"sqlite:///{store.path}", ""
    else:
        assert isinstance(store, PostgresStore) and store.schema
        url, schema = POSTGRES_DSN, store.schema
    slots = [clinic.ids[f"slot-900{n}"] for n in (1, 3, 4, 5)]
    go = tmp_path / "go"
    processes = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", WRITER, how, url, schema, json.dumps(slots)),
            *(clinic.ids[patient], str(go)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for how, patient in (("book", "pat-1001"), ("observe", "pat-1002"))
    ]
    go.touch()  # both started: they book as soon as each has warmed its slot index
    won: list[str] = []
    for process in processes:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        won += json.loads(out)
    assert sorted(won) == sorted(slots)  # every slot won once, by one of the two
    model = WorldModel(store, WS)
    page = await store.read_log(WS, START, 10_000, entity_types={"Appointment"})
    holding: dict[str, list[str]] = {}
    for entity_id in sorted({e.entity_id for e in page.events}):
        state = await model.state("Appointment", entity_id)
        assert state is not None
        for claim in claim_keys("Appointment", state.values):
            holding.setdefault(claim, []).append(entity_id)
    assert {ref: len(ids) for ref, ids in holding.items()} == {f"Slot/{s}": 1 for s in slots}


# --- the class: any sequence of writes through both routes ------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["book", "observe", "cancel", "rebook"]),
        st.sampled_from(["slot-9001", "slot-9002", "slot-9003", "slot-9004"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS)
async def test_any_sequence_of_writes_books_each_slot_at_most_once(
    clinic: Clinic, store: Store, operations: list[tuple[str, str]]
) -> None:
    """Bookings, generic writes naming a slot, cancellations and cancelled appointments taking
    their slot back, in any order: a write succeeds exactly when the slot is free at its source
    and held by nobody, and afterwards no slot has two holders."""
    svc, agent = clinic.service, clinic.agent()
    model = WorldModel(store, WS)
    mine: list[str] = []  # appointments this example wrote, oldest first
    for how, name in operations:
        slot = clinic.ids[name]
        ref = f"Slot/{slot}"
        holders = {
            a
            for a in mine
            if (state := await model.state("Appointment", a)) is not None
            and ref in claim_keys("Appointment", state.values)
        }
        already = {
            entity_id
            for entity_id in {e.entity_id for e in (await store.read_log(WS, START, 10_000)).events}
            if (state := await model.state("Appointment", entity_id)) is not None
            and ref in claim_keys("Appointment", state.values)
        }
        takeable = name != "slot-9002" and not already
        try:
            if how == "book":
                done = await svc.book_appointment(
                    agent, AppointmentBooking(patient_id=clinic.ids["pat-1001"], slot_id=slot)
                )
                mine.append(done.appointment_id)
            elif how == "observe":
                result = await svc.write_observation(
                    agent,
                    ObservationWrite(
                        entity_type="Appointment",
                        fields={"status": "booked", "slot": ref},
                        level="confirmed",
                    ),
                )
                mine.append(result.entity.entity_id)
            elif how == "cancel":
                for appointment in holders:
                    await svc.write_observation(
                        agent,
                        ObservationWrite(
                            entity_type="Appointment",
                            entity_id=appointment,
                            fields={"status": "cancelled"},
                            level="confirmed",
                        ),
                    )
                continue
            else:
                # a cancelled appointment of this slot takes it back
                cancelled = [
                    a
                    for a in mine
                    if a not in holders
                    and (state := await model.state("Appointment", a)) is not None
                    and state.values.get("slot") == ref
                ]
                if not cancelled:
                    continue
                await svc.write_observation(
                    agent,
                    ObservationWrite(
                        entity_type="Appointment",
                        entity_id=cancelled[0],
                        fields={"status": "booked", "slot": ref},
                        level="confirmed",
                    ),
                )
            assert takeable, (how, name)
        except SlotUnavailable:
            assert not takeable, (how, name)
    claims: dict[str, int] = {}
    for entity_id in {e.entity_id for e in (await store.read_log(WS, START, 10_000)).events}:
        state = await model.state("Appointment", entity_id)
        for claim in claim_keys("Appointment", state.values) if state is not None else ():
            claims[claim] = claims.get(claim, 0) + 1
    assert all(n == 1 for n in claims.values()), claims
    # leave the clinic as the next example expects it: every slot released
    for entity_id in {e.entity_id for e in (await store.read_log(WS, START, 10_000)).events}:
        state = await model.state("Appointment", entity_id)
        if state is not None and claim_keys("Appointment", state.values):
            await model.write_voice(
                "Appointment",
                entity_id,
                {"status": "cancelled"},
                level=Level.VOICE_CONFIRMED,
                agent="cleanup",
            )
