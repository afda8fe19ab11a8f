"""What a mapping produces (:class:`Mapped`) and what a mapping is (:class:`TypeMapping`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ehrbridge.fhir.mapping.element import Element


@dataclass(frozen=True, kw_only=True)
class Mapped:
    """One FHIR resource as entity data."""

    #: ``Patient``, ``LabResult``, …; the resource type itself for a generic entity
    entity_type: str
    #: flat field paths per docs/entities.md, no None values; reference fields hold the FHIR
    #: reference strings as the resource wrote them (the importer translates them)
    data: dict[str, Any]
    #: a FHIR reference to the entity this record contributes fields to (a PractitionerRole gives
    #: its practitioner's); None when the record is its own entity
    belongs_to: str | None = None


@dataclass(frozen=True, kw_only=True)
class TypeMapping:
    """The two directions between one entity type and one FHIR resource type."""

    entity_type: str  #: e.g. ``LabResult``
    resource_type: str  #: e.g. ``Observation``
    #: resource (validated as it is read) → entity data
    read: Callable[[Element], Mapped]
    #: entity data (already checked) → resource without ``resourceType``/``id``
    write: Callable[[Mapping[str, Any]], dict[str, Any]]
    #: entity fields without which the resource would not be valid FHIR (``to_fhir`` refuses)
    required: tuple[str, ...] = ()
