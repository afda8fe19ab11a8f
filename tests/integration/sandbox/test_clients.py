"""The sandbox EHR driven by FHIR clients nobody here wrote: SMART's ``fhirclient`` and
``fhirpy``, over a real socket (uvicorn in a background thread, ``running_sandbox``).

fhirclient's ``prepare()`` fetches ``/metadata`` and parses it with its strict R4 models, and the
history Bundle is parsed the same way. fhirpy's ``get_or_create`` sends ``POST
Patient?identifier=...``, which the sandbox refuses by name rather than quietly creating a
duplicate; its ``SearchSet.update`` is a real conditional update, and its ``refresh`` a
conditional read (``If-None-Match`` with the bare versionId, 304).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.patient import Patient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

from ehrbridge.sandbox.app import SandboxApp
from ehrbridge.sandbox.serve import running_sandbox


@pytest.fixture
def sandbox() -> Iterator[tuple[str, SandboxApp]]:
    app = SandboxApp(seed=False)
    try:
        with running_sandbox(app) as base_url:
            yield base_url, app
    finally:
        app.close()


def okafor(value: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": "Okafor", "given": ["Ana"]}],
        "identifier": [{"system": "https://ehr.test/mrn", "value": value}],
        **extra,
    }


def test_smart_fhirclient(sandbox: tuple[str, SandboxApp]) -> None:
    base_url, _ = sandbox
    smart = smart_client.FHIRClient(settings={"app_id": "ehrbridge-test", "api_base": base_url})
    assert smart.prepare()  # GET /metadata, parsed by fhirclient's strict R4 models
    capability = smart.server.capabilityStatement
    assert capability.fhirVersion == "4.0.1"
    patient_rest = next(r for r in capability.rest[0].resource if r.type == "Patient")
    assert {p.name for p in patient_rest.searchParam} >= {"family", "identifier", "_id"}
    assert patient_rest.conditionalUpdate is True

    created = Patient(okafor("1")).create(smart.server)
    id = created["id"]
    read = Patient.read(id, smart.server)
    assert (read.name[0].family, read.meta.versionId) == ("Okafor", "1")
    found = Patient.where(struct={"family": "okafor", "_sort": "-_lastUpdated"})
    assert [p.id for p in found.perform_resources_iter(smart.server)] == [id]

    # Conditional update (PUT [type]?criteria): one match is updated, no match creates.
    updated = smart.server.put_json(
        "Patient?identifier=https://ehr.test/mrn|1", {**read.as_json(), "gender": "female"}
    )
    assert (updated.status_code, updated.json()["id"]) == (200, id)
    as_create = smart.server.put_json("Patient?identifier=https://ehr.test/mrn|2", okafor("2"))
    assert as_create.status_code == 201

    history = Bundle(smart.server.request_json(f"Patient/{id}/_history"))
    assert [(e.request.method, e.response.status) for e in history.entry] == [
        ("PUT", "200 OK"),
        ("POST", "201 Created"),
    ]
    assert Bundle(smart.server.request_json("Patient/_history")).total == 3


def test_fhirpy(sandbox: tuple[str, SandboxApp]) -> None:
    base_url, app = sandbox
    fhir = SyncFHIRClient(base_url)
    patient = fhir.resource("Patient", **okafor("1"))
    patient.save()  # POST Patient
    assert patient.id is not None
    assert [p.id for p in fhir.resources("Patient").search(family="okafor").fetch()] == [patient.id]
    assert fhir.resources("Patient").search(identifier="https://ehr.test/mrn|1").get().id == (
        patient.id
    )
    patient.refresh()  # If-None-Match: 1 -> 304, the resource stays as it is
    assert patient["meta"]["versionId"] == "1"

    # get_or_create sends POST Patient?identifier=...: refused, never a silent duplicate.
    with pytest.raises(OperationOutcome) as refused:
        fhir.resources("Patient").search(identifier="https://ehr.test/mrn|1").get_or_create(
            fhir.resource("Patient", **okafor("1"))
        )
    assert "If-None-Exist" in str(refused.value)
    # The R4 way: a conditional create (ifNoneExist) in a transaction finds the match.
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": okafor("1"),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": "identifier=https://ehr.test/mrn|1",
                },
            }
        ],
    }
    answer = fhir.execute("", method="post", data=transaction)
    assert answer["entry"][0]["response"]["status"] == "200 OK"
    assert answer["entry"][0]["resource"]["id"] == patient.id

    # SearchSet.update is a conditional update: no match creates, one match updates.
    search = fhir.resources("Patient").search(identifier="https://ehr.test/mrn|3")
    created, was_created = search.update(fhir.resource("Patient", **okafor("3")))
    assert was_created
    again, was_created = search.update(fhir.resource("Patient", **okafor("3", gender="male")))
    assert (again.id, was_created, again["meta"]["versionId"]) == (created.id, False, "2")

    assert len(fhir.resources("Patient").fetch_all()) == 2
    assert app.store.count_changes("Patient") == 3  # two creates and one update, nothing else
