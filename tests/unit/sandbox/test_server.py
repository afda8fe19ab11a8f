"""The sandbox's FHIR core in-process (the FHIR client over ``httpx.ASGITransport``): search,
paging across versions, seeding, transactions, conditional and no-op writes, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
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


# -- query parameters on writes, conditional update, patch and delete ----------------------------


@pytest.fixture
async def http(app: SandboxApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE + "/"
    ) as client:
        yield client


def mrn(value: str, **extra: object) -> Resource:
    return patient("Okafor", identifier=[{"system": "s", "value": value}], **extra)


async def count(http: httpx.AsyncClient, **query: str) -> int:
    response = await http.get("Patient", params={**query, "_count": "0"})
    assert response.status_code == 200
    total: int = response.json()["total"]
    return total


async def test_query_parameters_on_a_write_are_refused_never_ignored(
    http: httpx.AsyncClient,
) -> None:
    """fhirpy's get_or_create sends ``POST Patient?identifier=...``: it must not quietly create
    a duplicate."""
    assert (await http.post("Patient", json=mrn("1"))).status_code == 201
    refused = await http.post("Patient", params={"identifier": "s|1"}, json=mrn("1"))
    assert refused.status_code == 400
    text = refused.json()["issue"][0]["details"]["text"]
    assert text == (
        "create takes no query parameter identifier; for a conditional create send the "
        "criteria in If-None-Exist"
    )
    id = (await http.get("Patient")).json()["entry"][0]["resource"]["id"]
    for method, body in (("PUT", {**mrn("1"), "id": id}), ("DELETE", None)):
        response = await http.request(method, f"Patient/{id}", params={"x": "1"}, json=body)
        assert response.status_code == 400, method
    patched = await http.patch(
        f"Patient/{id}?x=1", json=[], headers={"Content-Type": "application/json-patch+json"}
    )
    assert patched.status_code == 400
    assert (await http.get(f"Patient/{id}", params={"_summary": "true"})).status_code == 400
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": mrn("1"), "request": {"method": "POST", "url": "Patient?identifier=s|1"}}
        ],
    }
    in_a_transaction = await http.post("", json=bundle)
    assert in_a_transaction.status_code == 400
    assert await count(http) == 1
    version = (await http.get(f"Patient/{id}")).json()["meta"]["versionId"]
    assert version == "1"


async def test_conditional_update_creates_updates_or_refuses(http: httpx.AsyncClient) -> None:
    """https://hl7.org/fhir/R4/http.html#cond-update"""
    created = await http.put("Patient", params={"identifier": "s|1"}, json=mrn("1"))
    assert created.status_code == 201, created.text
    id = created.json()["id"]
    updated = await http.put(
        "Patient", params={"identifier": "s|1"}, json=mrn("1", gender="female")
    )
    assert (updated.status_code, updated.json()["id"]) == (200, id)
    assert updated.headers["etag"] == 'W/"2"'
    same_id = await http.put("Patient?identifier=s|1", json={**mrn("1"), "id": id})
    assert (same_id.status_code, same_id.json()["meta"]["versionId"]) == (200, "3")
    other_id = await http.put("Patient?identifier=s|1", json={**mrn("1"), "id": "other"})
    assert other_id.status_code == 400
    stale = await http.put("Patient?identifier=s|1", json=mrn("1"), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    # No match, with an id: update as create; an id that exists but does not match: 409.
    as_create = await http.put("Patient?identifier=s|2", json={**mrn("2"), "id": "given-id"})
    assert (as_create.status_code, as_create.json()["id"]) == (201, "given-id")
    taken = await http.put("Patient?identifier=s|3", json={**mrn("3"), "id": "given-id"})
    assert taken.status_code == 409
    await http.post("Patient", json=mrn("2"))
    several = await http.put("Patient?identifier=s|2", json=mrn("2"))
    assert several.status_code == 412
    for criteria in ("", "_count=1", "_sort=family"):
        refused = await http.put(f"Patient?{criteria}".rstrip("?"), json=mrn("9"))
        assert refused.status_code == 400, criteria
    assert await count(http) == 3


async def test_conditional_patch_and_delete(http: httpx.AsyncClient) -> None:
    await http.post("Patient", json=mrn("1"))
    await http.post("Patient", json=mrn("2"))
    await http.post("Patient", json=mrn("2"))
    json_patch = {"Content-Type": "application/json-patch+json"}
    ops = [{"op": "add", "path": "/active", "value": True}]
    patched = await http.patch("Patient?identifier=s|1", json=ops, headers=json_patch)
    assert (patched.status_code, patched.json()["active"]) == (200, True)
    for criteria, status in (("s|9", 404), ("s|2", 412)):
        response = await http.patch(f"Patient?identifier={criteria}", json=ops, headers=json_patch)
        assert response.status_code == status
    assert (await http.delete("Patient?identifier=s|2")).status_code == 412
    assert (await http.delete("Patient?identifier=s|9")).status_code == 404
    assert (await http.delete("Patient?identifier=s|1")).status_code == 200
    assert await count(http) == 2


async def test_a_conditional_update_in_a_transaction_resolves_its_full_url(
    http: httpx.AsyncClient,
) -> None:
    urn = f"urn:uuid:{uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": urn, "resource": mrn("7"), "request": {"method": "PUT", "url": "Patient?identifier=s|7"}},  # noqa: E501
            {
                "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": urn}},  # noqa: E501
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }  # fmt: skip
    for status in ("201 Created", "200 OK"):  # creates, then matches and updates
        response = await http.post("", json=bundle)
        assert response.status_code == 200, response.text
        entries = response.json()["entry"]
        assert entries[0]["response"]["status"] == status
        id = entries[0]["resource"]["id"]
        subject = entries[1]["resource"]["subject"]["reference"]
        assert subject == f"Patient/{id}"
    assert await count(http) == 1


