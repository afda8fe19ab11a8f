"""``GET /metadata``: the CapabilityStatement tells the truth. Every advertised resource type,
search parameter, ``_sort`` key and interaction works; what is not advertised is refused."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from ehrbridge.sandbox.app import SandboxApp
from ehrbridge.sandbox.messages import FhirRequest, FhirResponse
from ehrbridge.sandbox.params import TYPES

BASE = "http://sandbox.test/fhir/R4"
#: A value of each FHIR search parameter type that any resource may be searched with.
SAMPLE_VALUES = {"string": "a", "token": "x", "reference": "Patient/x", "date": "ge2026"}


@pytest.fixture(scope="module")
def app() -> SandboxApp:
    return SandboxApp(seed=False)


@pytest.fixture(scope="module")
def statement(app: SandboxApp) -> dict[str, Any]:
    response = app.server.handle(FhirRequest(method="GET", path="metadata", base=BASE))
    assert response.status == 200 and response.body is not None
    return response.body


def get(app: SandboxApp, path: str, *query: tuple[str, str]) -> FhirResponse:
    return app.server.handle(FhirRequest(method="GET", path=path, query=query, base=BASE))


def resources(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["type"]: r for r in statement["rest"][0]["resource"]}


def sort_keys(resource: dict[str, Any]) -> list[str]:
    pattern = r"_sort keys \(each also descending with a leading -\): ([^.]+)\."
    found = re.search(pattern, resource["documentation"])
    assert found is not None
    return found.group(1).split(", ")


async def test_metadata_is_served_over_http_as_an_r4_capability_statement() -> None:
    app = SandboxApp(seed=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        response = await http.get(f"{BASE}/metadata")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+json")
        body = response.json()
        refused = await http.get(f"{BASE}/metadata", params={"mode": "terminology"})
        assert refused.status_code == 400
        assert (await http.post(f"{BASE}/metadata", json={})).status_code == 405
    assert body["resourceType"] == "CapabilityStatement"
    assert (body["fhirVersion"], body["kind"], body["status"]) == ("4.0.1", "instance", "active")
    assert body["format"] == ["json", "application/fhir+json"]
    assert body["patchFormat"] == ["application/json-patch+json"]
    assert body["implementation"]["url"] == BASE
    assert [op["name"] for op in body["rest"][0]["operation"]] == ["export"]
    assert resources(body)["Patient"]["operation"][0]["name"] == "export"


def test_the_advertised_types_are_exactly_the_served_ones(
    app: SandboxApp, statement: dict[str, Any]
) -> None:
    assert sorted(resources(statement)) == list(TYPES)
    assert {get(app, t).status for t in TYPES} == {200}
    for unadvertised in ("Foo", "Patients", "Medication2"):
        refused = get(app, unadvertised)
        assert refused.status == 404 and refused.body is not None
        assert refused.body["resourceType"] == "OperationOutcome"


def test_every_advertised_search_parameter_works_and_others_are_refused(
    app: SandboxApp, statement: dict[str, Any]
) -> None:
    checked = 0
    for resource_type, resource in resources(statement).items():
        advertised = {p["name"] for p in resource["searchParam"]}
        for param in resource["searchParam"]:
            value = SAMPLE_VALUES[param["type"]]
            if param["name"] == "_lastUpdated":
                value = "ge2026-01-01"
            response = get(app, resource_type, (param["name"], value))
            assert response.status == 200, (resource_type, param["name"], response.body)
            checked += 1
        for name in ("shoe-size", "_elements", "_include", "family" * 2):
            assert name not in advertised
            response = get(app, resource_type, (name, "x"))
            assert response.status == 400, (resource_type, name)
            assert response.body is not None
            assert name in response.body["issue"][0]["details"]["text"]
    assert checked > len(TYPES) * 8


def test_every_advertised_sort_key_sorts_both_ways_and_others_are_refused(
    app: SandboxApp, statement: dict[str, Any]
) -> None:
    for resource_type, resource in resources(statement).items():
        keys = sort_keys(resource)
        assert keys[:2] == ["_id", "_lastUpdated"]
        assert keys[2:] == sorted(p["name"] for p in resource["searchParam"][2:])
        for key in keys:
            for value in (key, f"-{key}"):
                assert get(app, resource_type, ("_sort", value)).status == 200, (key, value)
        refused = get(app, resource_type, ("_sort", "-shoe-size"))
        assert refused.status == 400 and refused.body is not None
        assert "shoe-size" in refused.body["issue"][0]["details"]["text"]


async def test_every_advertised_interaction_answers() -> None:
    app = SandboxApp(seed=False)
    patient = {"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE + "/"
    ) as http:
        body = (await http.get("metadata")).json()
        created = await http.post("Patient", json=patient)
        id = created.json()["id"]
        answers = {
            "create": created.status_code,
            "read": (await http.get(f"Patient/{id}")).status_code,
            "vread": (await http.get(f"Patient/{id}/_history/1")).status_code,
            "update": (await http.put(f"Patient/{id}", json={**patient, "id": id})).status_code,
            "patch": (
                await http.patch(
                    f"Patient/{id}",
                    json=[{"op": "add", "path": "/active", "value": True}],
                    headers={"Content-Type": "application/json-patch+json"},
                )
            ).status_code,
            "history-instance": (await http.get(f"Patient/{id}/_history")).status_code,
            "history-type": (await http.get("Patient/_history")).status_code,
            "search-type": (await http.get("Patient", params={"identifier": "s|1"})).status_code,
            "delete": (await http.delete(f"Patient/{id}")).status_code,
            "history-system": (await http.get("_history")).status_code,
            "batch": (
                await http.post("", json={"resourceType": "Bundle", "type": "batch"})
            ).status_code,
            "transaction": (
                await http.post("", json={"resourceType": "Bundle", "type": "transaction"})
            ).status_code,
        }
    patient_codes = [i["code"] for i in resources(body)["Patient"]["interaction"]]
    system_codes = [i["code"] for i in body["rest"][0]["interaction"]]
    assert sorted(answers) == sorted([*patient_codes, *system_codes])
    assert {code: status for code, status in answers.items() if status >= 300} == {}
