"""Encounter ↔ FHIR Encounter (https://hl7.org/fhir/R4/encounter.html)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping import datatypes as dt
from ehrbridge.fhir.mapping.element import Element, Fields
from ehrbridge.fhir.mapping.mapped import Mapped, TypeMapping

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def read(resource: Element) -> Mapped:
    """Map a FHIR Encounter."""
    out = Fields("Encounter")
    out.set("status", resource.string("status", required=True), source=resource.at("status"))
    klass = resource.child("class", required=True)
    assert klass is not None
    out.set("class", klass.string("code", required=True), source=klass.at("code"))
    kind = resource.first("type")
    out.set("type", dt.concept_text(kind), source=resource.at("type"))
    out.set("type_code", dt.concept_token(kind), source=resource.at("type"))
    period = resource.child("period")
    if period is not None:
        for key in ("start", "end"):
            dt.set_datetime(out, f"period.{key}", period.datetime(key), source=period.at(key))
    out.set(
        "patient",
        dt.reference_to(resource.child("subject"), "Patient"),
        source=resource.at("subject"),
    )
    practitioners = []
    for participant in resource.children("participant"):
        target = dt.reference_to(participant.child("individual"), "Practitioner")
        if target is not None and target not in practitioners:
            practitioners.append(target)
    out.set("practitioners", practitioners or None, source=resource.at("participant"))
    location = resource.first("location")
    if location is not None:
        out.set(
            "location",
            dt.reference_to(location.child("location", required=True), "Location"),
            source=location.at("location"),
        )
    out.set(
        "appointment",
        dt.reference_to(resource.first("appointment"), "Appointment"),
        source=resource.at("appointment"),
    )
    out.set(
        "reason", dt.concept_text(resource.first("reasonCode")), source=resource.at("reasonCode")
    )
    out.set("diagnoses", _read_diagnoses(resource), source=resource.at("diagnosis"))
    provider = dt.display_name(resource.child("serviceProvider"), dt.contained_by_id(resource))
    out.set("service_provider", provider, source=resource.at("serviceProvider"))
    return Mapped(entity_type="Encounter", data=out.data)


def _read_diagnoses(resource: Element) -> list[str] | None:
    """Codes of the diagnoses whose Condition is contained (only those carry a code here)."""
    contained = dt.contained_by_id(resource)
    codes = []
    for diagnosis in resource.children("diagnosis"):
        condition = diagnosis.child("condition", required=True)
        assert condition is not None
        ref = condition.string("reference")
        if ref is None or not ref.startswith("#") or ref[1:] not in contained:
            continue
        target = Element(contained[ref[1:]], f"{resource.path}.contained")
        if (code := dt.concept_token(target.child("code"))) is not None:
            codes.append(code)
    return codes or None


def write(data: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR Encounter from entity data; diagnoses become contained Conditions."""
    contained, diagnoses = [], []
    for i, code in enumerate(data.get("diagnoses") or (), start=1):
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "id": f"dx{i}",
            "code": {"coding": [dt.coding_of(code)]},
        }
        if data.get("patient") is not None:
            condition["subject"] = dt.ref(data["patient"])
        contained.append(condition)
        diagnoses.append({"condition": {"reference": f"#dx{i}"}})
    period = dt.compact(
        {"start": dt.get_datetime(data, "period.start"), "end": dt.get_datetime(data, "period.end")}
    )
    provider = data.get("service_provider")
    return dt.compact(
        {
            "contained": contained,
            "status": data.get("status"),
            "class": {"system": ACT_CODE, "code": data["class"]},
            "type": [t] if (t := dt.concept(data.get("type_code"), data.get("type"))) else None,
            "subject": dt.ref(data.get("patient")),
            "participant": [{"individual": dt.ref(p)} for p in data.get("practitioners") or ()],
            "appointment": (
                [dt.ref(data["appointment"])] if data.get("appointment") is not None else None
            ),
            "period": period,
            "reasonCode": [{"text": data["reason"]}] if data.get("reason") is not None else None,
            "diagnosis": diagnoses,
            "location": (
                [{"location": dt.ref(data["location"])}]
                if data.get("location") is not None
                else None
            ),
            "serviceProvider": {"display": provider} if provider is not None else None,
        }
    )


MAPPING = TypeMapping(
    entity_type="Encounter",
    resource_type="Encounter",
    read=read,
    write=write,
    required=("status", "class"),
)
