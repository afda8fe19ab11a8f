"""Mappings between FHIR R4 resources and entity data, both directions (docs/design.md §5.6).

One module per entity type; this registry picks the mapping by resource type (reading) or entity
type (writing). What each mapping keeps and drops is in ``docs/fhir-mappings.md``.

>>> mapped = to_entity({"resourceType": "Patient", "id": "p1", "gender": "female",
...                     "generalPractitioner": [{"reference": "urn:uuid:0f1e"}]})
>>> mapped.entity_type, mapped.data
('Patient', {'gender': 'female', 'general_practitioner': 'urn:uuid:0f1e'})
>>> to_fhir("Patient", mapped.data, id="p1")["generalPractitioner"]
[{'reference': 'urn:uuid:0f1e'}]
>>> to_entity({"resourceType": "Goal", "subject": {"reference": "Patient/p1"}}).data["patient"]
'Patient/p1'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from ehrbridge.errors import MappingError
from ehrbridge.fhir.mapping import (
    appointment,
    encounter,
    generic,
    insurance_plan,
    lab_result,
    location,
    medication_order,
    patient,
    practitioner,
)
from ehrbridge.fhir.mapping.element import FHIR_ID, Element, check_entity_data, fail
from ehrbridge.fhir.mapping.mapped import Mapped, TypeMapping
from ehrbridge.fhir.mapping.practitioner import write_role
from ehrbridge.fhir.mapping.resource_types import R4_RESOURCE_TYPES
from ehrbridge.worldmodel.entities import spec_for

__all__ = [
    "MAPPINGS",
    "R4_RESOURCE_TYPES",
    "Mapped",
    "MappingError",
    "TypeMapping",
    "practitioner_role_to_fhir",
    "reference_paths",
    "to_entity",
    "to_fhir",
]

#: The first-class mappings by entity type.
MAPPINGS: Mapping[str, TypeMapping] = MappingProxyType(
    {
        m.entity_type: m
        for m in (
            patient.MAPPING,
            practitioner.MAPPING,
            location.MAPPING,
            appointment.MAPPING,
            encounter.MAPPING,
            medication_order.MAPPING,
            lab_result.MAPPING,
            insurance_plan.MAPPING,
        )
    }
)
_BY_RESOURCE = {m.resource_type: m for m in MAPPINGS.values()}


def _resource_type(resource: Mapping[str, Any]) -> str:
    resource_type = resource.get("resourceType")
    if resource_type is None:
        fail("resourceType", "required but missing")
    if not isinstance(resource_type, str):
        fail("resourceType", "expected a string")
    if resource_type not in R4_RESOURCE_TYPES:
        # A resource type names a kind of record, not a person: safe to show (shortened).
        fail("resourceType", f"unknown resourceType {resource_type[:64]!r} (not a FHIR R4 type)")
    return resource_type


def to_entity(
    resource: Mapping[str, Any], *, unmapped: Literal["keep", "refuse"] = "keep"
) -> Mapped:
    """Map one FHIR R4 resource to entity data, validating it on the way.

    Raises :class:`MappingError` (with ``.path`` such as ``Patient.birthDate``) for a resource that
    is not valid enough to map: missing or unknown ``resourceType``, a bad ``id``, a missing
    required element of a mapped type, a primitive of the wrong type, or a value the entity type
    refuses. A resource type without a mapping is kept as a generic entity, or refused when
    ``unmapped="refuse"``.
    """
    if not isinstance(resource, Mapping):
        fail("resource", "expected a JSON object")
    resource_type = _resource_type(resource)
    element = Element(resource, resource_type)
    resource_id = element.string("id")
    if resource_id is not None and not FHIR_ID.fullmatch(resource_id):
        fail(element.at("id"), "not a FHIR id ([A-Za-z0-9-.]{1,64})")
    if resource_type == "PractitionerRole":
        return practitioner.read_role(element)
    mapping = _BY_RESOURCE.get(resource_type)
    if mapping is not None and (
        resource_type != "Observation" or lab_result.is_laboratory(resource)
    ):
        return mapping.read(element)
    if unmapped == "refuse":
        what = "Observation without a laboratory category" if mapping else "resource type"
        fail(resource_type, f"no entity mapping for this {what} (unmapped resources are refused)")
    return generic.read(element, resource_type)


def to_fhir(entity_type: str, data: Mapping[str, Any], *, id: str | None = None) -> dict[str, Any]:
    """The FHIR R4 resource for entity data of ``entity_type``; ``id`` becomes its ``id``.

    Reference fields must hold FHIR reference strings (``Patient/123``, ``urn:uuid:…``). A
    generic entity (``Observation``, ``Claim``, …) gives back the resource it holds. Raises
    :class:`MappingError` for data the entity type refuses, for data missing what FHIR requires
    (e.g. an Encounter without ``class``), and for an entity type with no FHIR counterpart.
    """
    if id is not None and not FHIR_ID.fullmatch(id):
        fail(f"{entity_type}.id", "not a FHIR id ([A-Za-z0-9-.]{1,64})")
    mapping = MAPPINGS.get(entity_type)
    if mapping is not None:
        check_entity_data(entity_type, data)
        for required in mapping.required:
            if all(data.get(path) is None for path in required.split("|")):
                fail(f"{entity_type}.{required}", "required by FHIR R4 but missing")
        body = mapping.write(data)
        resource_type = mapping.resource_type
    elif entity_type in R4_RESOURCE_TYPES or entity_type in generic.RESOURCE_OF:
        body = generic.write(entity_type, data)
        resource_type = body.pop("resourceType")
    else:
        fail(entity_type, "no FHIR mapping for this entity type")
    head: dict[str, Any] = {"resourceType": resource_type}
    if id is not None:
        head["id"] = id
    return {**head, **body}


def practitioner_role_to_fhir(
    data: Mapping[str, Any], *, practitioner: str, id: str | None = None
) -> dict[str, Any]:
    """A PractitionerRole of ``practitioner`` (a FHIR reference) from Practitioner entity data.

    Writes the role fields (``specialty``, ``locations``, phones, email, ``active``): the
    inverse of reading a PractitionerRole, which gives ``Mapped(belongs_to=practitioner)``.
    """
    if id is not None and not FHIR_ID.fullmatch(id):
        fail("PractitionerRole.id", "not a FHIR id ([A-Za-z0-9-.]{1,64})")
    check_entity_data("Practitioner", data)
    head: dict[str, Any] = {"resourceType": "PractitionerRole"}
    if id is not None:
        head["id"] = id
    return {**head, **write_role(data, practitioner)}


def reference_paths(mapped: Mapped) -> dict[str, str | list[str]]:
    """The fields of ``mapped`` that hold FHIR references, with their values.

    These are what the importer translates to entity ids: the ``reference``/``reference_list``
    fields of the entity type, and a generic entity's
    ``patient``. ``belongs_to`` is not among them (it is not a field).
    """
    spec = spec_for(mapped.entity_type)
    paths: set[str] = set()
    if spec is None:
        paths.add("patient")
    else:
        paths.update(f.path for f in spec.fields if f.kind in ("reference", "reference_list"))
    return {path: value for path, value in mapped.data.items() if path in paths}
