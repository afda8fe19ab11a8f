"""Every mapped resource of the Synthea bundles and the hand-made examples keeps its meaning.

"Keeps its meaning" is defined per type in docs/fhir-mappings.md; each ``_meaning_*`` function
below reads exactly the elements that page says are kept, straight from FHIR JSON, so the test
compares the input resource with the mapping's output without going through the mapping's own
helpers. And entity → FHIR → entity is the identity on the entity data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ehrbridge.fhir.mapping import to_entity
from ehrbridge.worldmodel.matching import normalize_phone
from tests.fhir_examples import back_to_fhir, example_files, load, synthea_resources

Json = dict[str, Any]

# ---- what is kept, read from FHIR JSON ----------------------------------------------------------


def _text(concept: Json | None) -> str | None:
    """A CodeableConcept's text, else its first coding's display."""
    if not concept:
        return None
    return concept.get("text") or next(
        (c["display"] for c in concept.get("coding", []) if c.get("display")), None
    )


def _code(concept: Json | None) -> tuple[str | None, str] | None:
    """A CodeableConcept's first (system, code)."""
    codings = [c for c in (concept or {}).get("coding", []) if c.get("code")]
    return (codings[0].get("system"), codings[0]["code"]) if codings else None


def _ref(reference: Json | None) -> str | None:
    return (reference or {}).get("reference")


def _first(resource: Json, key: str) -> Json:
    items: list[Json] = resource.get(key) or [{}]
    return items[0]


def _telecom(resource: Json) -> tuple[list[tuple[str | None, str | None]], list[str]]:
    """Phones as (use, E.164) — a phone that cannot be normalised is dropped — and emails."""
    phones = [
        (p.get("use"), normalize_phone(p["value"]))
        for p in resource.get("telecom", [])
        if p.get("system") == "phone" and normalize_phone(p["value"])
    ]
    emails = [p["value"].lower() for p in resource.get("telecom", []) if p.get("system") == "email"]
    return phones, emails


def _address(address: Json | None) -> tuple[Any, ...]:
    a = address or {}
    return (a.get("line"), a.get("city"), a.get("state"), a.get("postalCode"), a.get("country"))


def _name(resource: Json) -> tuple[Any, ...]:
    names = resource.get("name", [])
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    return (name.get("family"), name.get("given"), name.get("prefix"), name.get("suffix"))


def _meaning_patient(r: Json) -> Json:
    identifiers = r.get("identifier", [])
    is_mr = [_code(i.get("type")) == (_V2_0203, "MR") for i in identifiers]
    return {
        "name": _name(r),
        "birthDate": r.get("birthDate"),
        "gender": r.get("gender"),
        "telecom": _telecom(r),
        "address": _address(_first(r, "address")),
        "mr": [
            (i.get("system"), i["value"]) for i, mr in zip(identifiers, is_mr, strict=True) if mr
        ],
        "others": [
            (i.get("system"), i["value"])
            for i, mr in zip(identifiers, is_mr, strict=True)
            if not mr
        ],
        "language": _code(_first(r, "communication").get("language")),
        "maritalStatus": (_code(r.get("maritalStatus")) or (None, None))[1],
        "deceased": (r.get("deceasedBoolean"), r.get("deceasedDateTime")),
        "gp": [_ref(g) for g in r.get("generalPractitioner", [])],
    }


def _meaning_practitioner(r: Json) -> Json:
    return {
        "name": _name(r),
        "identifiers": sorted((i.get("system") or "", i["value"]) for i in r.get("identifier", [])),
        "gender": r.get("gender"),
        "active": r.get("active"),
        "telecom": _telecom(r),
        "address": _address(_first(r, "address")),
        "qualification": [_code(q["code"]) or _text(q["code"]) for q in r.get("qualification", [])],
    }


def _meaning_role(r: Json) -> Json:
    return {
        "practitioner": _ref(r.get("practitioner")),
        "specialty": [_code(s) or _text(s) for s in r.get("specialty", [])],
        "locations": [_ref(loc) for loc in r.get("location", [])],
        "telecom": _telecom(r),
        "active": r.get("active"),
    }


def _hours(r: Json) -> set[tuple[str, str, str]]:
    hours = set()
    for entry in r.get("hoursOfOperation", []):
        span = (
            ("00:00:00", "24:00:00")
            if entry.get("allDay")
            else (
                entry["openingTime"],
                entry["closingTime"],
            )
        )
        hours |= {(day, *span) for day in entry.get("daysOfWeek", [])}
    return hours


def _meaning_location(r: Json) -> Json:
    timezone = [e["valueCode"] for e in r.get("extension", []) if e["url"].endswith("/timezone")]
    return {
        "name": r.get("name"),
        "alias": r.get("alias"),
        "description": r.get("description"),
        "status": r.get("status"),
        "type": (_text(_first(r, "type")), _code(_first(r, "type"))),
        "address": _address(r.get("address")),
        "telecom": ([p for _, p in _telecom(r)[0]], _telecom(r)[1]),
        "timezone": timezone,
        "hours": _hours(r),
        "position": r.get("position"),
        "managingOrganization": (r.get("managingOrganization") or {}).get("display"),
    }


