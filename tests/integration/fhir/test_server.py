"""The test FHIR server itself (tests/fhirserver): the HTTP behaviour other tests rely on."""

from __future__ import annotations

import httpx
import pytest

from tests.fhir_server import MedplumServer

pytestmark = pytest.mark.fhir_server

PATIENT = {"resourceType": "Patient", "name": [{"family": "Santos"}], "gender": "female"}


async def test_validate_answers_an_outcome(medplum: MedplumServer) -> None:
    async with httpx.AsyncClient(base_url=medplum.base_url) as http:
        ok = await http.post("/Patient/$validate", json=PATIENT)
        bad = await http.post("/Patient/$validate", json={**PATIENT, "birthDate": "03/12/1984"})
    assert ok.status_code == 200
    assert ok.json()["resourceType"] == "OperationOutcome"
    assert bad.status_code == 400
    assert ["Patient.birthDate"] in [issue.get("expression") for issue in bad.json()["issue"]]


async def test_create_sends_fhir_headers_and_reset_forgets(medplum: MedplumServer) -> None:
    async with httpx.AsyncClient(base_url=medplum.base_url) as http:
        created = await http.post("/Patient", json=PATIENT)
        body = created.json()
        assert created.status_code == 201
        assert created.headers["content-type"].startswith("application/fhir+json")
        assert created.headers["etag"] == f'W/"{body["meta"]["versionId"]}"'
        assert created.headers["location"].endswith(
            f"/Patient/{body['id']}/_history/{body['meta']['versionId']}"
        )
        assert "last-modified" in created.headers

        wrong_type = await http.patch(f"/Patient/{body['id']}", json=[])
        assert wrong_type.status_code == 415

        await medplum.reset()
        gone = await http.get(f"/Patient/{body['id']}")
    assert gone.status_code == 404
    assert gone.json()["resourceType"] == "OperationOutcome"
