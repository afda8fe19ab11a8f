"""Search beyond filters: ``_sort`` keys both ways, ``POST [type]/_search`` with a form body,
and ``Prefer: handling=lenient`` against the default strict handling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ehrbridge.sandbox.app import SandboxApp

BASE = "http://sandbox.test/fhir/R4"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PEOPLE = [
    # family, given, birthDate (None: not known)
    ("Núñez", "Ana", "1984-03-12"),
    ("nunes", "Bea", "1990-01-01"),
    ("Adams", "Cy", None),
    ("Okafor", "Ana", "1984-03"),
    ("Zed", "Al", "2001"),
]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = SandboxApp(seed=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE + "/"
    ) as client:
        for family, given, born in PEOPLE:
            person: dict[str, Any] = {
                "resourceType": "Patient",
                "name": [{"family": family, "given": [given]}],
                "gender": "female" if given in ("Ana", "Bea") else "male",
            }
            if born:
                person["birthDate"] = born
            assert (await client.post("Patient", json=person)).status_code == 201
        yield client


async def families(http: httpx.AsyncClient, *query: tuple[str, str], count: int = 2) -> list[str]:
    """Every page of a search, following ``next`` links: the families in order."""
    found: list[str] = []
    response = await http.get("Patient", params=[*query, ("_count", str(count))])
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(PEOPLE) or any(n != "_sort" for n, _ in query)
        found += [e["resource"]["name"][0]["family"] for e in body.get("entry", [])]
        links = {link["relation"]: link["url"] for link in body["link"]}
        if "next" not in links:
            return found
        response = await http.get(links["next"])


async def test_sort_by_a_string_both_ways_over_pages(http: httpx.AsyncClient) -> None:
    ascending = await families(http, ("_sort", "family"))
    assert ascending == ["Adams", "nunes", "Núñez", "Okafor", "Zed"]  # folded: nunes < nunez
    assert await families(http, ("_sort", "-family")) == ascending[::-1]


async def test_sort_by_a_date_puts_resources_without_one_last(http: httpx.AsyncClient) -> None:
    assert await families(http, ("_sort", "birthdate")) == [
        "Okafor",  # 1984-03 starts before 1984-03-12
        "Núñez",
        "nunes",
        "Zed",
        "Adams",
    ]
    assert await families(http, ("_sort", "-birthdate")) == [
        "Zed",
        "nunes",
        "Núñez",
        "Okafor",
        "Adams",
    ]


async def test_several_sort_keys_and_descending_last_updated(http: httpx.AsyncClient) -> None:
    assert await families(http, ("_sort", "given,-family")) == [
        "Zed",
        "Okafor",
        "Núñez",
        "nunes",
        "Adams",
    ]
    newest_first = await families(http, ("_sort", "-_lastUpdated"))
    assert newest_first == [f for f, _, _ in PEOPLE][::-1]
    assert await families(http, ("_sort", "_lastUpdated")) == [f for f, _, _ in PEOPLE]
    # Filters and sorts together; the page size does not change the order.
    assert await families(http, ("gender", "female"), ("_sort", "-family"), count=1) == [
        "Okafor",
        "Núñez",
        "nunes",
    ]


async def test_an_unsupported_sort_key_is_refused_by_name(http: httpx.AsyncClient) -> None:
    refused = await http.get("Patient", params={"_sort": "family,-shoe-size"})
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["details"]["text"] == (
        "unsupported _sort key 'shoe-size' for Patient"
    )


async def test_post_search_with_a_form_merges_the_url_parameters(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(
        "Patient/_search?gender=female", content="given=ana&_sort=-family", headers=FORM
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [e["resource"]["name"][0]["family"] for e in body["entry"]] == ["Okafor", "Núñez"]
    assert body["link"][0]["url"] == f"{BASE}/Patient?gender=female&given=ana&_sort=-family"
    empty = await http.post("Patient/_search")
    assert (empty.status_code, empty.json()["total"]) == (200, len(PEOPLE))
    as_json = await http.post("Patient/_search", json={"given": "ana"})
    assert as_json.status_code == 415
    assert "application/x-www-form-urlencoded" in as_json.json()["issue"][0]["details"]["text"]
    unknown = await http.post("Patient/_search", content="shoe-size=44", headers=FORM)
    assert unknown.status_code == 400


async def test_lenient_handling_ignores_unknown_parameters_and_says_so(
    http: httpx.AsyncClient,
) -> None:
    query = {"family": "okafor", "shoe-size": "44", "given:fuzzy": "x", "_sort": "-shoe"}
    strict = await http.get("Patient", params=query, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert (await http.get("Patient", params=query)).status_code == 400  # strict by default
    lenient = await http.get("Patient", params=query, headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200, lenient.text
    body = lenient.json()
    matches = [e for e in body["entry"] if e["search"]["mode"] == "match"]
    assert [e["resource"]["name"][0]["family"] for e in matches] == ["Okafor"]
    [outcome] = [e for e in body["entry"] if e["search"]["mode"] == "outcome"]
    issue = outcome["resource"]["issue"][0]
    assert (issue["severity"], issue["code"]) == ("warning", "not-supported")
    assert issue["details"]["text"] == (
        "ignored (Prefer: handling=lenient): shoe-size, given:fuzzy, _sort=shoe"
    )
    assert "44" not in issue["details"]["text"]
    assert body["link"][0]["url"] == f"{BASE}/Patient?family=okafor"
    # A known parameter with a malformed value is an error even when lenient.
    bad = await http.get(
        "Patient", params={"birthdate": "someday"}, headers={"Prefer": "handling=lenient"}
    )
    assert bad.status_code == 400


async def test_only_json_is_served(http: httpx.AsyncClient) -> None:
    assert (await http.get("Patient", params={"_format": "json"})).status_code == 200
    xml = await http.get("Patient", params={"_format": "xml"})
    assert xml.status_code == 406
    assert xml.json()["issue"][0]["code"] == "not-supported"
