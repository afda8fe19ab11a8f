"""The FHIR client's own logic over an in-process transport: retries, errors, paging, safety."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from ehrbridge.errors import (
    FhirAuthError,
    FhirError,
    FhirNotFound,
    FhirPreconditionFailed,
    FhirProtocolError,
    FhirUnavailable,
)
from ehrbridge.fhir.client import FhirClient
from ehrbridge.http.retry import RetryPolicy

BASE = "https://ehr.test/fhir/R4"
NOW = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"}}

#: One scripted answer: a response, or an exception the transport raises.
Answer = httpx.Response | Exception


def fhir(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        content=orjson.dumps(body),
        headers={"Content-Type": "application/fhir+json", **headers},
    )


def outcome(text: str, code: str = "invalid") -> dict[str, object]:
    issue = {"severity": "error", "code": code, "details": {"text": text}}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class Server:
    """Answers requests from a script, in order, and records them."""

    def __init__(self, *answers: Answer | Callable[[httpx.Request], Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def client(self, retry: RetryPolicy | None = None) -> FhirClient:
        return FhirClient(
            BASE,
            transport=httpx.MockTransport(self.handle),
            retry=retry,
            sleep=self.sleep,
            now=lambda: NOW,
        )


async def test_get_is_retried_on_429_honouring_retry_after_seconds() -> None:
    server = Server(
        fhir(429, outcome("slow down", "throttled"), **{"Retry-After": "7"}),
        fhir(429, outcome("slow down", "throttled"), **{"Retry-After": "4"}),
        fhir(200, PATIENT),
    )
    async with server.client() as client:
        patient = await client.read("Patient", "p1")
    assert patient["id"] == "p1"
    assert server.sleeps == [7.0, 4.0]
    assert len(server.requests) == 3


async def test_retry_after_as_http_date() -> None:
    later = "Wed, 21 Oct 2026 07:28:05 GMT"
    server = Server(fhir(503, outcome("busy"), **{"Retry-After": later}), fhir(200, PATIENT))
    async with server.client() as client:
        await client.read("Patient", "p1")
    assert server.sleeps == [5.0]


async def test_a_503_burst_backs_off_exponentially_then_succeeds() -> None:
    busy = httpx.Response(503, text="<html>busy</html>", headers={"Content-Type": "text/html"})
    server = Server(busy, busy, busy, fhir(200, PATIENT))
    async with server.client() as client:
        assert (await client.read("Patient", "p1"))["id"] == "p1"
    assert server.sleeps == [0.5, 1.0, 2.0]


async def test_gives_up_after_max_retries() -> None:
    server = Server(fhir(503, outcome("down")))
    async with server.client(RetryPolicy(max_retries=2)) as client:
        with pytest.raises(FhirUnavailable) as caught:
            await client.read("Patient", "p1")
    assert len(server.requests) == 3
    assert caught.value.status == 503
    assert "after 2 retries" in str(caught.value)
    assert "GET /fhir/R4/Patient/p1" in str(caught.value)


async def test_a_retry_after_beyond_the_max_wait_gives_up_at_once() -> None:
    server = Server(fhir(429, outcome("later"), **{"Retry-After": "3600"}), fhir(200, PATIENT))
    async with server.client(RetryPolicy(max_wait=30.0)) as client:
        with pytest.raises(FhirUnavailable):
            await client.read("Patient", "p1")
    assert server.sleeps == []
    assert len(server.requests) == 1


async def test_connection_errors_on_reads_are_retried() -> None:
    server = Server(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), fhir(200, PATIENT))
    async with server.client() as client:
        await client.read("Patient", "p1")
    assert len(server.requests) == 3


@pytest.mark.parametrize(("status", "reached"), [(503, True), (500, True), (429, False)])
async def test_a_create_is_never_retried(status: int, reached: bool) -> None:
    server = Server(fhir(status, outcome("failed")), fhir(201, PATIENT))
    async with server.client() as client:
        with pytest.raises(FhirUnavailable) as caught:
            await client.create({"resourceType": "Patient"})
    assert len(server.requests) == 1
    assert server.sleeps == []
    assert caught.value.may_have_reached_server is reached


@pytest.mark.parametrize(
    ("error", "reached"),
    [(httpx.ReadTimeout("slow"), True), (httpx.ConnectError("refused"), False)],
)
async def test_a_transaction_is_never_retried(error: Exception, reached: bool) -> None:
    server = Server(error, fhir(200, {"resourceType": "Bundle", "type": "transaction-response"}))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    async with server.client() as client:
        with pytest.raises(FhirUnavailable) as caught:
            await client.transaction(bundle)
    assert len(server.requests) == 1
    assert caught.value.may_have_reached_server is reached
    assert ("may have reached the server" in str(caught.value)) is reached


async def test_an_html_page_is_a_protocol_error_that_never_quotes_the_body() -> None:
    page = "<html><body>Login for Jane Secretperson</body></html>"
    server = Server(httpx.Response(200, text=page, headers={"Content-Type": "text/html"}))
    async with server.client() as client:
        with pytest.raises(FhirProtocolError) as caught:
            await client.read("Patient", "p1")
    message = str(caught.value)
    assert "HTML page" in message
    assert "/fhir/R4/Patient/p1" in message
    assert "HTTP 200" in message
    assert "Secretperson" not in message


async def test_truncated_json_is_a_protocol_error() -> None:
    body = b'{"resourceType": "Patient", "name": [{"family": "Secretper'
    response = httpx.Response(200, content=body, headers={"Content-Type": "application/fhir+json"})
    async with Server(response).client() as client:
        with pytest.raises(FhirProtocolError, match="not valid JSON") as caught:
            await client.read("Patient", "p1")
    assert "Secretper" not in str(caught.value)


async def test_a_resource_of_the_wrong_type_is_a_protocol_error() -> None:
    server = Server(fhir(200, {"resourceType": "Observation", "id": "p1"}))
    async with server.client() as client:
        with pytest.raises(FhirProtocolError, match="expected Patient, got Observation"):
            await client.read("Patient", "p1")


async def test_an_html_error_page_without_an_outcome_is_a_protocol_error() -> None:
    page = httpx.Response(400, text="<html>Bad</html>", headers={"Content-Type": "text/html"})
    async with Server(page).client() as client:
        with pytest.raises(FhirProtocolError, match=r"HTTP 400.*HTML page"):
            await client.create({"resourceType": "Patient"})


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, FhirError),
        (401, FhirAuthError),
        (404, FhirNotFound),
        (410, FhirNotFound),
        (412, FhirPreconditionFailed),
    ],
)
async def test_statuses_map_to_errors_carrying_the_outcome(
    status: int, error: type[FhirError]
) -> None:
    server = Server(fhir(status, outcome("Patient.birthDate: bad date")))
    async with server.client() as client:
        with pytest.raises(error) as caught:
            await client.update({"resourceType": "Patient", "id": "p1"}, if_match="1")
    assert type(caught.value) is error
    assert caught.value.status == status
    assert caught.value.issues[0].text == "Patient.birthDate: bad date"
    assert caught.value.operation == "update PUT /fhir/R4/Patient/p1"
    assert server.requests[0].headers["If-Match"] == 'W/"1"'


async def test_search_errors_never_show_the_query() -> None:
    server = Server(fhir(400, outcome("unknown parameter")))
    async with server.client() as client:
        with pytest.raises(FhirError) as caught:
            [p async for p in client.search("Patient", {"family": "Secretperson"})]
    assert "Secretperson" not in str(caught.value)
    assert server.requests[0].url.params["family"] == "Secretperson"


def page(ids: list[str], next_url: str | None) -> httpx.Response:
    bundle: dict[str, object] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": i}} for i in ids],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return fhir(200, bundle)


async def test_search_follows_next_links_and_retries_a_page() -> None:
    server = Server(
        page(["a", "b"], f"{BASE}/Patient?_count=2&_offset=2"),
        fhir(502, outcome("gateway")),
        page(["c", "d"], "Patient?_count=2&_offset=4"),  # relative: resolved against the base
        page(["e"], None),
    )
    async with server.client() as client:
        ids = [p["id"] async for p in client.search("Patient", {"_count": "2"})]
    assert ids == ["a", "b", "c", "d", "e"]
    assert [r.url.params.get("_offset") for r in server.requests] == [None, "2", "2", "4"]


async def test_a_next_link_to_another_server_is_refused() -> None:
    server = Server(page(["a"], "https://elsewhere.test/fhir/R4/Patient?page=2"), page([], None))
    async with server.client() as client:
        with pytest.raises(FhirProtocolError, match="another server"):
            [p async for p in client.search("Patient")]
    assert len(server.requests) == 1


async def test_a_next_link_loop_is_refused() -> None:
    server = Server(page(["a"], f"{BASE}/Patient?page=1"))
    async with server.client() as client:
        with pytest.raises(FhirProtocolError, match="already read"):
            [p async for p in client.search("Patient", {"page": "1"})]


async def test_write_results_carry_version_and_location() -> None:
    location = f"{BASE}/Patient/p1/_history/2"
    server = Server(fhir(201, PATIENT, ETag='W/"2"', Location=location))
    async with server.client() as client:
        result = await client.create(
            {"resourceType": "Patient"}, if_none_exist={"identifier": "x|1"}
        )
    assert (result.created, result.version_id, result.id, result.location) == (
        True,
        "2",
        "p1",
        location,
    )
    assert server.requests[0].headers["If-None-Exist"] == "identifier=x%7C1"
    assert server.requests[0].headers["Content-Type"] == "application/fhir+json"
