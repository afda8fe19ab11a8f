"""Faults of the sandbox EHR on a real socket, as the FHIR client meets them.

Sleeps are recorded, never waited: the client gets a fake ``sleep``, so ``Retry-After`` is
asserted as the exact delay asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ehrbridge.errors import FhirError, FhirNotFound, FhirUnavailable
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.http import Resource
from ehrbridge.http.retry import RetryPolicy
from ehrbridge.sandbox.faults import FaultPlan
from tests.sandbox_server import SandboxServer


class Sleeps:
    """A fake ``asyncio.sleep`` that records the delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


PATIENT: Resource = {"resourceType": "Patient", "name": [{"family": "Faulty"}]}


@pytest.fixture
async def server(sandbox: SandboxServer) -> SandboxServer:
    await sandbox.reset()
    return sandbox


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def fhir(server: SandboxServer, sleeps: Sleeps) -> AsyncIterator[FhirClient]:
    async with FhirClient(server.base_url, sleep=sleeps, retry=RetryPolicy(max_retries=4)) as c:
        yield c


async def test_a_429_is_retried_after_its_retry_after(
    server: SandboxServer, fhir: FhirClient, sleeps: Sleeps
) -> None:
    created = await fhir.create(PATIENT)
    assert created.id is not None
    server.app.faults.set(FaultPlan(throttle=2, retry_after=3))
    assert (await fhir.read("Patient", created.id))["id"] == created.id
    assert sleeps.delays == [3.0, 3.0]
    assert server.app.faults.injected == {"throttle": 2}


async def test_the_next_three_requests_get_503(server: SandboxServer) -> None:
    server.app.faults.set(errors=3)
    async with httpx.AsyncClient() as http:
        statuses = [(await http.get(f"{server.base_url}/Patient")).status_code for _ in range(4)]
    assert statuses == [503, 503, 503, 200]


async def test_a_write_is_not_retried_and_says_it_may_have_reached_the_server(
    server: SandboxServer, fhir: FhirClient
) -> None:
    server.app.faults.set(errors=1, error_status=500)
    with pytest.raises(FhirUnavailable) as caught:
        await fhir.create(PATIENT)
    assert caught.value.may_have_reached_server
    assert server.app.faults.injected == {"error": 1}


async def test_connection_resets_are_transport_errors_and_reads_recover(
    server: SandboxServer, fhir: FhirClient, sleeps: Sleeps
) -> None:
    created = await fhir.create(PATIENT)
    assert created.id is not None
    server.app.faults.set(resets=1)
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"{server.base_url}/Patient/{created.id}")
    server.app.faults.set(resets=2)
    assert (await fhir.read("Patient", created.id))["id"] == created.id
    assert len(sleeps.delays) == 2


async def test_an_outage_that_drops_connections_exhausts_the_retries(
    server: SandboxServer, fhir: FhirClient, sleeps: Sleeps
) -> None:
    server.app.faults.set(outage=True, outage_mode="drop")
    with pytest.raises(FhirUnavailable, match="after 4 retries"):
        await fhir.read("Patient", "any")
    assert server.app.faults.injected["outage"] == 5
    server.app.faults.clear()
    with pytest.raises(FhirNotFound):
        await fhir.read("Patient", "any")


async def test_a_stale_read_serves_the_previous_version(
    server: SandboxServer, fhir: FhirClient
) -> None:
    created = await fhir.create(PATIENT)
    assert created.resource is not None and created.id is not None
    await fhir.update({**created.resource, "gender": "male"})
    server.app.faults.set(stale_reads=1)
    stale = await fhir.read("Patient", created.id)
    fresh = await fhir.read("Patient", created.id)
    assert (stale["meta"]["versionId"], "gender" in stale) == ("1", False)
    assert (fresh["meta"]["versionId"], fresh["gender"]) == ("2", "male")


async def test_a_silently_dropped_write_is_acknowledged_but_not_readable(
    server: SandboxServer, fhir: FhirClient
) -> None:
    server.app.faults.set(dropped_writes=1)
    dropped = await fhir.create(PATIENT)
    assert dropped.created and dropped.id is not None and dropped.version_id == "1"
    with pytest.raises(FhirNotFound):
        await fhir.read("Patient", dropped.id)
    assert [p async for p in fhir.search("Patient")] == []
    kept = await fhir.create(PATIENT)
    assert kept.id is not None
    assert (await fhir.read("Patient", kept.id))["id"] == kept.id


async def test_the_admin_endpoint_over_http(server: SandboxServer) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{server.origin}/$faults", json={"throttle": 1})
        assert response.status_code == 200
        throttled = await http.get(f"{server.base_url}/Patient")
        assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "1")
        state = (await http.get(f"{server.origin}/$faults")).json()
    assert state["injected"] == {"throttle": 1}
    assert state["plan"]["throttle"] == 0


async def test_a_reset_after_a_write_stores_it_and_drops_the_answer(
    server: SandboxServer, fhir: FhirClient
) -> None:
    server.app.faults.set(resets_after_write=1)
    with pytest.raises(FhirUnavailable) as caught:
        await fhir.create(PATIENT)
    assert caught.value.may_have_reached_server
    [stored] = [p async for p in fhir.search("Patient")]  # reads are not touched
    assert stored["name"] == PATIENT["name"]
    assert server.app.faults.injected == {"reset_after_write": 1}
    assert (await fhir.create(PATIENT)).created  # the count is spent


async def test_unprocessable_writes_get_422_with_an_operation_outcome(
    server: SandboxServer, fhir: FhirClient
) -> None:
    server.app.faults.set(unprocessable=1)
    assert [p async for p in fhir.search("Patient")] == []  # a read passes
    with pytest.raises(FhirError) as caught:
        await fhir.create(PATIENT)
    assert caught.value.status == 422
    assert [(i.code, i.text) for i in caught.value.issues] == [("processing", "injected fault")]
    assert [p async for p in fhir.search("Patient")] == []
    assert server.app.faults.injected == {"unprocessable": 1}
