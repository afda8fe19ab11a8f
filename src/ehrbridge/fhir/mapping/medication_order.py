"""MedicationOrder ↔ FHIR MedicationRequest (https://hl7.org/fhir/R4/medicationrequest.html).

``medicationCodeableConcept`` gives ``medication.code`` and ``medication.display``. A
``medicationReference`` (to a Medication resource) gives ``medication.reference`` (translated by
the importer like every reference) and its ``display`` as ``medication.display``. Only the first
``dosageInstruction`` is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping import datatypes as dt
from ehrbridge.fhir.mapping.element import Element, Fields
from ehrbridge.fhir.mapping.mapped import Mapped, TypeMapping

#: Not a documented entity field: a ``medicationReference`` kept as its reference string.
MEDICATION_REFERENCE = "medication.reference"
UCUM = "http://unitsofmeasure.org"


def read(resource: Element) -> Mapped:
    """Map a FHIR MedicationRequest."""
    out = Fields("MedicationOrder")
    out.set("status", resource.string("status", required=True), source=resource.at("status"))
    out.set("intent", resource.string("intent", required=True), source=resource.at("intent"))
    resource.require("medicationCodeableConcept", "medicationReference")
    resource.require("subject")
    medication = resource.child("medicationCodeableConcept")
    if medication is not None:
        where = resource.at("medicationCodeableConcept")
        out.set("medication.code", dt.concept_token(medication), source=where)
        out.set("medication.display", dt.concept_text(medication), source=where)
    else:
        reference = resource.child("medicationReference")
        target, _ = dt.reference(reference)
        out.set(MEDICATION_REFERENCE, target, source=resource.at("medicationReference"))
        if reference is not None:
            out.set(
                "medication.display", reference.string("display"), source=reference.at("display")
            )
    dosage = resource.first("dosageInstruction")
    if dosage is not None:
        _read_dosage(out, dosage)
    dispense = resource.child("dispenseRequest")
    if dispense is not None:
        out.set(
            "refills",
            dispense.integer("numberOfRepeatsAllowed", minimum=0),
            source=dispense.at("numberOfRepeatsAllowed"),
        )
    dt.set_datetime(
        out, "authored_on", resource.datetime("authoredOn"), source=resource.at("authoredOn")
    )
    out.set(
        "patient",
        dt.reference_to(resource.child("subject"), "Patient"),
        source=resource.at("subject"),
    )
    out.set(
        "prescriber",
        dt.reference_to(resource.child("requester"), "Practitioner"),
        source=resource.at("requester"),
    )
    out.set(
        "reason", dt.concept_text(resource.first("reasonCode")), source=resource.at("reasonCode")
    )
    out.set(
        "encounter",
        dt.reference_to(resource.child("encounter"), "Encounter"),
        source=resource.at("encounter"),
    )
    note = resource.first("note")
    if note is not None:
        out.set("note", note.string("text", required=True), source=note.at("text"))
    return Mapped(entity_type="MedicationOrder", data=out.data)


def _read_dosage(out: Fields, dosage: Element) -> None:
    out.set("dosage.text", dosage.string("text"), source=dosage.at("text"))
    dose_rate = dosage.first("doseAndRate")
    dose = dose_rate.child("doseQuantity") if dose_rate is not None else None
    if dose is not None:
        out.set("dosage.dose_value", dose.decimal("value"), source=dose.at("value"))
        unit = dose.string("unit") or dose.string("code")
        out.set("dosage.dose_unit", unit, source=dose.at("unit"))
    timing = dosage.child("timing")
    repeat = timing.child("repeat") if timing is not None else None
    if repeat is not None:
        out.set("dosage.frequency", repeat.integer("frequency"), source=repeat.at("frequency"))
        out.set("dosage.period", repeat.decimal("period"), source=repeat.at("period"))
        out.set("dosage.period_unit", repeat.string("periodUnit"), source=repeat.at("periodUnit"))
    out.set(
        "dosage.as_needed", dosage.boolean("asNeededBoolean"), source=dosage.at("asNeededBoolean")
    )
    out.set("dosage.route", dt.concept_text(dosage.child("route")), source=dosage.at("route"))


def _write_dosage(data: Mapping[str, Any]) -> dict[str, Any] | None:
    dose = dt.compact(
        {"value": data.get("dosage.dose_value"), "unit": data.get("dosage.dose_unit")}
    )
    repeat = dt.compact(
        {
            "frequency": data.get("dosage.frequency"),
            "period": data.get("dosage.period"),
            "periodUnit": data.get("dosage.period_unit"),
        }
    )
    route = data.get("dosage.route")
    dosage = dt.compact(
        {
            "text": data.get("dosage.text"),
            "timing": {"repeat": repeat} if repeat else None,
            "asNeededBoolean": data.get("dosage.as_needed"),
            "route": {"text": route} if route is not None else None,
            "doseAndRate": [{"doseQuantity": dose}] if dose else None,
        }
    )
    return dosage or None


def write(data: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR MedicationRequest from entity data."""
    display = data.get("medication.display")
    medication: dict[str, Any] = {}
    if data.get(MEDICATION_REFERENCE) is not None:
        medication["medicationReference"] = dt.compact(
            {"reference": data[MEDICATION_REFERENCE], "display": display}
        )
    else:
        medication["medicationCodeableConcept"] = dt.concept(data.get("medication.code"), display)
    dosage = _write_dosage(data)
    note = data.get("note")
    return dt.compact(
        {
            "status": data.get("status"),
            "intent": data.get("intent"),
            **medication,
            "subject": dt.ref(data.get("patient")),
            "encounter": dt.ref(data.get("encounter")),
            "authoredOn": dt.get_datetime(data, "authored_on"),
            "requester": dt.ref(data.get("prescriber")),
            "reasonCode": [{"text": data["reason"]}] if data.get("reason") is not None else None,
            "note": [{"text": note}] if note is not None else None,
            "dosageInstruction": [dosage] if dosage else None,
            "dispenseRequest": (
                {"numberOfRepeatsAllowed": data["refills"]}
                if data.get("refills") is not None
                else None
            ),
        }
    )


MAPPING = TypeMapping(
    entity_type="MedicationOrder",
    resource_type="MedicationRequest",
    read=read,
    write=write,
    required=(
        "status",
        "intent",
        "patient",
        "medication.code|medication.display|medication.reference",
    ),
)
