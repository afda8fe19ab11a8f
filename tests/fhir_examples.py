"""FHIR resources of the mapped types: every one in the Synthea bundles, and the hand-made examples.

Synthea has no Appointment, Location, Coverage or PractitionerRole, so those come from the
hand-made examples in ``tests/fixtures/fhir`` (valid R4, checked with Medplum's validator by
``tests/integration/fhir/test_examples_valid.py``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from ehrbridge.fhir.mapping import Mapped, practitioner_role_to_fhir, to_fhir
from tests.paths import FIXTURES
from tests.synthea import synthea_dir

EXAMPLES = FIXTURES / "fhir"
#: The resource types the mappings turn into first-class entities (Observation: laboratory only).
MAPPED_TYPES = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Appointment",
    "Encounter",
    "MedicationRequest",
    "Observation",
    "Coverage",
)


def is_lab(resource: dict[str, Any]) -> bool:
    """Whether an Observation has the laboratory category."""
    return any(
        coding.get("code") == "laboratory"
        for category in resource.get("category", [])
        for coding in category.get("coding", [])
    )


def _mapped(resource: dict[str, Any]) -> bool:
    kind = resource["resourceType"]
    return kind in MAPPED_TYPES and (kind != "Observation" or is_lab(resource))


@functools.cache
def synthea_resources() -> tuple[dict[str, Any], ...]:
    """Every resource of a mapped type in the 60 patient bundles and the two shared bundles."""
    found: list[dict[str, Any]] = []
    for path in sorted(synthea_dir().glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        found += [e["resource"] for e in bundle["entry"] if _mapped(e["resource"])]
    return tuple(found)


def example_files() -> list[Path]:
    """The hand-made examples, in name order."""
    return sorted(EXAMPLES.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    """One JSON resource."""
    resource: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return resource


def back_to_fhir(mapped: Mapped, resource_id: str | None) -> dict[str, Any]:
    """The FHIR resource a mapped record gives back: a PractitionerRole for ``belongs_to``."""
    if mapped.belongs_to is not None:
        return practitioner_role_to_fhir(
            mapped.data, practitioner=mapped.belongs_to, id=resource_id
        )
    return to_fhir(mapped.entity_type, mapped.data, id=resource_id)
