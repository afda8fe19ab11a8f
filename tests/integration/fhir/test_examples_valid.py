"""The hand-made FHIR examples and the mappings' FHIR output pass Medplum's R4 validator.

Each resource is posted to ``{base}/{Type}/$validate`` on the test FHIR server
(``tests/fhir_server.py``), which answers 200 for a valid resource and 400 with an
OperationOutcome naming the issues otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ehrbridge.fhir.mapping import to_entity
from tests.fhir_examples import back_to_fhir, example_files, load, synthea_resources
from tests.fhir_server import MedplumServer

pytestmark = pytest.mark.fhir_server

#: How many Synthea resources of each mapped type are validated after a round trip.
PER_TYPE = 80


@pytest.fixture(scope="module")
def client(medplum: MedplumServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=medplum.base_url, timeout=30) as client:
        yield client


def _assert_valid(client: httpx.Client, resource: dict[str, Any], what: str) -> None:
    response = client.post(
        f"/{resource['resourceType']}/$validate",
        json=resource,
        headers={"Content-Type": "application/fhir+json"},
    )
    issues = [
        (i.get("severity"), i.get("expression"), i.get("details", {}).get("text"))
        for i in response.json().get("issue", [])
    ]
    assert response.status_code == 200, f"{what}: {issues}"


def _sample() -> list[dict[str, Any]]:
    """Up to PER_TYPE resources of each mapped type, spread over all the bundles."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in synthea_resources():
        by_type.setdefault(resource["resourceType"], []).append(resource)
    sample = []
    for resources in by_type.values():
        step = max(1, len(resources) // PER_TYPE)
        sample += resources[::step][:PER_TYPE]
    return sample


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_hand_made_example_is_valid_r4(client: httpx.Client, path: Path) -> None:
    _assert_valid(client, load(path), path.name)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_fhir_output_of_hand_made_example_is_valid_r4(client: httpx.Client, path: Path) -> None:
    resource = load(path)
    _assert_valid(client, back_to_fhir(to_entity(resource), resource["id"]), path.name)


def test_fhir_output_of_synthea_resources_is_valid_r4(client: httpx.Client) -> None:
    sample = _sample()
    assert len(sample) >= 300
    for resource in sample:
        output = back_to_fhir(to_entity(resource), resource["id"])
        _assert_valid(client, output, f"{resource['resourceType']}/{resource['id']}")


def test_the_validator_refuses_an_invalid_resource(client: httpx.Client) -> None:
    # Guards the tests above: a resource missing required elements must get a 400.
    broken = load(example_files()[0])
    broken.pop("status")
    broken["participant"] = [{"actor": {"reference": "Patient/1"}}]
    response = client.post(f"/{broken['resourceType']}/$validate", json=broken)
    assert response.status_code == 400
