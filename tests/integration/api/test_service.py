"""The agent service over the real world model, on every backend: the ambient, queried and
extracted channels, roles and write scope, workspace isolation, and the audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ehrbridge.api.models import (
    AmbientRequest,
    AppointmentBooking,
    BookingConfirmation,
    EntitySearch,
    Evidence,
    ObservationWrite,
    PatientSearch,
    SlotSearch,
    StateRequest,
    TimelineRequest,
    TranscriptAttach,
)
from ehrbridge.api.service import AgentService
from ehrbridge.api.store import AuditEntry, AuditLog, Principal, Role
from ehrbridge.errors import (
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SlotUnavailable,
)
from ehrbridge.fhir.importer import Importer
from ehrbridge.sample import SAMPLE_SOURCE, sample_bundle
from ehrbridge.storage import Backend
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.events import Observation, RecordKey
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store
from tests.conftest import MakeBackend
from tests.paths import FIXTURES

WS = "clinic"
OTHER = "rival"
SLOTS = FIXTURES / "api" / "schedule-slots.json"
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)


class StoredAudit:
    """The store's audit trail (a write stores its entries in its own transaction), read back
    oldest first."""

    def __init__(self, security: AuditLog) -> None:
        self.security = security

    async def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        await self.security.record_audit(entries)

    async def query_audit(self, workspace: str, **filters: Any) -> list[AuditEntry]:
        return await self.security.query_audit(workspace, **filters)

    async def all(self) -> list[AuditEntry]:
        """Every entry, of both workspaces."""
        return [
            e
            for workspace in (WS, OTHER)
            for e in reversed(await self.security.query_audit(workspace, limit=10_000))
        ]

    async def of(self, action: str) -> list[AuditEntry]:
        return [e for e in await self.all() if e.action == action]


@dataclass
class Clinic:
    service: AgentService
    audit: StoredAudit
    ids: dict[str, str]  #: sample external id -> entity id, in WS
    other_ids: dict[str, str]  #: the same in OTHER
    clock: FakeClock

    def agent(self, workspace: str = WS, **kw: Any) -> Principal:
        return principal("agent", workspace, **kw)


def principal(role: Role, workspace: str = WS, **kw: Any) -> Principal:
    return Principal(workspace=workspace, key_id=f"key-{role}-{workspace}", role=role, **kw)


async def _import(store: Store, workspace: str, paths: list[Path]) -> dict[str, str]:
    model = WorldModel(store, workspace)
    importer = Importer(model, source=SAMPLE_SOURCE)
    for path in paths:
        report = await importer.import_paths([path])
        assert not report.errors
    keys = [
        RecordKey(data_source=SAMPLE_SOURCE, resource_type=t, external_id=i)
        for t, i in [
            *[("Patient", f"pat-100{n}") for n in range(1, 7)],
            ("Practitioner", "prac-2001"),
            ("Practitioner", "prac-2003"),
            ("Location", "loc-3001"),
            ("Location", "loc-3002"),
            ("Appointment", "appt-4004"),
            *[("Slot", f"slot-900{n}") for n in range(1, 7)],
        ]
    ]
    found = await store.record_entities(workspace, keys)
    return {k.external_id: found[k][1] for k in keys if k in found}


@pytest.fixture
async def clinic(store: Store, backend: Backend, clock: FakeClock) -> Clinic:
    ids = await _import(store, WS, [sample_bundle(), SLOTS])
    other_ids = await _import(store, OTHER, [sample_bundle()])
    audit = StoredAudit(backend.security)
    return Clinic(
        service=AgentService.on_store(store, audit, clock=clock),
        audit=audit,
        ids=ids,
        other_ids=other_ids,
        clock=clock,
    )


# --- ambient -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dialled", ["+16175550142", "(617) 555-0142", "617.555.0142", "1 617 555 0142"]
)
async def test_ambient_identifies_the_caller_however_the_number_was_dialled(
    clinic: Clinic, dialled: str
) -> None:
    answer = await clinic.service.ambient_context(clinic.agent(), AmbientRequest(phone=dialled))
    assert answer.match == "matched"
    assert answer.phone == "+16175550142"
    assert answer.context is not None
    assert answer.context.patient.entity_id == clinic.ids["pat-1001"]


async def test_ambient_context_carries_values_with_confidence_and_source(clinic: Clinic) -> None:
    answer = await clinic.service.ambient_context(
        clinic.agent(), AmbientRequest(phone="+16175550142")
    )
    ctx = answer.context
    assert ctx is not None
    family = ctx.patient.fields["name.family"]
    assert (family.value, family.confidence) == ("Santos", 1.0)
    assert (family.source.kind, family.source.id) == ("ehr", SAMPLE_SOURCE)
    assert family.source.ref == "Patient/pat-1001"
    assert [a.entity_id for a in ctx.upcoming_appointments] == [clinic.ids["appt-4004"]]
    assert len(ctx.recent_encounters) == 1
    assert len(ctx.active_medications) == 1
    assert len(ctx.coverage) == 1
    assert ctx.pending == []
    chen = f"Practitioner/{clinic.ids['prac-2001']}"
    assert ctx.labels[chen] == "Dr Emily Chen"
    assert "Santos" in answer.prompt
    assert "Dr Emily Chen" in answer.prompt
    assert not answer.truncated


async def test_ambient_context_shows_a_pending_voice_fact(clinic: Clinic) -> None:
    maria = clinic.ids["pat-1001"]
    await clinic.service.write_observation(
        clinic.agent(),
        ObservationWrite(
            entity_type="Patient",
            entity_id=maria,
            fields={"phone.mobile": "+16175550199"},
            level="confirmed",
            call_id="call-1",
            evidence=Evidence(transcript_span="my new cell is 617 555 0199"),
        ),
    )
    answer = await clinic.service.ambient_context(
        clinic.agent(), AmbientRequest(phone="617-555-0142")
    )
    assert answer.context is not None
    (fact,) = answer.context.pending
    assert (fact.entity, fact.field) == (f"Patient/{maria}", "phone.mobile")
    assert (fact.value.value, fact.value.confidence) == ("+16175550199", 0.5)
    assert fact.value.source.kind == "voice"
    assert "+16175550199 (voice 0.5, unverified)" in answer.prompt


async def test_ambient_prompt_keeps_to_the_budget(clinic: Clinic) -> None:
    answer = await clinic.service.ambient_context(
        clinic.agent(), AmbientRequest(phone="+16175550142", prompt_budget=400)
    )
    assert len(answer.prompt) <= 400
    assert answer.truncated
    assert "Santos" in answer.prompt


async def test_unknown_caller_is_no_match(clinic: Clinic) -> None:
    answer = await clinic.service.ambient_context(
        clinic.agent(), AmbientRequest(phone="+14155550100")
    )
    assert (answer.match, answer.context, answer.candidates) == ("no_match", None, [])
    assert "matches no patient" in answer.prompt
    (entry,) = await clinic.audit.of("ambient.context")
    assert (entry.outcome, entry.entity_id) == ("ok", None)


async def test_shared_number_gives_candidates_without_context(clinic: Clinic, store: Store) -> None:
    model = WorldModel(store, WS)
    await model.ingest(
        [
            Observation(
                workspace=WS,
                record=RecordKey(data_source="ehr2", resource_type="Patient", external_id="x1"),
                entity_type="Patient",
                data={
                    "name.family": "Cohen",
                    "name.given": ["Miriam"],
                    "birth_date": "1962-02-02",
                    "phone.home": "+16175550177",
                },
                effective_at=clinic.clock.now,
            )
        ],
        resolve=False,
    )
    answer = await clinic.service.ambient_context(
        clinic.agent(), AmbientRequest(phone="(617) 555-0177")
    )
    assert answer.match == "ambiguous"
    assert answer.context is None
    assert sorted((c.given_name, c.birth_year) for c in answer.candidates) == [
        ("David", "1990"),
        ("Miriam", "1962"),
    ]
    assert "1990-06-21" not in answer.prompt
    entries = await clinic.audit.of("ambient.context")
    assert len(entries) == 2
    assert {e.entity_type for e in entries} == {"Patient"}
    assert all(e.phi for e in entries)


async def test_invalid_phone_is_refused_and_audited(clinic: Clinic) -> None:
    with pytest.raises(InvalidInput, match="not a phone number"):
        await clinic.service.ambient_context(clinic.agent(), AmbientRequest(phone="hello"))
    (entry,) = await clinic.audit.of("ambient.context")
    assert entry.outcome == "invalid"


async def test_ambient_audits_every_entity_read(clinic: Clinic) -> None:
    await clinic.service.ambient_context(
        clinic.agent(), AmbientRequest(phone="+16175550142"), request_id="r1", channel="mcp"
    )
    entries = await clinic.audit.of("ambient.context")
    read = {(e.entity_type, e.entity_id) for e in entries}
    assert ("Patient", clinic.ids["pat-1001"]) in read
    assert ("Appointment", clinic.ids["appt-4004"]) in read
    assert {t for t, _ in read} == {
        "Patient",
        "Appointment",
        "Encounter",
        "MedicationOrder",
        "InsurancePlan",
        "Practitioner",
        "Location",
    }
    assert all(e.request_id == "r1" and e.details["channel"] == "mcp" for e in entries)
    assert all(e.key_id == "key-agent-clinic" and e.workspace == WS for e in entries)
    phi = {e.entity_type: e.phi for e in entries}
    assert phi["Patient"] and phi["MedicationOrder"]
    assert not phi["Practitioner"] and not phi["Location"]


# --- queried -----------------------------------------------------------------------------------


async def test_entity_search_by_name_words_phone_and_identifier(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    santos = await svc.search_entities(agent, EntitySearch(entity_type="Patient", text="santos"))
    assert {s.entity_id for s in santos.items} == {clinic.ids["pat-1001"], clinic.ids["pat-1003"]}
    sofia = await svc.search_entities(agent, EntitySearch(text="Sofia SANTOS"))
    assert [s.entity_id for s in sofia.items] == [clinic.ids["pat-1003"]]
    by_phone = await svc.search_entities(agent, EntitySearch(phone="617 555 0100"))
    assert {s.entity_type for s in by_phone.items} == {"Practitioner", "Location"}
    by_npi = await svc.search_entities(agent, EntitySearch(identifier="1902847361"))
    assert [s.entity_id for s in by_npi.items] == [clinic.ids["prac-2001"]]
    capped = await svc.search_entities(agent, EntitySearch(text="santos", limit=1))
    assert len(capped.items) == 1 and capped.truncated
    with pytest.raises(InvalidInput):
        await svc.search_entities(agent, EntitySearch(entity_type="Patient"))
    entries = await clinic.audit.of("entities.search")
    assert [e.outcome for e in entries].count("invalid") == 1
    # Two Santos searches found pat-1003; the capped one found whichever of the two sorts first
    # (entity ids are random), and only that one is audited.
    capped_1003 = int(capped.items[0].entity_id == clinic.ids["pat-1003"])
    assert len([e for e in entries if e.entity_id == clinic.ids["pat-1003"]]) == 2 + capped_1003
    assert [e for e in entries if e.outcome != "invalid"][-1].entity_id == capped.items[0].entity_id


async def test_patient_search_audits_one_entry_per_patient(clinic: Clinic) -> None:
    found = await clinic.service.search_patients(
        clinic.agent(), PatientSearch(birth_date="1990-06-21")
    )
    assert {p.entity_id for p in found.items} == {clinic.ids["pat-1004"], clinic.ids["pat-1005"]}
    entries = await clinic.audit.of("patients.search")
    assert sorted(str(e.entity_id) for e in entries) == sorted(p.entity_id for p in found.items)
    assert all(e.phi and e.outcome == "ok" for e in entries)
    nobody = await clinic.service.search_patients(clinic.agent(), PatientSearch(name="Nobody"))
    assert nobody.items == []
    assert (await clinic.audit.of("patients.search"))[-1].details["results"] == "0"


async def test_timeline_and_state_as_of(clinic: Clinic) -> None:
    maria = clinic.ids["pat-1001"]
    before = clinic.clock.now
    clinic.clock.advance(timedelta(hours=1))
    await clinic.service.write_observation(
        clinic.agent(),
        ObservationWrite(
            entity_type="Patient",
            entity_id=maria,
            fields={"language": "pt"},
            level="mentioned",
            call_id="call-7",
            evidence=Evidence(transcript_span="I'd rather speak Portuguese", speaker="caller"),
        ),
    )
    timeline = await clinic.service.entity_timeline(
        clinic.agent(), TimelineRequest(entity_type="Patient", entity_id=maria)
    )
    assert [e.source.kind for e in timeline.events] == ["ehr", "voice"]
    voice = timeline.events[-1]
    assert (voice.confidence, voice.correlation_id, voice.fields) == (0.3, "call-7", ["language"])
    assert voice.evidence == {
        "transcript_span": "I'd rather speak Portuguese",
        "speaker": "caller",
    }
    assert voice.recorded_at == clinic.clock.now
    assert timeline.next_version is None
    first = await clinic.service.entity_timeline(
        clinic.agent(), TimelineRequest(entity_type="Patient", entity_id=maria, limit=1)
    )
    assert (len(first.events), first.next_version) == (1, 1)

    now = await clinic.service.entity_state(
        clinic.agent(), StateRequest(entity_type="Patient", entity_id=maria)
    )
    assert now.fields["language"].value == "es"  # the EHR's 1.0 value wins
    assert [p.value for p in now.pending["language"]] == ["pt"]
    then = await clinic.service.entity_state(
        clinic.agent(), StateRequest(entity_type="Patient", entity_id=maria, as_of=before)
    )
    assert (then.version, then.pending) == (1, {})
    assert {e.action for e in await clinic.audit.all()} >= {"entities.timeline", "entities.state"}


async def test_free_slots_in_a_window_with_filters(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    week = SlotSearch(start=DEC_1, end=DEC_1 + timedelta(days=7))
    found = await svc.search_slots(agent, week)
    assert [s.slot_id for s in found.items] == [
        clinic.ids["slot-9001"],
        clinic.ids["slot-9003"],
        clinic.ids["slot-9004"],
    ]
    first = found.items[0]
    assert first.practitioners == [f"Practitioner/{clinic.ids['prac-2001']}"]
    assert first.locations == [f"Location/{clinic.ids['loc-3001']}"]
    assert first.service_types == ["Family medicine"]
    assert first.end - first.start == timedelta(minutes=30)
    assert found.items[1].service_types == ["General practice"]
    nair = await svc.search_slots(
        agent, week.model_copy(update={"practitioner_id": clinic.ids["prac-2003"]})
    )
    assert [s.slot_id for s in nair.items] == [clinic.ids["slot-9004"]]
    gp = await svc.search_slots(agent, week.model_copy(update={"service_type": "general PRACTICE"}))
    assert [s.slot_id for s in gp.items] == [clinic.ids["slot-9003"]]
    quincy = await svc.search_slots(
        agent, week.model_copy(update={"location_id": clinic.ids["loc-3002"]})
    )
    assert [s.slot_id for s in quincy.items] == [clinic.ids["slot-9004"]]
    entries = await clinic.audit.of("slots.search")
    assert all(e.entity_type == "Slot" and not e.phi for e in entries)
    assert len(entries) == 3 + 1 + 1 + 1


# --- extracted ---------------------------------------------------------------------------------


async def test_write_to_a_new_entity_and_an_existing_one(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    new = await svc.write_observation(
        agent,
        ObservationWrite(
            entity_type="Patient",
            fields={"name.family": "Moreau", "name.given": ["Claire"], "birth_date": "1979-04-02"},
            level="confirmed",
            call_id="call-2",
        ),
    )
    assert new.status == "recorded"
    assert new.entity.fields["name.family"].confidence == 0.5
    assert new.entity.fields["name.family"].source.kind == "voice"
    assert new.entity.fields["name.family"].source.id == agent.key_id
    again = await svc.write_observation(
        agent,
        ObservationWrite(
            entity_type="Patient",
            entity_id=new.entity.entity_id,
            fields={"email": "claire@example.com"},
            level="inferred",
        ),
    )
    assert again.entity.entity_id == new.entity.entity_id
    assert again.entity.fields["email"].confidence == 0.2
    assert again.entity.version == 2
    entries = await clinic.audit.of("observations.write")
    assert [(e.entity_id, e.outcome, e.phi) for e in entries] == [
        (new.entity.entity_id, "ok", True),
        (new.entity.entity_id, "ok", True),
    ]


async def test_a_retried_write_is_recorded_once(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    request = ObservationWrite(
        entity_type="Patient",
        fields={"name.family": "Brandt", "name.given": ["Ola"]},
        level="confirmed",
        call_id="call-3",
        evidence=Evidence(transcript_span="it's Ola Brandt"),
        idempotency_key="call-3:turn-4",
    )
    first = await svc.write_observation(agent, request)
    clinic.clock.advance()
    second = await svc.write_observation(agent, request)
    assert (first.status, second.status) == ("recorded", "duplicate")
    assert second.entity.entity_id == first.entity.entity_id
    assert second.event_id == first.event_id
    assert second.entity.version == 1
    # another API key's idempotency keys are its own: the same key writes its own entity
    colleague = Principal(workspace=WS, key_id="key-agent-2", role="agent")
    theirs = await svc.write_observation(colleague, request)
    assert theirs.status == "recorded"
    assert theirs.entity.entity_id != first.entity.entity_id
    existing = request.model_copy(
        update={"entity_id": clinic.ids["pat-1001"], "idempotency_key": "call-3:turn-5"}
    )
    await svc.write_observation(agent, existing.model_copy(update={"fields": {"language": "en"}}))
    clinic.clock.advance()
    retry = await svc.write_observation(
        agent, existing.model_copy(update={"fields": {"language": "en"}})
    )
    assert retry.status == "duplicate"
    with pytest.raises(IdempotencyConflict):
        await svc.write_observation(
            agent, existing.model_copy(update={"fields": {"language": "fr"}})
        )
    assert (await clinic.audit.of("observations.write"))[-1].outcome == "invalid"


async def test_writing_outside_the_write_scope_is_denied_and_audited(clinic: Clinic) -> None:
    request = ObservationWrite(
        entity_type="MedicationOrder",
        fields={"status": "stopped"},
        level="confirmed",
    )
    with pytest.raises(PermissionDenied, match="outside its write scope"):
        await clinic.service.write_observation(clinic.agent(), request)
    (entry,) = await clinic.audit.of("observations.write")
    assert (entry.outcome, entry.entity_type) == ("denied", "MedicationOrder")
    # a narrower scope: this key may write calls only
    calls_only = clinic.agent(write_types=frozenset({"Call"}))
    with pytest.raises(PermissionDenied):
        await clinic.service.book_appointment(
            calls_only,
            AppointmentBooking(
                patient_id=clinic.ids["pat-1001"],
                start=DEC_1,
                end=DEC_1 + timedelta(minutes=20),
            ),
        )
    assert (await clinic.audit.of("appointments.book"))[-1].outcome == "denied"
    # an operator key is not limited to the agent's write scope
    written = await clinic.service.write_observation(principal("operator"), request)
    assert written.entity.fields["status"].confidence == 0.5


async def test_writing_at_a_level_above_voice_is_refused(clinic: Clinic) -> None:
    with pytest.raises(ValidationError):
        ObservationWrite(entity_type="Patient", fields={"language": "en"}, level="verified")  # type: ignore[arg-type]
    # past the schema (a bug in a route, say), the service still refuses it, for every role
    smuggled = ObservationWrite.model_construct(
        entity_type="Patient",
        entity_id=clinic.ids["pat-1001"],
        fields={"language": "en"},
        level="authoritative",
        call_id=None,
        evidence=None,
        idempotency_key=None,
    )
    for role in ("agent", "admin"):
        with pytest.raises(PermissionDenied, match="voice levels only"):
            await clinic.service.write_observation(principal(role), smuggled)
    writes = await clinic.audit.of("observations.write")
    assert [e.outcome for e in writes] == ["denied", "denied"]
    state = await clinic.service.entity_state(
        clinic.agent(), StateRequest(entity_type="Patient", entity_id=clinic.ids["pat-1001"])
    )
    assert state.fields["language"].confidence == 1.0


async def test_booking_a_slot_confirms_at_once_and_takes_the_slot(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    maria, slot = clinic.ids["pat-1001"], clinic.ids["slot-9001"]
    booking = AppointmentBooking(
        patient_id=maria,
        slot_id=slot,
        service_type="Family medicine",
        reason="Flu symptoms",
        call_id="call-9",
        evidence=Evidence(transcript_span="yes, Tuesday at nine works"),
        idempotency_key="call-9:booking",
    )
    confirmation = await svc.book_appointment(agent, booking)
    fields = confirmation.appointment.fields
    assert confirmation.status == "recorded"
    assert fields["status"].value == "booked"
    assert fields["status"].confidence == 0.5
    assert fields["patient"].value == f"Patient/{maria}"
    assert fields["practitioner"].value == f"Practitioner/{clinic.ids['prac-2001']}"
    assert fields["slot"].value == f"Slot/{slot}"
    assert datetime.fromisoformat(str(fields["start"].value)) == datetime.fromisoformat(
        "2026-12-01T09:00:00-05:00"
    )
    assert fields["minutes_duration"].value == 30
    # a retry answers with the same booking; another booking of the slot is refused
    retry = await svc.book_appointment(agent, booking)
    assert (retry.status, retry.appointment_id) == ("duplicate", confirmation.appointment_id)
    with pytest.raises(SlotUnavailable):
        await svc.book_appointment(agent, booking.model_copy(update={"idempotency_key": None}))
    week = SlotSearch(start=DEC_1, end=DEC_1 + timedelta(days=7))
    free = await svc.search_slots(agent, week)
    assert slot not in {s.slot_id for s in free.items}
    # the booking is in the caller's context straight away
    answer = await svc.ambient_context(agent, AmbientRequest(phone="+16175550142"))
    assert answer.context is not None
    upcoming = [a.entity_id for a in answer.context.upcoming_appointments]
    assert upcoming[0] == confirmation.appointment_id
    assert "(voice 0.5, unverified)" in answer.prompt
    outcomes = [(e.outcome, e.entity_id) for e in (await clinic.audit.of("appointments.book"))]
    assert outcomes[:2] == [
        ("ok", confirmation.appointment_id),
        ("ok", confirmation.appointment_id),
    ]
    assert outcomes[2][0] == "invalid"


async def test_two_servers_booking_one_slot_at_once_book_it_once(
    clinic: Clinic, make_backend: MakeBackend
) -> None:
    """Two API processes (own connections, own slot indexes) book the same free slot at the
    same moment for two callers: one booking, one SlotUnavailable."""
    servers = [clinic.service]
    for _ in range(2):
        own = await make_backend()
        servers.append(AgentService.on_store(own.worldmodel, own.security))
    slot = clinic.ids["slot-9001"]
    week = SlotSearch(start=DEC_1, end=DEC_1 + timedelta(days=7))
    for server in servers:  # every process has looked at the slots: each believes it free
        assert slot in {s.slot_id for s in (await server.search_slots(clinic.agent(), week)).items}
    bookings = [
        AppointmentBooking(patient_id=clinic.ids[f"pat-100{n + 1}"], slot_id=slot)
        for n in range(len(servers))
    ]
    results = await asyncio.gather(
        *(s.book_appointment(clinic.agent(), b) for s, b in zip(servers, bookings, strict=True)),
        return_exceptions=True,
    )
    booked = [r for r in results if isinstance(r, BookingConfirmation)]
    assert len(booked) == 1, results
    assert all(isinstance(r, SlotUnavailable) for r in results if r not in booked)


async def test_a_server_builds_the_slot_indexes_ahead(clinic: Clinic) -> None:
    """What ``ehrbridge serve`` does as it starts: every workspace's slots indexed, so the first
    search needs only what was written since; nothing is audited (no patient data is read)."""
    service = clinic.service
    assert await service.warm_slots([WS, OTHER]) == 6  # the clinic's slots; the rival has none
    week = SlotSearch(start=DEC_1, end=DEC_1 + timedelta(days=7))
    assert (await service.search_slots(clinic.agent(), week)).items
    assert [e.action for e in await clinic.audit.all()] == ["slots.search"] * 3


async def test_booking_without_a_slot_and_its_checks(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    start = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    confirmation = await svc.book_appointment(
        agent,
        AppointmentBooking(
            patient_id=clinic.ids["pat-1004"],
            start=start,
            end=start + timedelta(minutes=15),
            location_id=clinic.ids["loc-3002"],
        ),
    )
    assert confirmation.appointment.fields["location"].value == (
        f"Location/{clinic.ids['loc-3002']}"
    )
    with pytest.raises(ValidationError, match="must be after start"):
        AppointmentBooking(patient_id=clinic.ids["pat-1004"], start=start, end=start)
    with pytest.raises(NotFound):
        await svc.book_appointment(
            agent,
            AppointmentBooking(patient_id="nobody", start=start, end=start + timedelta(hours=1)),
        )
    with pytest.raises(SlotUnavailable):
        await svc.book_appointment(
            agent,
            AppointmentBooking(patient_id=clinic.ids["pat-1004"], slot_id=clinic.ids["slot-9002"]),
        )


async def test_attach_a_transcript_as_a_call(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    maria = clinic.ids["pat-1001"]
    request = TranscriptAttach(
        call_id="call-42",
        transcript="Agent: Hello.\nCaller: Hi, it's Maria.",
        patient_id=maria,
        started_at=datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
        direction="inbound",
        caller_phone="(617) 555-0142",
    )
    attached = await svc.attach_transcript(agent, request)
    assert (attached.entity.entity_type, attached.entity.entity_id) == ("Call", "call-42")
    fields = attached.entity.fields
    assert fields["transcript"].value == request.transcript
    assert fields["patient"].value == f"Patient/{maria}"
    assert fields["caller_phone"].value == "+16175550142"
    assert fields["transcript"].confidence == 0.5
    again = await svc.attach_transcript(agent, request)
    assert again.status == "duplicate"
    longer = request.model_copy(update={"transcript": request.transcript + "\nAgent: Bye."})
    updated = await svc.attach_transcript(agent, longer)
    assert (updated.status, updated.entity.version) == ("recorded", 2)
    entries = await clinic.audit.of("transcripts.attach")
    assert [(e.entity_type, e.entity_id, e.phi) for e in entries] == [("Call", "call-42", True)] * 3
    with pytest.raises(PermissionDenied):
        await svc.attach_transcript(clinic.agent(write_types=frozenset({"Patient"})), request)


# --- isolation and roles -----------------------------------------------------------------------


async def test_a_key_of_one_workspace_learns_nothing_of_another(clinic: Clinic) -> None:
    svc = clinic.service
    rival = clinic.agent(OTHER)
    theirs = clinic.ids["pat-1001"]  # Maria in WS, unknown in OTHER (own ids there)
    assert theirs not in clinic.other_ids.values()

    async def refusal(entity_id: str) -> list[str]:
        messages = []
        for call in (
            svc.entity_state(rival, StateRequest(entity_type="Patient", entity_id=entity_id)),
            svc.entity_timeline(rival, TimelineRequest(entity_type="Patient", entity_id=entity_id)),
            svc.write_observation(
                rival,
                ObservationWrite(
                    entity_type="Patient",
                    entity_id=entity_id,
                    fields={"language": "en"},
                    level="confirmed",
                ),
            ),
            svc.book_appointment(
                rival,
                AppointmentBooking(
                    patient_id=entity_id, start=DEC_1, end=DEC_1 + timedelta(hours=1)
                ),
            ),
        ):
            with pytest.raises(NotFound) as caught:
                await call
            messages.append(str(caught.value).replace(entity_id, "<id>"))
        return messages

    # an entity of WS is refused exactly like one that exists nowhere
    assert await refusal(theirs) == await refusal("01nonexistent0000000000000")
    with pytest.raises(NotFound):
        await svc.book_appointment(
            rival,
            AppointmentBooking(
                patient_id=clinic.other_ids["pat-1001"], slot_id=clinic.ids["slot-9001"]
            ),
        )
    # searches of OTHER only ever return OTHER's entities
    found = await svc.search_patients(rival, PatientSearch(name="Santos"))
    assert {p.entity_id for p in found.items} == {
        clinic.other_ids["pat-1001"],
        clinic.other_ids["pat-1003"],
    }
    anything = await svc.search_entities(rival, EntitySearch(text="santos"))
    assert not {e.entity_id for e in anything.items} & set(clinic.ids.values())
    slots = await svc.search_slots(rival, SlotSearch(start=DEC_1, end=DEC_1 + timedelta(days=30)))
    assert slots.items == []
    answer = await svc.ambient_context(rival, AmbientRequest(phone="+16175550142"))
    assert answer.context is not None
    assert answer.context.patient.entity_id == clinic.other_ids["pat-1001"]
    # every audit entry of the rival's calls is in the rival's workspace
    rival_entries = [e for e in await clinic.audit.all() if e.key_id == rival.key_id]
    assert rival_entries and all(e.workspace == OTHER for e in rival_entries)
    read = {e.entity_id for e in rival_entries if e.outcome == "ok"}
    assert read and not read & set(clinic.ids.values())
    assert {e.outcome for e in rival_entries if e.entity_id == theirs} == {"not_found"}


@pytest.mark.parametrize("role", ["agent", "operator", "admin"])
async def test_every_role_may_read_and_write_voice_facts(clinic: Clinic, role: Role) -> None:
    who = principal(role)
    found = await clinic.service.search_patients(who, PatientSearch(phone="6175550142"))
    assert [p.entity_id for p in found.items] == [clinic.ids["pat-1001"]]
    written = await clinic.service.write_observation(
        who,
        ObservationWrite(
            entity_type="Patient",
            entity_id=clinic.ids["pat-1001"],
            fields={"language": "fr"},
            level="mentioned",
        ),
    )
    assert written.entity.pending["language"][0].value == "fr"
    assert {e.role for e in await clinic.audit.all()} == {role}


async def test_each_operation_leaves_its_audit_entries(clinic: Clinic) -> None:
    svc, agent = clinic.service, clinic.agent()
    maria = clinic.ids["pat-1001"]
    week = SlotSearch(start=DEC_1, end=DEC_1 + timedelta(days=7))
    await svc.ambient_context(agent, AmbientRequest(phone="+16175550142"), request_id="q1")
    await svc.search_entities(agent, EntitySearch(text="okafor"), request_id="q2")
    await svc.search_patients(agent, PatientSearch(name="Santos"), request_id="q3")
    await svc.entity_state(
        agent, StateRequest(entity_type="Patient", entity_id=maria), request_id="q4"
    )
    await svc.entity_timeline(
        agent, TimelineRequest(entity_type="Patient", entity_id=maria), request_id="q5"
    )
    await svc.search_slots(agent, week, request_id="q6")
    written = await svc.write_observation(
        agent,
        ObservationWrite(
            entity_type="Patient", entity_id=maria, fields={"language": "fr"}, level="inferred"
        ),
        request_id="q7",
    )
    await svc.attach_transcript(
        agent, TranscriptAttach(call_id="call-5", transcript="Hello."), request_id="q8"
    )
    booked = await svc.book_appointment(
        agent,
        AppointmentBooking(patient_id=maria, slot_id=clinic.ids["slot-9004"]),
        request_id="q9",
    )
    with pytest.raises(NotFound):
        await svc.entity_state(
            agent, StateRequest(entity_type="Encounter", entity_id="missing"), request_id="q10"
        )

    everything = await clinic.audit.all()

    def summary(request_id: str) -> list[tuple[str, str, str | None, bool]]:
        return sorted(
            (e.action, e.outcome, e.entity_type, e.phi)
            for e in everything
            if e.request_id == request_id
        )

    assert len(summary("q1")) == 7  # patient, 4 related entities, practitioner, location
    assert summary("q2") == [("entities.search", "ok", "Patient", True)]
    assert summary("q3") == [("patients.search", "ok", "Patient", True)] * 2
    assert summary("q4") == [("entities.state", "ok", "Patient", True)]
    assert summary("q5") == [("entities.timeline", "ok", "Patient", True)]
    assert summary("q6") == [("slots.search", "ok", "Slot", False)] * 3
    assert summary("q7") == [("observations.write", "ok", "Patient", True)]
    assert summary("q8") == [("transcripts.attach", "ok", "Call", True)]
    assert summary("q9") == [("appointments.book", "ok", "Appointment", True)]
    assert summary("q10") == [("entities.state", "not_found", "Encounter", True)]
    by_request = {e.request_id: e for e in await clinic.audit.all()}
    assert by_request["q7"].entity_id == written.entity.entity_id
    assert by_request["q9"].entity_id == booked.appointment_id
    assert by_request["q10"].entity_id == "missing"
    assert all(e.at == clinic.clock.now and e.key_id == agent.key_id for e in everything)
    # the audit log answers per workspace and entity
    trail = await clinic.audit.query_audit(WS, entity_type="Patient", entity_id=maria)
    assert {e.action for e in trail} >= {
        "ambient.context",
        "patients.search",
        "entities.state",
        "entities.timeline",
        "observations.write",
    }
