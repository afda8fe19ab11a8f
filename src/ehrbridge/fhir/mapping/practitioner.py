"""Practitioner ↔ FHIR Practitioner, and PractitionerRole → fields of its practitioner.

https://hl7.org/fhir/R4/practitioner.html, https://hl7.org/fhir/R4/practitionerrole.html
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping import datatypes as dt
from ehrbridge.fhir.mapping.element import Element, Fields, fail
from ehrbridge.fhir.mapping.mapped import Mapped, TypeMapping

_BCP47 = "urn:ietf:bcp:47"


def read(resource: Element) -> Mapped:
    """Map a FHIR Practitioner."""
    out = Fields("Practitioner")
    dt.read_name(out, resource)
    others: list[str] = []
    for identifier in resource.children("identifier"):
        if identifier.string("system") == dt.NPI_SYSTEM and "npi" not in out.data:
            out.set("npi", identifier.string("value"), source=identifier.at("value"))
        elif (found := dt.identifier_token(identifier)) is not None:
            others.append(found)
    out.set("identifiers", others or None, source=resource.at("identifier"))
    qualifications = [
        text
        for q in resource.children("qualification")
        if (text := _code_or_text(q.child("code", required=True))) is not None
    ]
    out.set("qualification", qualifications or None, source=resource.at("qualification"))
    dt.read_telecom(out, resource, phones=("work", "mobile"), email="email")
    out.set("gender", resource.string("gender"), source=resource.at("gender"))
    languages = [
        code for c in resource.children("communication") if (code := dt.concept_code(c)) is not None
    ]
    out.set("languages", languages or None, source=resource.at("communication"))
    out.set("active", resource.boolean("active"), source=resource.at("active"))
    # Not documented for Practitioner, kept so the practice address is not lost (open schema).
    dt.read_address(out, dt.pick_address(resource, use="work"))
    return Mapped(entity_type="Practitioner", data=out.data)


def _code_or_text(concept: Element | None) -> str | None:
    """A credential or specialty: ``system|code`` when coded, else its text."""
    return dt.concept_token(concept) or dt.concept_text(concept)


def _concept_of(value: str) -> dict[str, Any]:
    """The inverse of :func:`_code_or_text`: a token when it has a ``|``, else text."""
    return {"coding": [dt.coding_of(value)]} if "|" in value else {"text": value}


def read_role(resource: Element) -> Mapped:
    """Map a FHIR PractitionerRole to fields of the Practitioner it is for (``belongs_to``)."""
    practitioner = resource.child("practitioner")
    target, kind = dt.reference(practitioner)
    if target is None:
        fail(resource.at("practitioner"), "required for mapping (the role belongs to it)")
    if kind not in (None, "Practitioner"):
        fail(resource.at("practitioner"), "expected a reference to a Practitioner")
    out = Fields("Practitioner")
    specialties = [
        text for s in resource.children("specialty") if (text := _code_or_text(s)) is not None
    ]
    out.set("specialty", specialties or None, source=resource.at("specialty"))
    locations = [
        ref
        for loc in resource.children("location")
        if (ref := dt.reference_to(loc, "Location")) is not None
    ]
    out.set("locations", locations or None, source=resource.at("location"))
    dt.read_telecom(out, resource, phones=("work", "mobile"), email="email")
    out.set("active", resource.boolean("active"), source=resource.at("active"))
    return Mapped(entity_type="Practitioner", data=out.data, belongs_to=target)


def write(data: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR Practitioner from entity data (role fields are left to :func:`write_role`)."""
    identifiers = []
    if data.get("npi") is not None:
        identifiers.append({"system": dt.NPI_SYSTEM, "value": data["npi"]})
    identifiers += [dt.identifier_of(i) for i in data.get("identifiers") or ()]
    address = dt.write_address(data)
    return dt.compact(
        {
            "identifier": identifiers,
            "active": data.get("active"),
            "name": dt.write_name(data),
            "telecom": dt.write_telecom(data, email="email"),
            "address": [address] if address else None,
            "gender": data.get("gender"),
            "qualification": [{"code": _concept_of(q)} for q in data.get("qualification") or ()],
            "communication": [
                {"coding": [{"system": _BCP47, "code": code}]}
                for code in data.get("languages") or ()
            ],
        }
    )


def write_role(data: Mapping[str, Any], practitioner: str) -> dict[str, Any]:
    """A FHIR PractitionerRole of ``practitioner`` from the role fields of entity data."""
    return dt.compact(
        {
            "active": data.get("active"),
            "practitioner": dt.ref(practitioner),
            "specialty": [_concept_of(s) for s in data.get("specialty") or ()],
            "location": [dt.ref(loc) for loc in data.get("locations") or ()],
            "telecom": dt.write_telecom(data, email="email"),
        }
    )


MAPPING = TypeMapping(
    entity_type="Practitioner", resource_type="Practitioner", read=read, write=write
)