# -- history and conditional reads -----------------------------------------------------------


async def test_history_records_what_wrote_each_version_at_every_level(
    http: httpx.AsyncClient,
) -> None:
    created = (await http.post("Patient", json=mrn("1"))).json()
    id = created["id"]
    await http.put(f"Patient/{id}", json={**created, "gender": "male"})
    await http.patch(
        f"Patient/{id}",
        json=[{"op": "add", "path": "/active", "value": True}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    await http.delete(f"Patient/{id}")
    await http.put("Patient/by-put", json={**mrn("2"), "id": "by-put"})
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    await http.post("Observation", json=observation)

    def steps(bundle: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [
            (e["request"]["method"], e["request"]["url"], e["response"]["status"])
            for e in bundle["entry"]
        ]

    instance = (await http.get(f"Patient/{id}/_history")).json()
    assert steps(instance) == [
        ("DELETE", f"Patient/{id}", "200 OK"),
        ("PATCH", f"Patient/{id}", "200 OK"),
        ("PUT", f"Patient/{id}", "200 OK"),
        ("POST", "Patient", "201 Created"),
    ]
    assert instance["entry"][-1]["response"]["location"] == f"Patient/{id}/_history/1"
    of_type = (await http.get("Patient/_history")).json()
    assert of_type["total"] == 5
    assert steps(of_type)[0] == ("PUT", "Patient/by-put", "201 Created")
    system = (await http.get("_history")).json()
    assert system["total"] == 6 and system["entry"][0]["request"]["url"] == "Observation"
    # _count pages newest first through next links; every version once.
    seen, url = [], "_history?_count=4"
    while url:
        page = (await http.get(url)).json()
        seen += [(e["fullUrl"], e["response"]["etag"]) for e in page["entry"]]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), "")
    assert seen == [(e["fullUrl"], e["response"]["etag"]) for e in system["entry"]]
    # _since keeps versions written at or after it.
    since = of_type["entry"][1]["response"]["lastModified"]
    recent = (await http.get("Patient/_history", params={"_since": since})).json()
    assert recent["total"] == 2
    assert (await http.get("_history", params={"_at": "2026"})).status_code == 400
    assert (await http.get("_history", params={"_since": "yesterday"})).status_code == 400


async def test_if_none_match_on_a_read_answers_304(http: httpx.AsyncClient) -> None:
    """https://hl7.org/fhir/R4/http.html#cread; fhirpy's refresh sends the bare versionId."""
    id = (await http.post("Patient", json=mrn("1"))).json()["id"]
    for tag in ('W/"1"', '"1"', "1", "*", 'W/"7", W/"1"'):
        response = await http.get(f"Patient/{id}", headers={"If-None-Match": tag})
        assert (response.status_code, response.content) == (304, b""), tag
        assert response.headers["etag"] == 'W/"1"'
    changed = await http.get(f"Patient/{id}", headers={"If-None-Match": 'W/"0"'})
    assert changed.status_code == 200 and changed.json()["id"] == id
    vread = await http.get(f"Patient/{id}/_history/1", headers={"If-None-Match": 'W/"1"'})
    assert vread.status_code == 304
