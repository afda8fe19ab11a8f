"""InsurancePlan ↔ FHIR Coverage (https://hl7.org/fhir/R4/coverage.html).

Not to be confused with FHIR's own InsurancePlan resource (a payer's product), which is kept as a
generic entity of type ``InsuranceProduct`` (see the registry).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping import datatypes as dt
from ehrbridge.fhir.mapping.element import Element, Fields
from ehrbridge.fhir.mapping.mapped import Mapped, TypeMapping

CLASS_SYSTEM = "http://terminology.hl7.org/CodeSystem/coverage-class"
RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
#: Not documented entity fields, kept so a round trip loses nothing the entity holds.
PLAN_ID = "plan_id"  #: class(plan).value when the plan also has a name
PAYER_REFERENCE = "payer_reference"  #: the payor reference (not a contained one)
TYPE_CODE = "type_code"  #: the coded ``type``


def read(resource: Element) -> Mapped:
    """Map a FHIR Coverage."""
    out = Fields("InsurancePlan")
    out.set("status", resource.string("status", required=True), source=resource.at("status"))
    kind = resource.child("type")
    out.set("type", dt.concept_text(kind), source=resource.at("type"))
    out.set(TYPE_CODE, dt.concept_token(kind), source=resource.at("type"))
    payors = resource.children("payor", required=True)
    contained = dt.contained_by_id(resource)
    out.set("payer", dt.display_name(payors[0], contained), source=payors[0].path)
    out.set("payer_id", _payer_id(payors[0], contained), source=payors[0].path)
    payer_ref, _ = dt.reference(payors[0])
    if payer_ref is not None and not payer_ref.startswith("#"):
        out.set(PAYER_REFERENCE, payer_ref, source=payors[0].at("reference"))
    _read_member_id(out, resource)
    for item in resource.children("class"):
        kind_code = dt.concept_code(item.child("type", required=True))
        value, name = item.string("value", required=True), item.string("name")
        if kind_code == "plan" and "plan_name" not in out.data:
            out.set("plan_name", name or value, source=item.at("name" if name else "value"))
            if name is not None:
                out.set(PLAN_ID, value, source=item.at("value"))
        elif kind_code == "group" and "group_number" not in out.data:
            out.set("group_number", value, source=item.at("value"))
            out.set("group_name", name, source=item.at("name"))
    out.set("subscriber_id", resource.string("subscriberId"), source=resource.at("subscriberId"))
    out.set(
        "subscriber",
        dt.reference_to(resource.child("subscriber"), "Patient"),
        source=resource.at("subscriber"),
    )
    beneficiary = resource.child("beneficiary", required=True)
    out.set(
        "beneficiary", dt.reference_to(beneficiary, "Patient"), source=resource.at("beneficiary")
    )
    out.set(
        "relationship",
        dt.concept_code(resource.child("relationship"), RELATIONSHIP),
        source=resource.at("relationship"),
    )
    out.set("order", resource.integer("order", minimum=1), source=resource.at("order"))
    period = resource.child("period")
    if period is not None:
        for key in ("start", "end"):
            value = period.datetime(key)
            # A coverage day is a date; a dateTime bound is cut to the date it was written in.
            out.set(f"period.{key}", value[:10] if value else None, source=period.at(key))
    return Mapped(entity_type="InsurancePlan", data=out.data)


def _payer_id(payor: Element, contained: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The payer's id: the Reference's ``identifier``, else a contained Organization's first one."""
    identifier = payor.child("identifier")
    if identifier is not None:
        return identifier.string("value")
    ref = payor.string("reference")
    if ref is not None and ref.startswith("#") and (org := contained.get(ref[1:])) is not None:
        first = Element(org, payor.path).first("identifier")
        return first.string("value") if first is not None else None
    return None


def _read_member_id(out: Fields, resource: Element) -> None:
    """``member_id``: the identifier of type MB (member number), else the first identifier."""
    identifiers = resource.children("identifier")
    chosen = next((i for i in identifiers if dt.is_type(i, "MB")), None)
    if chosen is None and identifiers:
        chosen = identifiers[0]
    if chosen is not None:
        out.set("member_id", chosen.string("value"), source=chosen.at("value"))


def _class(kind: str, value: str | None, name: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return dt.compact(
        {
            "type": {"coding": [{"system": CLASS_SYSTEM, "code": kind}]},
            "value": value,
            "name": name,
        }
    )


def write(data: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR Coverage from entity data."""
    plan_id = data.get(PLAN_ID)
    plan = _class(
        "plan", plan_id or data.get("plan_name"), data.get("plan_name") if plan_id else None
    )
    group = _class("group", data.get("group_number"), data.get("group_name"))
    payor = dt.compact(
        {
            "reference": data.get(PAYER_REFERENCE),
            "identifier": (
                {"value": data["payer_id"]} if data.get("payer_id") is not None else None
            ),
            "display": data.get("payer"),
        }
    )
    relationship = data.get("relationship")
    period = dt.compact({"start": data.get("period.start"), "end": data.get("period.end")})
    return dt.compact(
        {
            "identifier": (
                [
                    {
                        "type": {"coding": [{"system": dt.V2_0203, "code": "MB"}]},
                        "value": data["member_id"],
                    }
                ]
                if data.get("member_id") is not None
                else None
            ),
            "status": data.get("status"),
            "type": dt.concept(data.get(TYPE_CODE), data.get("type")),
            "subscriber": dt.ref(data.get("subscriber")),
            "subscriberId": data.get("subscriber_id"),
            "beneficiary": dt.ref(data.get("beneficiary")),
            "relationship": (
                {"coding": [{"system": RELATIONSHIP, "code": relationship}]}
                if relationship is not None
                else None
            ),
            "period": period,
            "payor": [payor] if payor else None,
            "class": [c for c in (plan, group) if c is not None],
            "order": data.get("order"),
        }
    )


MAPPING = TypeMapping(
    entity_type="InsurancePlan",
    resource_type="Coverage",
    read=read,
    write=write,
    required=("status", "beneficiary", "payer|payer_id|payer_reference"),
)
