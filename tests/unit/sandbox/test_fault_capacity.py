"""The capacity fault: beyond ``capacity`` FHIR requests in flight at once, 503 (in-process; the
requests are held in flight by bodies that wait, never by time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from ehrbridge.sandbox.app import SandboxApp
from ehrbridge.sandbox.faults import FaultPlan, Faults

BASE = "http://sandbox.test/fhir/R4"
FHIR_JSON = {"content-type": "application/fhir+json"}


async def held_body(gate: asyncio.Event) -> AsyncIterator[bytes]:
    """A Patient whose body is not finished until ``gate`` is set."""
    yield b'{"resourceType": "Patient"'
    await gate.wait()
    yield b"}"


async def until_in_flight(faults: Faults, count: int) -> None:
    for _ in range(10_000):
        if faults.in_flight == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{faults.in_flight} requests in flight, not {count}")


def test_requests_beyond_the_capacity_are_refused_and_not_counted() -> None:
    faults = Faults()
    faults.set(capacity=2)
    assert [faults.enter() for _ in range(3)] == [True, True, False]
    assert faults.in_flight == 2
    faults.leave()
    assert faults.enter()
    assert faults.injected == {"capacity": 1}
    # a new plan does not forget the requests in flight
    faults.set(FaultPlan())
    assert faults.in_flight == 2
    assert FaultPlan.from_json({"capacity": 3}).capacity == 3


async def test_a_request_beyond_the_capacity_in_flight_gets_503_at_once() -> None:
    app = SandboxApp(seed=False)
    app.faults.set(capacity=2)
    gates = [asyncio.Event(), asyncio.Event()]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        held = [
            asyncio.create_task(
                http.post(f"{BASE}/Patient", content=held_body(gate), headers=FHIR_JSON)
            )
            for gate in gates
        ]
        await until_in_flight(app.faults, 2)
        app.faults.set(errors=1)  # a counted fault the refused request does not consume
        over = await http.get(f"{BASE}/Patient")
        assert over.status_code == 503
        assert over.json()["resourceType"] == "OperationOutcome"
        assert app.faults.plan.errors == 1
        for gate in gates:
            gate.set()
        assert [(await task).status_code for task in held] == [201, 201]
        assert app.faults.in_flight == 0
        statuses = [(await http.get(f"{BASE}/Patient")).status_code for _ in range(2)]
        assert statuses == [503, 200]  # the counted error, then room again
    assert app.faults.injected == {"capacity": 1, "error": 1}
