"""Patient ↔ FHIR Patient (https://hl7.org/fhir/R4/patient.html)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping import datatypes as dt
from ehrbridge.fhir.mapping.element import Element, Fields
from ehrbridge.fhir.mapping.mapped import Mapped, TypeMapping

_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
_MARITAL_NULL = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
_BCP47 = "urn:ietf:bcp:47"
#: Not a documented entity field: the system of the MR identifier, so it survives a round trip.
MRN_SYSTEM = "mrn_system"
#: Not a documented entity field: when the patient died (``deceasedDateTime``, possibly partial).
DECEASED_AT = "deceased_at"


def read(resource: Element) -> Mapped:
    """Map a FHIR Patient."""
    out = Fields("Patient")
    dt.read_name(out, resource)
    out.set("birth_date", resource.date("birthDate"), source=resource.at("birthDate"))
    out.set("gender", resource.string("gender"), source=resource.at("gender"))
    dt.read_telecom(out, resource, phones=("mobile", "home", "work"), email="email")
    dt.read_address(out, dt.pick_address(resource))
    others: list[str] = []
    for identifier in resource.children("identifier"):
        if dt.is_type(identifier, "MR") and "mrn" not in out.data:
            out.set("mrn", identifier.string("value"), source=identifier.at("value"))
            out.set(MRN_SYSTEM, identifier.string("system"), source=identifier.at("system"))
        elif (found := dt.identifier_token(identifier)) is not None:
            others.append(found)
    out.set("identifiers", others or None, source=resource.at("identifier"))
    language = _preferred_language(resource)
    if language is not None:
        out.set("language", dt.concept_code(language), source=language.path)
    marital = resource.child("maritalStatus")
    out.set("marital_status", dt.concept_code(marital), source=resource.at("maritalStatus"))
    if resource.has("deceasedBoolean"):
        deceased = resource.boolean("deceasedBoolean")
        out.set("deceased", deceased, source=resource.at("deceasedBoolean"))
    elif resource.has("deceasedDateTime"):
        when = resource.datetime("deceasedDateTime")
        out.set("deceased", True, source=resource.at("deceasedDateTime"))
        out.set(DECEASED_AT, when, source=resource.at("deceasedDateTime"))
    gp = resource.first("generalPractitioner")
    out.set(
        "general_practitioner",
        dt.reference_to(gp, "Practitioner"),
        source=resource.at("generalPractitioner"),
    )
    org = dt.display_name(resource.child("managingOrganization"), dt.contained_by_id(resource))
    out.set("managing_organization", org, source=resource.at("managingOrganization"))
    return Mapped(entity_type="Patient", data=out.data)


def _preferred_language(resource: Element) -> Element | None:
    """The ``language`` of the preferred communication, else of the first."""
    communications = resource.children("communication")
    for item in communications:
        if item.boolean("preferred"):
            return item.child("language", required=True)
    return communications[0].child("language", required=True) if communications else None


def _deceased(data: Mapping[str, Any]) -> dict[str, Any]:
    if data.get(DECEASED_AT) is not None and data.get("deceased") is not False:
        return {"deceasedDateTime": data[DECEASED_AT]}
    return {"deceasedBoolean": data.get("deceased")}


def write(data: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR Patient from entity data."""
    identifiers: list[dict[str, Any]] = []
    if data.get("mrn") is not None:
        mr = {"type": {"coding": [{"system": dt.V2_0203, "code": "MR"}]}}
        identifiers.append(
            {**mr, "system": data[MRN_SYSTEM], "value": data["mrn"]}
            if data.get(MRN_SYSTEM)
            else {**mr, "value": data["mrn"]}
        )
    identifiers += [dt.identifier_of(i) for i in data.get("identifiers") or ()]
    marital = data.get("marital_status")
    address = dt.write_address(data, use="home")
    return dt.compact(
        {
            "identifier": identifiers,
            "name": dt.write_name(data),
            "telecom": dt.write_telecom(data, email="email"),
            "gender": data.get("gender"),
            "birthDate": data.get("birth_date"),
            **_deceased(data),
            "address": [address] if address else None,
            "maritalStatus": (
                None
                if marital is None
                else {
                    "coding": [
                        {"system": _MARITAL_NULL if marital == "UNK" else _MARITAL, "code": marital}
                    ]
                }
            ),
            "communication": (
                [{"language": {"coding": [{"system": _BCP47, "code": data["language"]}]}}]
                if data.get("language") is not None
                else None
            ),
            "generalPractitioner": (
                [dt.ref(data["general_practitioner"])]
                if data.get("general_practitioner") is not None
                else None
            ),
            "managingOrganization": (
                {"display": data["managing_organization"]}
                if data.get("managing_organization") is not None
                else None
            ),
        }
    )


MAPPING = TypeMapping(entity_type="Patient", resource_type="Patient", read=read, write=write)
