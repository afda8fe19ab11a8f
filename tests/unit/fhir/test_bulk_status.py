"""Status polling against an in-process server that answers a script of responses:
``Retry-After`` as an HTTP date, a 500 that is transient and one that is not, a kick-off without
``Content-Location``. Sleeps are recorded, never waited."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from ehrbridge.errors import ExportFailed, FhirProtocolError, FhirUnavailable
from ehrbridge.fhir.bulk import BulkClient, PollPolicy

BASE = "http://ehr.test/fhir"
NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
MANIFEST = {
    "transactionTime": "2026-11-24T09:59:00Z",
    "request": f"{BASE}/$export",
    "requiresAccessToken": False,
    "output": [{"type": "Patient", "url": f"{BASE}/files/1", "count": 1}],
    "error": [],
}


def outcome(code: str) -> dict[str, Any]:
    issue = {"severity": "error", "code": code, "details": {"text": f"{code} problem"}}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class Script:
    """Answers each request with the next response of the script."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        return self.responses.pop(0)


def client(script: Script, delays: list[float], **policy: float) -> BulkClient:
    async def sleep(delay: float) -> None:
        delays.append(delay)

    return BulkClient(
        BASE,
        transport=httpx.MockTransport(script),
        sleep=sleep,
        now=lambda: NOW,
        poll=PollPolicy(**policy),
    )


async def test_retry_after_as_an_http_date_and_a_transient_500() -> None:
    later = format_datetime(datetime(2026, 11, 24, 10, 0, 7, tzinfo=UTC), usegmt=True)
    script = Script(
        httpx.Response(202, headers={"Retry-After": later, "X-Progress": "10%"}),
        httpx.Response(500, json=outcome("transient"), headers={"Retry-After": "3"}),
        httpx.Response(202),  # no Retry-After: the policy's backoff (second poll: 2 s)
        httpx.Response(200, json=MANIFEST),
    )
    delays: list[float] = []
    progress: list[str | None] = []
    async with client(script, delays) as bulk:
        manifest = await bulk.wait(f"{BASE}/status/1", on_progress=progress.append)
    assert delays == [7.0, 3.0, 2.0]
    assert progress == ["10%", None]
    assert manifest.output[0].url == f"{BASE}/files/1"


async def test_a_500_that_is_not_transient_is_a_failed_export_at_once() -> None:
    script = Script(httpx.Response(500, json=outcome("exception")))
    delays: list[float] = []
    async with client(script, delays) as bulk:
        with pytest.raises(ExportFailed, match=r"the export failed.*exception problem"):
            await bulk.wait(f"{BASE}/status/1")
    assert delays == [] and script.seen == ["GET /fhir/status/1"]


async def test_a_job_that_never_finishes_times_out() -> None:
    script = Script(*[httpx.Response(202, headers={"Retry-After": "30"})] * 5)
    ticks = iter(range(0, 1000, 30))
    async with BulkClient(
        BASE,
        transport=httpx.MockTransport(script),
        sleep=lambda delay: _nothing(),
        poll=PollPolicy(timeout=100.0),
        monotonic=lambda: float(next(ticks)),
    ) as bulk:
        with pytest.raises(FhirUnavailable, match="did not finish within 100 s"):
            await bulk.wait(f"{BASE}/status/1")


async def _nothing() -> None:
    pass


async def test_a_kick_off_without_content_location_is_a_protocol_error() -> None:
    script = Script(httpx.Response(202))
    async with client(script, []) as bulk:
        with pytest.raises(FhirProtocolError, match="Content-Location"):
            await bulk.kick_off(types=["Patient"], since=NOW)
    assert script.seen == ["GET /fhir/$export"]


async def test_the_kick_off_asks_async_ndjson_types_and_since() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(202, headers={"Content-Location": "/fhir/status/9"})

    async with BulkClient(BASE, transport=httpx.MockTransport(handler)) as bulk:
        status_url = await bulk.kick_off(types=["Patient", "Encounter"], since=NOW, patient=True)
    assert status_url == "http://ehr.test/fhir/status/9"
    sent = requests[0]
    assert sent.url.path == "/fhir/Patient/$export"
    assert sent.headers["prefer"] == "respond-async"
    assert dict(sent.url.params) == {
        "_outputFormat": "application/fhir+ndjson",
        "_type": "Patient,Encounter",
        "_since": "2026-11-24T10:00:00.000000Z",
    }
