"""Resources without a first-class mapping, kept whole as generic entities (docs/design.md §5.6).

The entity's data is ``{"resource": <the resource without id and meta>, "patient": <reference>}``;
``patient`` is the resource's ``subject``, ``patient`` or ``beneficiary`` reference when it points
at a Patient (or is a ``urn:uuid:`` reference, whose type the string cannot tell), and is omitted
otherwise. FHIR's own ``InsurancePlan`` resource would collide with the first-class InsurancePlan
entity (which maps Coverage), so its generic entity type is ``InsuranceProduct``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping import datatypes as dt
from ehrbridge.fhir.mapping.element import Element, fail
from ehrbridge.fhir.mapping.mapped import Mapped

#: Generic entity types that differ from their resource type: resource type → entity type.
RENAMED = {"InsurancePlan": "InsuranceProduct"}
#: The inverse of :data:`RENAMED`.
RESOURCE_OF = {entity: resource for resource, entity in RENAMED.items()}
_PATIENT_KEYS = ("subject", "patient", "beneficiary")
_VOLATILE = ("resourceType", "id", "meta")


def entity_type_of(resource_type: str) -> str:
    """The generic entity type of ``resource_type``."""
    return RENAMED.get(resource_type, resource_type)


def read(resource: Element, resource_type: str) -> Mapped:
    """Keep ``resource`` whole (without ``id`` and ``meta``) as a generic entity."""
    data: dict[str, Any] = {
        "resource": {k: v for k, v in resource.obj.items() if k not in _VOLATILE}
    }
    for key in _PATIENT_KEYS:
        element = resource.obj.get(key)
        if not isinstance(element, Mapping):
            continue
        target, kind = dt.reference(Element(element, resource.at(key)))
        if target is not None and (
            kind == "Patient" or (kind is None and target.startswith("urn:uuid:"))
        ):
            data["patient"] = target
            break
    return Mapped(entity_type=entity_type_of(resource_type), data=data)


def write(entity_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The resource held by a generic entity, with its ``resourceType``."""
    resource = data.get("resource")
    if not isinstance(resource, Mapping):
        fail(f"{entity_type}.resource", "a generic entity holds its resource as an object")
    return {
        "resourceType": RESOURCE_OF.get(entity_type, entity_type),
        **{k: v for k, v in resource.items() if k not in _VOLATILE},
    }
