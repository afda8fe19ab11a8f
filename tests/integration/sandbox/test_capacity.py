"""The sandbox's capacity fault on a real socket, and the adaptive limiter meeting it: requests
are held in flight by bodies that wait for the test, never by time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from ehrbridge.outbound.limits import AdaptiveLimiter, ConcurrencyLimits, Outcome
from tests.sandbox_server import SandboxServer

FHIR_JSON = {"content-type": "application/fhir+json"}


@pytest.fixture
async def server(sandbox: SandboxServer) -> SandboxServer:
    await sandbox.reset()
    return sandbox


async def held_body(gate: asyncio.Event) -> AsyncIterator[bytes]:
    """A Patient whose body is not finished until ``gate`` is set."""
    yield b'{"resourceType": "Patient"'
    await gate.wait()
    yield b"}"


async def until_in_flight(server: SandboxServer, count: int) -> None:
    # the server runs in another thread: give it passes of this loop and a moment of its own
    for _ in range(5_000):
        if server.app.faults.in_flight == count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{server.app.faults.in_flight} requests in flight, not {count}")


async def test_requests_beyond_the_capacity_get_503_and_the_limiter_cuts_once(
    server: SandboxServer,
) -> None:
    server.app.faults.set(capacity=2)
    limiter = AdaptiveLimiter(ConcurrencyLimits(max=6))
    url = f"{server.base_url}/Patient"
    gates = [asyncio.Event(), asyncio.Event()]

    async def send(http: httpx.AsyncClient, gate: asyncio.Event | None) -> int:
        async with limiter.slot() as slot:
            if gate is None:
                response = await http.get(url)
            else:
                response = await http.post(url, content=held_body(gate), headers=FHIR_JSON)
            slot.done(Outcome.OVERLOADED if response.status_code == 503 else Outcome.OK)
            return response.status_code

    async with httpx.AsyncClient(timeout=30) as http:
        held = [asyncio.create_task(send(http, gate)) for gate in gates]
        await until_in_flight(server, 2)
        # four more, sent together: the server has room for none of them
        over = await asyncio.gather(*(send(http, None) for _ in range(4)))
        assert over == [503] * 4
        # one burst of 503s is one cut: from 6 to 5, with the two held still in flight
        assert (limiter.state().limit, limiter.state().in_flight) == (5, 2)
        for gate in gates:
            gate.set()
        assert await asyncio.gather(*held) == [201, 201]
        assert (await http.get(url)).status_code == 200
    assert server.app.faults.injected == {"capacity": 4}
    # the server counts a request out once its answer is sent: a moment after we read it
    await until_in_flight(server, 0)
