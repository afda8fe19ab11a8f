"""The sandbox's Bulk Data ``$export`` in-process: kick-off, status, manifest, files, ``_type``,
``_since``, the Patient compartment, the snapshot, refusals, cancel, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.http import Resource
from ehrbridge.sandbox.app import SandboxApp

BASE = "http://sandbox.test/fhir/R4"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def patient(family: str) -> Resource:
    return {"resourceType": "Patient", "name": [{"family": family}], "gender": "female"}


def encounter(patient_id: str) -> Resource:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


@pytest.fixture
def app() -> Iterator[SandboxApp]:
    sandbox = SandboxApp(seed=False, export_file_size=2)
    yield sandbox
    sandbox.close()


@pytest.fixture
async def http(app: SandboxApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield client


@pytest.fixture
async def fhir(http: httpx.AsyncClient) -> FhirClient:
    return FhirClient(BASE, http=http)


async def kick_off(http: httpx.AsyncClient, query: str = "", path: str = "$export") -> str:
    response = await http.get(f"{BASE}/{path}{query}", headers=ASYNC)
    assert response.status_code == 202, response.text
    return str(response.headers["content-location"])


async def manifest(http: httpx.AsyncClient, status_url: str) -> dict[str, Any]:
    for _ in range(200):
        response = await http.get(status_url)
        if response.status_code == 200:
            assert response.headers["content-type"] == "application/json"
            body: dict[str, Any] = response.json()
            return body
        assert response.status_code == 202
        await asyncio.sleep(0.01)
    raise AssertionError("the export did not finish")


async def lines(http: httpx.AsyncClient, url: str) -> list[Resource]:
    response = await http.get(url, headers={"Accept": "application/fhir+ndjson"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+ndjson")
    return [orjson.loads(line) for line in response.content.splitlines()]


async def test_kick_off_status_manifest_and_files(
    app: SandboxApp, http: httpx.AsyncClient, fhir: FhirClient
) -> None:
    ids = [(await fhir.create(patient(f"P{i}"))).id for i in range(3)]
    await fhir.create(encounter(str(ids[0])))
    app.exports.paused = True
    status_url = await kick_off(http)
    assert status_url.startswith(f"{BASE}/$export-poll/")
    running = await http.get(status_url)
    assert running.status_code == 202
    assert running.headers["retry-after"] == "1"
    assert "resources exported" in running.headers["x-progress"]
    app.exports.paused = False

    body = await manifest(http, status_url)
    assert body["request"] == f"{BASE}/$export"
    assert body["requiresAccessToken"] is False
    assert body["error"] == []
    assert body["transactionTime"].endswith("Z")
    # Three Patients at two per file: two files; one Encounter file.
    assert [(o["type"], o["count"]) for o in body["output"]] == [
        ("Encounter", 1),
        ("Patient", 2),
        ("Patient", 1),
    ]
    exported = [r["id"] for o in body["output"][1:] for r in await lines(http, o["url"])]
    assert sorted(exported) == sorted(str(i) for i in ids)
    assert app.exports.downloads[body["output"][1]["url"]] == 1


async def test_type_since_and_output_format(
    app: SandboxApp, http: httpx.AsyncClient, fhir: FhirClient
) -> None:
    first = await fhir.create(patient("Early"))
    assert first.resource is not None and first.id is not None
    await fhir.create(encounter(first.id))
    cut = first.resource["meta"]["lastUpdated"]
    late = await fhir.create(patient("Late"))

    status_url = await kick_off(
        http, f"?_type=Patient&_since={cut}&_outputFormat=application/fhir%2Bndjson"
    )
    body = await manifest(http, status_url)
    assert [o["type"] for o in body["output"]] == ["Patient"]
    assert [r["id"] for r in await lines(http, body["output"][0]["url"])] == [late.id]
    assert f"_since={cut}".replace(":", "%3A") in body["request"]


async def test_the_export_is_a_snapshot_at_its_transaction_time(
    app: SandboxApp, http: httpx.AsyncClient, fhir: FhirClient
) -> None:
    kept = await fhir.create(patient("Before"))
    assert kept.resource is not None
    app.exports.paused = True
    status_url = await kick_off(http, "?_type=Patient")
    # Written after the kick-off: neither the update nor the new Patient is in the export.
    await fhir.update({**kept.resource, "gender": "male"})
    await fhir.create(patient("After"))
    app.exports.paused = False
    body = await manifest(http, status_url)
    exported = await lines(http, body["output"][0]["url"])
    assert [(r["id"], r["gender"], r["meta"]["versionId"]) for r in exported] == [
        (kept.id, "female", "1")
    ]


async def test_patient_level_export_is_the_patient_compartment(
    http: httpx.AsyncClient, fhir: FhirClient
) -> None:
    owner = await fhir.create(patient("Owner"))
    await fhir.create(encounter(str(owner.id)))
    await fhir.create({"resourceType": "Organization", "name": "Clinic"})
    body = await manifest(http, await kick_off(http, path="Patient/$export"))
    assert sorted(o["type"] for o in body["output"]) == ["Encounter", "Patient"]
    refused = await http.get(f"{BASE}/Patient/$export?_type=Organization", headers=ASYNC)
    assert refused.status_code == 400


@pytest.mark.parametrize(
    ("query", "headers", "problem"),
    [
        ("", {}, "Prefer: respond-async"),
        ("?_type=Patient,Nonsense", ASYNC, "_type"),
        ("?_since=2026-01-01", ASYNC, "_since"),
        ("?_outputFormat=text/csv", ASYNC, "_outputFormat"),
        ("?_elements=id", ASYNC, "_elements"),
    ],
)
async def test_refusals_are_400_with_an_operation_outcome(
    http: httpx.AsyncClient, query: str, headers: dict[str, str], problem: str
) -> None:
    response = await http.get(f"{BASE}/$export{query}", headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert problem in body["issue"][0]["details"]["text"]


async def test_delete_cancels_and_unknown_jobs_are_404(
    app: SandboxApp, http: httpx.AsyncClient, fhir: FhirClient
) -> None:
    await fhir.create(patient("Gone"))
    app.exports.paused = True
    status_url = await kick_off(http)
    deleted = await http.delete(status_url)
    assert deleted.status_code == 202
    assert (await http.get(status_url)).status_code == 404
    assert (await http.delete(status_url)).status_code == 404
    assert (await http.get(f"{BASE}/$export-poll/nope")).status_code == 404
    assert (await http.get(f"{BASE}/$export-file/nope/Patient-1.ndjson")).status_code == 404
    assert app.exports.jobs() == []


async def test_a_finished_job_expires_with_its_files(
    app: SandboxApp, http: httpx.AsyncClient, fhir: FhirClient
) -> None:
    await fhir.create(patient("Old"))
    body = await manifest(http, await kick_off(http))
    job = app.exports.jobs()[0]
    assert (job.folder / "Patient-1.ndjson").is_file()
    app.exports.ttl = 0.0
    assert (await http.get(body["output"][0]["url"])).status_code == 404
    assert not job.folder.exists()


async def test_a_failed_job_answers_500_with_its_reason(
    app: SandboxApp, http: httpx.AsyncClient
) -> None:
    app.exports.fail_next = 1
    status_url = await kick_off(http)
    for _ in range(100):
        response = await http.get(status_url)
        if response.status_code != 202:
            break
        await asyncio.sleep(0.01)
    assert response.status_code == 500
    assert "injected export failure" in response.json()["issue"][0]["details"]["text"]


async def test_faults_apply_to_export_routes(app: SandboxApp, http: httpx.AsyncClient) -> None:
    status_url = await kick_off(http)
    app.faults.set(throttle=1, retry_after=7)
    throttled = await http.get(status_url)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "7"
    assert (await manifest(http, status_url))["output"] == []


async def test_reset_and_close_remove_the_files(app: SandboxApp, http: httpx.AsyncClient) -> None:
    await kick_off(http)
    folder = app.exports.jobs()[0].folder
    assert folder.is_dir()
    app.reset()
    assert not folder.exists() and app.exports.jobs() == []
    root = folder.parent
    app.close()
    assert not root.exists()