def _meaning_appointment(r: Json) -> Json:
    return {
        "status": r.get("status"),
        "start": r.get("start"),
        "end": r.get("end"),
        "minutesDuration": r.get("minutesDuration"),
        "appointmentType": _code(r.get("appointmentType")),
        "serviceType": _text(_first(r, "serviceType")),
        "reason": _text(_first(r, "reasonCode")),
        "description": r.get("description"),
        "comment": r.get("comment"),
        "patientInstruction": r.get("patientInstruction"),
        "cancelationReason": _text(r.get("cancelationReason")),
        "created": r.get("created"),
        "actors": sorted(_ref(p.get("actor")) or "" for p in r["participant"]),
    }


def _meaning_encounter(r: Json) -> Json:
    return {
        "status": r["status"],
        "class": r["class"]["code"],
        "type": (_text(_first(r, "type")), _code(_first(r, "type"))),
        "period": r.get("period"),
        "subject": _ref(r.get("subject")),
        "participants": [_ref(p.get("individual")) for p in r.get("participant", [])],
        "reason": _text(_first(r, "reasonCode")),
        "location": _ref(_first(r, "location").get("location")),
        "appointment": _ref(_first(r, "appointment")),
    }


def _meaning_medication_request(r: Json) -> Json:
    dosage = _first(r, "dosageInstruction")
    return {
        "status": r["status"],
        "intent": r["intent"],
        "medication": (
            _code(r.get("medicationCodeableConcept")),
            _text(r.get("medicationCodeableConcept")),
        ),
        "subject": _ref(r["subject"]),
        "encounter": _ref(r.get("encounter")),
        "requester": _ref(r.get("requester")),
        "authoredOn": r.get("authoredOn"),
        "dosage": (
            dosage.get("text"),
            dosage.get("asNeededBoolean"),
            (dosage.get("timing") or {}).get("repeat"),
            (_first(dosage, "doseAndRate").get("doseQuantity") or {}).get("value"),
        ),
        "refills": (r.get("dispenseRequest") or {}).get("numberOfRepeatsAllowed"),
        "note": _first(r, "note").get("text"),
    }


def _meaning_observation(r: Json) -> Json:
    quantity = r.get("valueQuantity") or {}
    return {
        "status": r["status"],
        "code": (_code(r["code"]), _text(r["code"])),
        "value": (
            quantity.get("value"),
            quantity.get("unit"),
            r.get("valueString"),
            _code(r.get("valueCodeableConcept")),
        ),
        "referenceRange": _first(r, "referenceRange"),
        "interpretation": (_code(_first(r, "interpretation")) or (None, None))[1],
        "effective": r.get("effectiveDateTime"),
        "issued": r.get("issued"),
        "subject": _ref(r.get("subject")),
        "encounter": _ref(r.get("encounter")),
    }


def _payer(r: Json) -> str | None:
    payor = r["payor"][0]
    contained = {c["id"]: c for c in r.get("contained", [])}
    name: str | None = payor.get("display") or contained.get(
        payor.get("reference", "")[1:], {}
    ).get("name")
    return name


def _meaning_coverage(r: Json) -> Json:
    classes = {
        c["type"]["coding"][0]["code"]: (c["value"], c.get("name")) for c in r.get("class", [])
    }
    return {
        "status": r["status"],
        "type": _text(r.get("type")),
        "beneficiary": _ref(r["beneficiary"]),
        "subscriber": _ref(r.get("subscriber")),
        "subscriberId": r.get("subscriberId"),
        "relationship": _code(r.get("relationship")),
        "period": r.get("period"),
        "payer": _payer(r),
        "classes": classes,
        "order": r.get("order"),
        "member": _first(r, "identifier").get("value"),
    }


_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
MEANING: dict[str, Callable[[Json], Json]] = {
    "Patient": _meaning_patient,
    "Practitioner": _meaning_practitioner,
    "PractitionerRole": _meaning_role,
    "Location": _meaning_location,
    "Appointment": _meaning_appointment,
    "Encounter": _meaning_encounter,
    "MedicationRequest": _meaning_medication_request,
    "Observation": _meaning_observation,
    "Coverage": _meaning_coverage,
}


def _check(resource: Json) -> None:
    mapped = to_entity(resource)
    output = back_to_fhir(mapped, resource.get("id"))
    assert output["resourceType"] == resource["resourceType"]
    assert output.get("id") == resource.get("id")
    # (1) entity → FHIR → entity is the identity
    assert to_entity(output) == mapped
    # (2) the elements the doc says are kept are equal
    meaning = MEANING[resource["resourceType"]]
    assert meaning(output) == meaning(resource)


def test_every_synthea_resource_of_a_mapped_type_keeps_its_meaning() -> None:
    counts: Counter[str] = Counter()
    for resource in synthea_resources():
        try:
            _check(resource)
        except AssertionError as exc:
            raise AssertionError(f"{resource['resourceType']}/{resource['id']}") from exc
        counts[resource["resourceType"]] += 1
    # All 60 patients, 191 practitioners, ... so a bundle that went missing would show.
    assert counts == {
        "Patient": 60,
        "Practitioner": 191,
        "Encounter": 992,
        "MedicationRequest": 184,
        "Observation": 1782,
    }


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_hand_made_example_keeps_its_meaning(path: Path) -> None:
    _check(load(path))


def test_hand_made_examples_cover_the_types_synthea_lacks() -> None:
    kinds = Counter(load(p)["resourceType"] for p in example_files())
    for kind in ("Appointment", "Location", "Coverage", "PractitionerRole"):
        assert kinds[kind] >= 2, kind
