"""The FHIR client against real FHIR servers: Medplum's router (tests/fhir_server.py) and the
sandbox EHR (tests/sandbox_server.py), so the sandbox cannot drift from real FHIR behaviour.

The ``fhir_base_url`` fixture is parametrised by server, so another server (HAPI, a vendor
sandbox) can join by adding a param that starts it and returns its empty base URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from ehrbridge.errors import FhirError, FhirNotFound, FhirPreconditionFailed
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.http import Resource
from ehrbridge.fhir.search import SearchParams
from tests.fhir_server import MedplumServer
from tests.sandbox_server import SandboxServer

pytestmark = pytest.mark.fhir_server


@pytest.fixture(params=["medplum", "sandbox"])
async def fhir_base_url(request: pytest.FixtureRequest) -> str:
    """The base URL of an empty FHIR R4 server, per server under test."""
    server: MedplumServer | SandboxServer = request.getfixturevalue(request.param)
    await server.reset()
    return server.base_url


@pytest.fixture
async def fhir(fhir_base_url: str) -> AsyncIterator[FhirClient]:
    async with FhirClient(fhir_base_url) as client:
        yield client


def patient(family: str, *, given: str = "Ana", birth_date: str = "1984-03-12") -> Resource:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": birth_date,
    }


async def test_create_read_update_vread(fhir: FhirClient) -> None:
    created = await fhir.create(patient("Santos"))
    assert created.created
    assert created.id is not None
    assert created.version_id is not None
    assert created.location is not None
    assert created.id in created.location

    read = await fhir.read("Patient", created.id)
    assert read["name"][0]["family"] == "Santos"
    assert read["meta"]["versionId"] == created.version_id

    read["telecom"] = [{"system": "phone", "value": "+16175550142"}]
    updated = await fhir.update(read, if_match=created.version_id)
    assert not updated.created
    assert updated.version_id not in (None, created.version_id)

    first = await fhir.vread("Patient", created.id, created.version_id)
    assert "telecom" not in first
    assert (await fhir.read("Patient", created.id))["telecom"][0]["value"] == "+16175550142"


async def test_conditional_create_returns_the_existing_resource(fhir: FhirClient) -> None:
    system, value = "https://ehr.test/mrn", f"MRN-{uuid4().hex[:8]}"
    resource = {**patient("Okafor"), "identifier": [{"system": system, "value": value}]}
    criteria = {"identifier": f"{system}|{value}"}

    first = await fhir.create(resource, if_none_exist=criteria)
    second = await fhir.create(resource, if_none_exist=criteria)

    assert first.created
    assert not second.created
    assert second.id == first.id
    found = [p async for p in fhir.search("Patient", criteria)]
    assert [p["id"] for p in found] == [first.id]


async def test_update_with_a_stale_version_is_refused(fhir: FhirClient) -> None:
    created = await fhir.create(patient("Nguyen"))
    assert created.resource is not None and created.id is not None
    await fhir.update({**created.resource, "gender": "male"})

    with pytest.raises(FhirPreconditionFailed) as caught:
        await fhir.update({**created.resource, "gender": "other"}, if_match=created.version_id)
    assert caught.value.status == 412
    assert (await fhir.read("Patient", created.id))["gender"] == "male"


async def test_patch(fhir: FhirClient) -> None:
    created = await fhir.create(patient("Kowalski"))
    assert created.id is not None
    patched = await fhir.patch(
        "Patient",
        created.id,
        [
            {"op": "replace", "path": "/birthDate", "value": "1990-07-01"},
            {"op": "add", "path": "/active", "value": True},
        ],
    )
    assert patched.version_id != created.version_id
    read = await fhir.read("Patient", created.id)
    assert (read["birthDate"], read["active"]) == ("1990-07-01", True)


async def test_patch_with_a_stale_version_is_refused(fhir: FhirClient) -> None:
    created = await fhir.create(patient("Kowalski"))
    assert created.id is not None
    await fhir.patch("Patient", created.id, [{"op": "add", "path": "/active", "value": True}])
    with pytest.raises(FhirPreconditionFailed):
        await fhir.patch(
            "Patient",
            created.id,
            [{"op": "add", "path": "/active", "value": False}],
            if_match=created.version_id,
        )


async def test_delete_then_read_is_not_found(fhir: FhirClient) -> None:
    created = await fhir.create(patient("Haddad"))
    assert created.id is not None
    await fhir.delete("Patient", created.id)
    with pytest.raises(FhirNotFound) as caught:
        await fhir.read("Patient", created.id)
    assert caught.value.status in (404, 410)


async def test_an_invalid_resource_is_refused_with_its_issues(fhir: FhirClient) -> None:
    with pytest.raises(FhirError) as caught:
        await fhir.create({**patient("Bad"), "birthDate": "12/03/1984"})
    assert caught.value.status == 400
    assert any("Patient.birthDate" in issue.expression for issue in caught.value.issues)


async def test_a_code_outside_a_required_value_set_is_refused(fhir: FhirClient) -> None:
    with pytest.raises(FhirError) as caught:
        await fhir.create({**patient("Bad"), "gender": "F"})
    assert caught.value.status == 400
    assert [issue.expression for issue in caught.value.issues] == [("Patient.gender",)]


async def test_search_by_parameters(fhir: FhirClient) -> None:
    await fhir.create(patient("Santos", given="Maria", birth_date="1984-03-12"))
    await fhir.create(patient("Santos", given="Lucia", birth_date="1990-05-01"))
    await fhir.create(patient("Silva", given="Maria", birth_date="1984-03-12"))

    async def givens(params: SearchParams) -> set[str]:
        return {p["name"][0]["given"][0] async for p in fhir.search("Patient", params)}

    assert await givens(SearchParams().where(family="Santos")) == {"Maria", "Lucia"}
    assert await givens(SearchParams().where(family="Santos", birthdate="1984-03-12")) == {"Maria"}
    assert await givens(SearchParams().where(birthdate="ge1985-01-01")) == {"Lucia"}
    assert await givens(SearchParams().where(given="Maria").count(1)) == {"Maria"}
    assert await givens(SearchParams().where(family="Nobody")) == set()


async def test_search_by_reference(fhir: FhirClient) -> None:
    subject = await fhir.create(patient("Obs"))
    other = await fhir.create(patient("Other"))
    for who in (subject, subject, other):
        await fhir.create(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "heart rate"},
                "subject": {"reference": f"Patient/{who.id}"},
            }
        )
    found = [o async for o in fhir.search("Observation", {"subject": f"Patient/{subject.id}"})]
    assert len(found) == 2
    assert {o["subject"]["reference"] for o in found} == {f"Patient/{subject.id}"}


async def test_search_pages_through_next_links(fhir: FhirClient) -> None:
    family = f"Page{uuid4().hex[:6]}"
    created = {(await fhir.create(patient(family, given=f"G{i}"))).id for i in range(11)}

    params = SearchParams().where(family=family).count(4)
    pages = [page async for page in fhir.search_pages("Patient", params)]
    assert [len(page.get("entry", [])) for page in pages] == [4, 4, 3]
    assert all(page["total"] == 11 for page in pages)

    ids = [p["id"] async for p in fhir.search("Patient", params)]
    assert len(ids) == 11
    assert set(ids) == created


async def test_transaction_resolves_urn_uuid_references(fhir: FhirClient) -> None:
    patient_urn = f"urn:uuid:{uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_urn,
                "resource": patient("Tx"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": patient_urn},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = await fhir.transaction(bundle)

    statuses = [entry["response"]["status"] for entry in response["entry"]]
    assert [s.split()[0] for s in statuses] == ["201", "201"]
    patient_id = response["entry"][0]["resource"]["id"]
    observation_id = response["entry"][1]["resource"]["id"]
    observation = await fhir.read("Observation", observation_id)
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"


async def test_a_failing_transaction_writes_nothing(fhir: FhirClient) -> None:
    family = f"Atomic{uuid4().hex[:6]}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(family), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {"resourceType": "Observation", "status": "final"},  # no code
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    with pytest.raises(FhirError) as caught:
        await fhir.transaction(bundle)
    assert caught.value.status == 400
    assert [p async for p in fhir.search("Patient", {"family": family})] == []


async def test_batch_with_one_bad_entry(fhir: FhirClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient("Batch"), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {"resourceType": "Observation", "status": "final"},  # no code
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        ],
    }
    response = await fhir.batch(bundle)

    statuses = [entry["response"]["status"].split()[0] for entry in response["entry"]]
    assert statuses == ["201", "400", "404"]
    outcome = response["entry"][1]["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    created_id = response["entry"][0]["resource"]["id"]
    assert (await fhir.read("Patient", created_id))["name"][0]["family"] == "Batch"


async def test_instance_history_newest_first(fhir: FhirClient) -> None:
    created = await fhir.create(patient("History"))
    assert created.resource is not None and created.id is not None
    second = await fhir.update({**created.resource, "gender": "male"})
    third = await fhir.update({**created.resource, "gender": "other"})

    for _ in range(2):  # the router once reversed its history in place on every read
        versions = [v async for v in fhir.history("Patient", created.id)]
        assert [v["meta"]["versionId"] for v in versions] == [
            third.version_id,
            second.version_id,
            created.version_id,
        ]
        assert [v["gender"] for v in versions] == ["other", "male", "female"]
