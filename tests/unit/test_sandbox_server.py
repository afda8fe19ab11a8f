"""The sandbox's FHIR core in-process (the FHIR client over ``httpx.ASGITransport``): search,
paging across versions, seeding, transactions, conditional and no-op writes, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest

from ehrbridge.errors import FhirError, FhirNotFound
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.http import Resource
from ehrbridge.fhir.search import SearchParams
from ehrbridge.sandbox.app import SandboxApp

BASE = "http://sandbox.test/fhir/R4"


def patient(family: str, **extra: object) -> Resource:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Ana"]}], **extra}


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(seed=False)


@pytest.fixture
async def fhir(app: SandboxApp) -> AsyncIterator[FhirClient]:
    async with FhirClient(BASE, transport=httpx.ASGITransport(app=app)) as client:
        yield client


async def test_last_updated_paging_sees_a_resource_updated_mid_paging_again(
    fhir: FhirClient,
) -> None:
    ids = [(await fhir.create(patient(f"P{i}"))).id for i in range(5)]
    params = SearchParams().count(2)
    pages = fhir.search_pages("Patient", params)
    first = await anext(pages)
    assert [e["resource"]["id"] for e in first["entry"]] == ids[:2]

    # An update moves ids[0] behind the cursor: polling by _lastUpdated must see it again.
    moved = await fhir.read("Patient", str(ids[0]))
    await fhir.update({**moved, "gender": "other"})
    rest = [e["resource"]["id"] async for page in pages for e in page.get("entry", [])]
    assert rest == [*ids[2:], ids[0]]


async def test_last_updated_bounds(fhir: FhirClient) -> None:
    first = await fhir.create(patient("Early"))
    assert first.resource is not None
    cut = first.resource["meta"]["lastUpdated"]
    later = await fhir.create(patient("Late"))

    async def ids(value: str) -> list[str | None]:
        return [p["id"] async for p in fhir.search("Patient", {"_lastUpdated": value})]

    assert await ids(f"gt{cut}") == [later.id]
    assert await ids(f"ge{cut}") == [first.id, later.id]
    assert await ids(f"lt{cut}") == []
    assert await ids("gt2000-01-01") == [first.id, later.id]


async def test_patient_demographics_search(fhir: FhirClient) -> None:
    await fhir.create(
        patient(
            "Núñez",
            gender="female",
            birthDate="1984-03-12",
            identifier=[{"system": "https://ehr.test/mrn", "value": "MRN-1"}],
            telecom=[{"system": "phone", "value": "(617) 555-0142"}],
        )
    )
    await fhir.create(patient("Nunes", gender="male", birthDate="1990-01-01"))

    async def families(params: dict[str, str]) -> list[str]:
        return [p["name"][0]["family"] async for p in fhir.search("Patient", params)]

    assert await families({"family": "nunez"}) == ["Núñez"]
    assert await families({"name": "nun"}) == ["Núñez", "Nunes"]
    assert await families({"family:exact": "Nunes"}) == ["Nunes"]
    assert await families({"identifier": "https://ehr.test/mrn|MRN-1"}) == ["Núñez"]
    assert await families({"identifier": "MRN-1"}) == ["Núñez"]
    assert await families({"phone": "+16175550142"}) == ["Núñez"]
    assert await families({"gender": "male"}) == ["Nunes"]
    assert await families({"gender:not": "male"}) == ["Núñez"]
    assert await families({"birthdate": "lt1985"}) == ["Núñez"]
    assert await families({"gender": "female,male", "birthdate": "1990"}) == ["Nunes"]


async def test_an_unknown_search_parameter_is_a_400_with_an_outcome(fhir: FhirClient) -> None:
    with pytest.raises(FhirError) as caught:
        await anext(fhir.search("Patient", {"shoe-size": "44"}))
    assert caught.value.status == 400
    assert "shoe-size" in caught.value.issues[0].text


async def test_the_seeded_clinic_is_the_sample_transaction() -> None:
    app = SandboxApp()
    async with FhirClient(BASE, transport=httpx.ASGITransport(app=app)) as fhir:
        patients = [p async for p in fhir.search("Patient")]
        assert len(patients) == 6
        assert all(p["meta"]["versionId"] == "1" for p in patients)
        appointments = [
            a async for a in fhir.search("Appointment", {"patient": "Patient/pat-1001"})
        ]
        assert appointments
        for appointment in appointments:
            actors = [p["actor"]["reference"] for p in appointment["participant"]]
            assert "Patient/pat-1001" in actors
        encounters = [
            e async for e in fhir.search("Encounter", {"date": "ge2000", "status": "finished"})
        ]
        assert encounters and {e["status"] for e in encounters} == {"finished"}
    # Reset empties and seeds again: still version 1.
    app.reset()
    current = app.store.current("Patient", "pat-1001")
    assert current is not None and current.version == 1


async def test_a_failing_transaction_rolls_back_every_entry(fhir: FhirClient) -> None:
    urn = f"urn:uuid:{uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": urn,
                "resource": patient("Kept"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    **patient("Put"),
                    "id": "put-1",
                    "link": [{"other": {"reference": urn}, "type": "seealso"}],
                },
                "request": {"method": "PUT", "url": "Patient/put-1"},
            },
            {"request": {"method": "DELETE", "url": "Patient/never-was"}},
        ],
    }
    with pytest.raises(FhirNotFound):
        await fhir.transaction(bundle)
    assert [p async for p in fhir.search("Patient")] == []

    bundle["entry"] = bundle["entry"][:2]
    response = await fhir.transaction(bundle)
    assert [e["response"]["status"] for e in response["entry"]] == ["201 Created", "201 Created"]
    kept_id = response["entry"][0]["resource"]["id"]
    put = await fhir.read("Patient", "put-1")
    assert put["link"][0]["other"]["reference"] == f"Patient/{kept_id}"
    assert len([p async for p in fhir.search("Patient")]) == 2


async def test_conditional_and_unchanged_writes(fhir: FhirClient) -> None:
    resource = patient("Okafor", identifier=[{"system": "s", "value": "1"}])
    first = await fhir.create(resource, if_none_exist={"identifier": "s|1"})
    assert first.resource is not None
    again = await fhir.update(first.resource)  # the same content: no new version
    assert (again.status, again.version_id) == (200, "1")
    as_create = await fhir.update({**patient("Client"), "id": "client-id"})
    assert (as_create.status, as_create.version_id) == (201, "1")
    await fhir.create(resource)
    with pytest.raises(FhirError) as caught:  # two matches now
        await fhir.create(resource, if_none_exist={"identifier": "s|1"})
    assert caught.value.status == 412


async def test_deleted_resources_are_gone_but_keep_their_history(fhir: FhirClient) -> None:
    created = await fhir.create(patient("Haddad"))
    assert created.id is not None
    await fhir.delete("Patient", created.id)
    with pytest.raises(FhirNotFound) as caught:
        await fhir.read("Patient", created.id)
    assert caught.value.status == 410
    assert [v["meta"]["versionId"] async for v in fhir.history("Patient", created.id)] == ["1"]
    assert (await fhir.vread("Patient", created.id, "1"))["name"][0]["family"] == "Haddad"
    recreated = await fhir.update({**patient("Haddad"), "id": created.id})
    assert (recreated.status, recreated.version_id) == (201, "3")


async def test_http_details(app: SandboxApp) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        created = await http.post(
            f"{BASE}/Patient",
            content=b'{"resourceType": "Patient"}',
            headers={"Content-Type": "application/fhir+json"},
        )
        assert created.status_code == 201
        assert created.headers["content-type"].startswith("application/fhir+json")
        assert created.headers["etag"] == 'W/"1"'
        assert created.headers["location"].startswith(f"{BASE}/Patient/")
        assert "last-modified" in created.headers
        wrong_type = await http.post(
            f"{BASE}/Patient", content=b"<x/>", headers={"Content-Type": "text/xml"}
        )
        assert wrong_type.status_code == 415
        not_json = await http.post(
            f"{BASE}/Patient", content=b"{", headers={"Content-Type": "application/fhir+json"}
        )
        assert not_json.status_code == 400
        assert not_json.json()["resourceType"] == "OperationOutcome"
        unknown = await http.get(f"{BASE}/Patient/nobody")
        assert unknown.status_code == 404
        assert unknown.json()["issue"][0]["code"] == "not-found"
