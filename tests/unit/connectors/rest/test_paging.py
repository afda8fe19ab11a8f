"""Each paging style, and its guards, against the test sources served in-process."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest

from ehrbridge.connectors.rest.auth import HeaderAuth
from ehrbridge.connectors.rest.client import RestClient
from ehrbridge.connectors.rest.paging import pages
from ehrbridge.connectors.rest.spec import Paging, RestResource
from ehrbridge.errors import RestProtocolError
from tests.rest_sources import ALPHA_KEY, APPOINTMENTS, GAMMA_TOKEN, RestSources

ORIGIN = "http://sources.test"


@pytest.fixture
def sources() -> RestSources:
    s = RestSources()
    s.reset()
    return s


def client(sources: RestSources, base: str, header: str, value: str) -> RestClient:
    auth = HeaderAuth(header, lambda: value, kind="test")
    return RestClient(
        f"{ORIGIN}/{base}", auth=auth, transport=httpx.ASGITransport(app=sources.app())
    )


def alpha(sources: RestSources) -> RestClient:
    return client(sources, "alpha/api/v2", "X-Api-Key", ALPHA_KEY)


def gamma(sources: RestSources) -> RestClient:
    return client(sources, "gamma", "Authorization", f"Bearer {GAMMA_TOKEN}")


def beta_open(sources: RestSources) -> RestClient:
    sources.tokens.add("t")
    return client(sources, "beta", "Authorization", "Bearer t")


async def read(c: RestClient, resource: RestResource, params: Any = ()) -> list[list[str]]:
    try:
        return [
            [str(r.get("appt_id") or r.get("visitId") or r.get("id")) for r in page.records]
            async for page in pages(c, resource, params)
        ]
    finally:
        await c.aclose()


ALPHA = RestResource(
    type="Appointment",
    path="/appointments",
    records="data.items",
    id="appt_id",
    paging=Paging(style="page", param="page", size_param="per_page", size=2),
)
BETA = RestResource(
    type="Appointment",
    path="/v1/visits",
    records="results",
    id="visitId",
    paging=Paging(style="cursor", param="cursor", next="paging.next", size_param="limit", size=2),
)
GAMMA = RestResource(type="Appointment", path="/feed/appointments", paging=Paging(style="link"))


async def test_page_numbers_until_an_empty_page(sources: RestSources) -> None:
    got = await read(alpha(sources), ALPHA)
    assert got == [["A-1001", "A-1002"], ["A-1003", "A-1004"], ["A-1005"]]
    assert [p["page"] for p in sources.asked("alpha")] == ["1", "2", "3", "4"]
    assert all(p["per_page"] == "2" for p in sources.asked("alpha"))


async def test_page_numbers_from_zero(sources: RestSources) -> None:
    resource = replace(ALPHA, paging=replace(ALPHA.paging, start=0))
    got = await read(alpha(sources), resource)
    # alpha counts from 1: page 0 is empty, so the walk stops at once
    assert got == [] and [p["page"] for p in sources.asked("alpha")] == ["0"]


async def test_offset_and_limit(sources: RestSources) -> None:
    # beta's cursor is an offset, so it serves offset paging too
    resource = replace(
        BETA, paging=Paging(style="offset", param="cursor", size_param="limit", size=2)
    )
    got = await read(beta_open(sources), resource)
    assert got == [["7001", "7002"], ["7003", "7004"], ["7005"]]
    assert [p["cursor"] for p in sources.asked("beta")] == ["0", "2", "4", "5"]


async def test_a_cursor_from_the_body(sources: RestSources) -> None:
    got = await read(beta_open(sources), BETA, [("modified_after", "2026-11-19T00:00:00Z")])
    assert got == [["7001", "7002"], ["7003", "7004"], ["7005"]]
    asked = sources.asked("beta")
    assert ["cursor" in p for p in asked] == [False, True, True]
    # the incremental parameter goes with every request
    assert all(p["modified_after"] == "2026-11-19T00:00:00Z" for p in asked)


async def test_the_link_header(sources: RestSources) -> None:
    got = await read(gamma(sources), GAMMA, [("since", "0")])
    assert got == [["g1", "g2"], ["g3", "g4"], ["g5"]]
    # the next links carry the query themselves
    assert [p.get("from") for p in sources.asked("gamma")] == [None, "2", "4"]
    assert all(p["since"] == "0" for p in sources.asked("gamma"))


async def test_a_next_url_in_the_body(sources: RestSources) -> None:
    resource = replace(
        GAMMA,
        records="items",
        params=(("style", "next_url"),),
        paging=Paging(style="next_url", next="next"),
    )
    got = await read(gamma(sources), resource)
    assert got == [["g1", "g2"], ["g3", "g4"], ["g5"]]


async def test_no_paging_reads_one_page(sources: RestSources) -> None:
    assert await read(gamma(sources), replace(GAMMA, paging=Paging())) == [["g1", "g2"]]


async def test_an_empty_first_page_stops(sources: RestSources) -> None:
    sources.gamma = []
    assert await read(gamma(sources), GAMMA) == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("loop", "GET /gamma/feed/appointments: the next link points to a page already read"),
        ("elsewhere", "GET /gamma/feed/appointments: the next link points to another server"),
    ],
)
async def test_next_links_that_loop_or_leave_are_refused(
    sources: RestSources, fault: str, message: str
) -> None:
    sources.faults["gamma"] = [fault]
    with pytest.raises(RestProtocolError) as caught:
        await read(gamma(sources), GAMMA)
    assert str(caught.value) == message


async def test_a_repeated_cursor_is_refused(sources: RestSources) -> None:
    resource = replace(BETA, paging=replace(BETA.paging, next="'2'"))
    with pytest.raises(RestProtocolError, match="the next cursor was seen before"):
        await read(beta_open(sources), resource)


async def test_a_source_that_ignores_the_page_parameter_is_caught(sources: RestSources) -> None:
    resource = replace(GAMMA, paging=Paging(style="page", param="page"))
    with pytest.raises(RestProtocolError, match="page 2 repeats page 1: does the source ignore"):
        await read(gamma(sources), resource)


async def test_max_pages(sources: RestSources) -> None:
    resource = replace(ALPHA, paging=replace(ALPHA.paging, max_pages=2))
    with pytest.raises(RestProtocolError, match="more than 2 pages"):
        await read(alpha(sources), resource)


async def test_records_that_are_not_a_list(sources: RestSources) -> None:
    sources.faults["alpha"] = ["not_list"]
    with pytest.raises(RestProtocolError) as caught:
        await read(alpha(sources), ALPHA)
    assert str(caught.value) == (
        "GET /alpha/api/v2/appointments: records (data.items) is an object, not a list"
    )


def test_the_sources_serve_every_appointment() -> None:
    assert len(APPOINTMENTS) == 5
