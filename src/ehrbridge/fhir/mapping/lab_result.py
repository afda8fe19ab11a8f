"""LabResult ↔ FHIR Observation with a ``laboratory`` category.

https://hl7.org/fhir/R4/observation.html. Observations of other categories (vital signs, surveys,
…) are not lab results; the registry keeps them as generic ``Observation`` entities.
``report`` is not read from an Observation (the link runs from DiagnosticReport.result to the
Observation), so only sources that give it flat fill it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping import datatypes as dt
from ehrbridge.fhir.mapping.element import Element, Fields
from ehrbridge.fhir.mapping.mapped import Mapped, TypeMapping

CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def is_laboratory(resource: Mapping[str, Any]) -> bool:
    """Whether an Observation has the ``laboratory`` category (checked loosely: just routing).

    >>> is_laboratory({"category": [{"coding": [{"code": "laboratory"}]}]})
    True
    """
    categories = resource.get("category")
    if not isinstance(categories, list):
        return False
    for category in categories:
        codings = category.get("coding") if isinstance(category, Mapping) else None
        for coding in codings if isinstance(codings, list) else ():
            if (
                isinstance(coding, Mapping)
                and coding.get("code") == "laboratory"
                and coding.get("system") in (CATEGORY_SYSTEM, None)
            ):
                return True
    return False


def read(resource: Element) -> Mapped:
    """Map a FHIR Observation of category laboratory."""
    out = Fields("LabResult")
    out.set("status", resource.string("status", required=True), source=resource.at("status"))
    out.set("category", "laboratory", source=resource.at("category"))
    code = resource.child("code", required=True)
    out.set("code", dt.concept_token(code), source=resource.at("code"))
    out.set("display", dt.concept_text(code), source=resource.at("code"))
    quantity = resource.child("valueQuantity")
    if quantity is not None:
        out.set("value.quantity", quantity.decimal("value"), source=quantity.at("value"))
        unit = quantity.string("unit") or quantity.string("code")
        out.set("value.unit", unit, source=quantity.at("unit"))
    out.set("value.string", resource.string("valueString"), source=resource.at("valueString"))
    out.set(
        "value.code",
        dt.concept_token(resource.child("valueCodeableConcept")),
        source=resource.at("valueCodeableConcept"),
    )
    reference_range = resource.first("referenceRange")
    if reference_range is not None:
        for key in ("low", "high"):
            bound = reference_range.child(key)
            if bound is not None:
                out.set(f"reference_range.{key}", bound.decimal("value"), source=bound.at("value"))
        out.set(
            "reference_range.text",
            reference_range.string("text"),
            source=reference_range.at("text"),
        )
    interpretation = resource.first("interpretation")
    out.set(
        "interpretation",
        dt.concept_code(interpretation),
        source=resource.at("interpretation"),
    )
    dt.set_datetime(
        out,
        "effective",
        resource.datetime("effectiveDateTime"),
        source=resource.at("effectiveDateTime"),
    )
    out.set("issued", resource.instant("issued"), source=resource.at("issued"))
    out.set(
        "patient",
        dt.reference_to(resource.child("subject"), "Patient"),
        source=resource.at("subject"),
    )
    out.set(
        "encounter",
        dt.reference_to(resource.child("encounter"), "Encounter"),
        source=resource.at("encounter"),
    )
    note = resource.first("note")
    if note is not None:
        out.set("note", note.string("text", required=True), source=note.at("text"))
    return Mapped(entity_type="LabResult", data=out.data)


def write(data: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR Observation (category laboratory) from entity data."""
    category = data.get("category") or "laboratory"
    quantity = dt.compact({"value": data.get("value.quantity"), "unit": data.get("value.unit")})
    value_code = data.get("value.code")
    reference_range = dt.compact(
        {
            "low": (
                {"value": data["reference_range.low"]}
                if data.get("reference_range.low") is not None
                else None
            ),
            "high": (
                {"value": data["reference_range.high"]}
                if data.get("reference_range.high") is not None
                else None
            ),
            "text": data.get("reference_range.text"),
        }
    )
    interpretation = data.get("interpretation")
    note = data.get("note")
    return dt.compact(
        {
            "status": data.get("status"),
            "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
            "code": dt.concept(data.get("code"), data.get("display")),
            "subject": dt.ref(data.get("patient")),
            "encounter": dt.ref(data.get("encounter")),
            "effectiveDateTime": dt.get_datetime(data, "effective"),
            "issued": data.get("issued"),
            **_value(quantity, value_code, data.get("value.string")),
            "interpretation": (
                [{"coding": [{"system": INTERPRETATION, "code": interpretation}]}]
                if interpretation is not None
                else None
            ),
            "note": [{"text": note}] if note is not None else None,
            "referenceRange": [reference_range] if reference_range else None,
        }
    )


def _value(quantity: dict[str, Any], code: str | None, text: str | None) -> dict[str, Any]:
    """``value[x]``: one choice only, the first of quantity, code, string that is present."""
    if quantity:
        return {"valueQuantity": quantity}
    if code is not None:
        return {"valueCodeableConcept": {"coding": [dt.coding_of(code)]}}
    return {"valueString": text}


MAPPING = TypeMapping(
    entity_type="LabResult",
    resource_type="Observation",
    read=read,
    write=write,
    required=("status", "code|display"),
)
