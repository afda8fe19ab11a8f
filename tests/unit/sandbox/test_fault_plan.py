"""The fault plan: exact counts, windows on a fake clock, the admin endpoint, in-process."""

from __future__ import annotations

import httpx
import pytest

from ehrbridge.sandbox.app import SandboxApp
from ehrbridge.sandbox.faults import FaultPlan, Faults

BASE = "http://sandbox.test/fhir/R4"


class Clock:
    """Monotonic seconds that the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_counted_faults_are_consumed_in_order() -> None:
    faults = Faults()
    faults.set(FaultPlan(resets=1, errors=2, throttle=1, retry_after=7))
    decisions = [faults.decide("GET", read=True) for _ in range(5)]
    assert [d.drop_connection for d in decisions] == [True, False, False, False, False]
    assert [d.status for d in decisions] == [None, 503, 503, 429, None]
    assert decisions[3].retry_after == 7
    assert faults.injected == {"reset": 1, "error": 2, "throttle": 1}
    assert faults.plan == FaultPlan(retry_after=7)


def test_stale_reads_and_dropped_writes_apply_to_their_kind_only() -> None:
    faults = Faults()
    faults.set(stale_reads=1, dropped_writes=1)
    assert not faults.decide("GET", read=False).stale  # an operation ($export) is not stale
    assert not faults.decide("GET", read=False).drop_write
    assert faults.decide("PUT", read=False).drop_write
    assert faults.decide("GET", read=True).stale
    assert faults.decide("GET", read=True) == faults.decide("POST", read=False)


def test_outage_window_and_rate_limit_follow_the_clock() -> None:
    clock = Clock()
    faults = Faults(clock)
    faults.set(FaultPlan(outage_seconds=5, rate_limit=2))
    assert faults.decide("GET", read=False).status == 503
    clock.now += 5
    statuses = [faults.decide("GET", read=False).status for _ in range(3)]
    assert statuses == [None, None, 429]
    clock.now += 1
    assert faults.decide("GET", read=False).status is None
    assert faults.injected == {"outage": 1, "rate_limit": 1}


def test_a_plan_from_json_refuses_bad_fields() -> None:
    assert FaultPlan.from_json({"latency": 1, "outage_mode": "drop"}).latency == 1.0
    for bad in ({"errors": -1}, {"errors": True}, {"error_status": 404}, {"outage_mode": "x"}):
        with pytest.raises(ValueError, match="must"):
            FaultPlan.from_json(bad)


async def test_the_admin_endpoint_sets_reads_and_clears_the_plan() -> None:
    app = SandboxApp(seed=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        set_ = await http.post(
            "http://sandbox.test/$faults", json={"errors": 2, "error_status": 500}
        )
        assert set_.json()["plan"]["errors"] == 2
        statuses = [(await http.get(f"{BASE}/Patient")).status_code for _ in range(3)]
        assert statuses == [500, 500, 200]
        got = (await http.get("http://sandbox.test/$faults")).json()
        assert got["injected"] == {"error": 2}
        bad = await http.post("http://sandbox.test/$faults", json={"nope": 1})
        assert bad.status_code == 400
        assert "nope" in bad.json()["issue"][0]["details"]["text"]
        app.faults.set(throttle=1)
        throttled = await http.get(f"{BASE}/Patient")
        assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "1")
        assert throttled.json()["issue"][0]["code"] == "throttled"
        cleared = await http.delete("http://sandbox.test/$faults")
        assert cleared.json() == {"plan": FaultPlan().__dict__, "injected": {}}
        # the admin endpoints themselves are never faulted
        app.faults.set(outage=True)
        assert (await http.get("http://sandbox.test/$faults")).status_code == 200
        assert (await http.get(f"{BASE}/Patient")).status_code == 503


async def test_latency_is_added_to_every_fhir_request_and_counted() -> None:
    app = SandboxApp(seed=False)
    app.faults.set(latency=0.001)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        for _ in range(3):
            assert (await http.get(f"{BASE}/Patient")).status_code == 200
        await http.get("http://sandbox.test/$faults")  # not a FHIR request
    assert app.faults.injected == {"latency": 3}


async def test_a_dropped_transaction_answers_but_stores_nothing() -> None:
    app = SandboxApp(seed=False)
    app.faults.set(dropped_writes=1)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        response = await http.post(BASE, json=bundle)
        assert response.status_code == 200
        assert response.json()["entry"][0]["response"]["status"] == "201 Created"
        assert (await http.get(f"{BASE}/Patient")).json()["total"] == 0
