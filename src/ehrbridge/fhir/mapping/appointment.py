"""Appointment ↔ FHIR Appointment (https://hl7.org/fhir/R4/appointment.html).

Participants go to ``patient``, ``practitioner`` or ``location`` by the type of their actor: the
reference names it (``Patient/1``), else the Reference's ``type`` says it; for an actor whose
type is still unknown (``urn:uuid:…`` without ``type``) the participant's role decides
(ATND/PPRF/SPRF/PART/CON/… are practitioners), else its position: it fills the first of patient,
practitioner, location that is still empty. The first participant of each kind wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping import datatypes as dt
from ehrbridge.fhir.mapping.element import Element, Fields
from ehrbridge.fhir.mapping.mapped import Mapped, TypeMapping

V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
#: Participant roles (v3 ParticipationType) that are played by a practitioner.
_ROLES = "ADM ATND CALLBCK CON DIS ESC PPRF PART REF SPRF TRANS translator emergency"
_PRACTITIONER_ROLES = frozenset(_ROLES.split())
#: Entity field → the actor's resource type.
_ACTORS = {"patient": "Patient", "practitioner": "Practitioner", "location": "Location"}


def read(resource: Element) -> Mapped:
    """Map a FHIR Appointment."""
    out = Fields("Appointment")
    out.set("status", resource.string("status", required=True), source=resource.at("status"))
    out.set("start", resource.instant("start"), source=resource.at("start"))
    out.set("end", resource.instant("end"), source=resource.at("end"))
    out.set(
        "minutes_duration",
        resource.integer("minutesDuration", minimum=1),
        source=resource.at("minutesDuration"),
    )
    kind = resource.child("appointmentType")
    code = dt.concept_code(kind, V2_0276)
    out.set(
        "appointment_type", code.lower() if code else None, source=resource.at("appointmentType")
    )
    out.set(
        "service_type",
        dt.concept_text(resource.first("serviceType")),
        source=resource.at("serviceType"),
    )
    out.set(
        "reason", dt.concept_text(resource.first("reasonCode")), source=resource.at("reasonCode")
    )
    out.set("description", resource.string("description"), source=resource.at("description"))
    _read_participants(out, resource)
    out.set("comment", resource.string("comment"), source=resource.at("comment"))
    out.set(
        "patient_instruction",
        resource.string("patientInstruction"),
        source=resource.at("patientInstruction"),
    )
    out.set(
        "cancelation_reason",
        dt.concept_text(resource.child("cancelationReason")),
        source=resource.at("cancelationReason"),
    )
    dt.set_datetime(out, "created", resource.datetime("created"), source=resource.at("created"))
    return Mapped(entity_type="Appointment", data=out.data)


def _read_participants(out: Fields, resource: Element) -> None:
    unknown: list[tuple[Element, str]] = []
    for participant in resource.children("participant", required=True):
        participant.string("status", required=True)
        actor = participant.child("actor")
        target, kind = dt.reference(actor)
        if target is None or actor is None:
            continue
        if kind is None and _played_by_practitioner(participant):
            kind = "Practitioner"
        if kind is None:
            unknown.append((actor, target))
            continue
        for field, resource_type in _ACTORS.items():
            if kind == resource_type and field not in out.data:
                out.set(field, target, source=actor.at("reference"))
    for actor, target in unknown:
        for field in _ACTORS:
            if field not in out.data:
                out.set(field, target, source=actor.at("reference"))
                break


def _played_by_practitioner(participant: Element) -> bool:
    return any(
        dt.concept_code(role) in _PRACTITIONER_ROLES for role in participant.children("type")
    )


def write(data: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR Appointment from entity data.

    Each actor is written with its ``type``, so an actor given as ``urn:uuid:…`` maps back to the
    same field. Participant status is not held by the entity; it is written as ``accepted``.
    """
    kind = data.get("appointment_type")
    cancel = data.get("cancelation_reason")
    return dt.compact(
        {
            "status": data.get("status"),
            "cancelationReason": {"text": cancel} if cancel is not None else None,
            "serviceType": (
                [{"text": data["service_type"]}] if data.get("service_type") is not None else None
            ),
            "appointmentType": (
                {"coding": [{"system": V2_0276, "code": kind.upper()}]} if kind else None
            ),
            "reasonCode": [{"text": data["reason"]}] if data.get("reason") is not None else None,
            "description": data.get("description"),
            "start": data.get("start"),
            "end": data.get("end"),
            "minutesDuration": data.get("minutes_duration"),
            "created": dt.get_datetime(data, "created"),
            "comment": data.get("comment"),
            "patientInstruction": data.get("patient_instruction"),
            "participant": [
                {"actor": dt.ref(data[field], resource_type), "status": "accepted"}
                for field, resource_type in _ACTORS.items()
                if data.get(field) is not None
            ],
        }
    )


MAPPING = TypeMapping(
    entity_type="Appointment",
    resource_type="Appointment",
    read=read,
    write=write,
    required=("status",),
)
