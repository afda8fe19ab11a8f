"""PHI never reaches the logs: recognisable names, phone numbers, birth dates and addresses are
planted in the world model and in requests, every route is exercised on a real uvicorn socket
(served as ``ehrbridge serve`` serves it, uvicorn at DEBUG), error paths included, and
everything logged is scanned."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from ehrbridge.api.http import create_app
from ehrbridge.api.serve import mcp_mounts, uvicorn_config
from ehrbridge.api.service import AgentService
from ehrbridge.outbound.outbox import NewItem, item_key
from ehrbridge.sample import sample_bundle
from ehrbridge.storage import Backend
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.store import Store
from tests.integration.api.test_http import FailingAudit
from tests.integration.api.test_service import DEC_1, SLOTS, WS, _import

GIVEN, FAMILY = "Ottoline", "Quillfeather"
BIRTH = "1937-03-14"
PHONE = "+16175550987"
EMAIL = "ottoline.quillfeather@example.org"
STREET = "42 Wisteria Lane"
#: what must never appear in a log line: the planted values, and the sample clinic's Maria
PLANTED = (
    GIVEN,
    FAMILY,
    BIRTH,
    "1937",
    "6175550987",
    "555-0987",
    "555 0987",
    "5550987",
    "quillfeather@",
    "Wisteria",
    "Santos",
    "6175550142",
    "555-0142",
    "1984-03-12",
    "Larkspur",
)
#: the test's own HTTP client logs the URLs it requests: that is the client's log, not the
#: server's, so its records are left out of the scan
CLIENT_LOGGERS = ("httpx", "httpcore")


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` on a loopback socket as ``ehrbridge serve`` configures uvicorn, but logging at
    DEBUG into the root logger (``log_config=None``: caplog sees uvicorn's records)."""
    server = uvicorn.Server(
        uvicorn_config(app, host="127.0.0.1", port=0, log_level="debug", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


async def exercise(client: httpx.AsyncClient, key: str, ids: dict[str, str]) -> list[int]:
    """Every route, with the planted values in paths, queries, headers and bodies, happy and
    refused; returns the statuses seen."""
    auth = {"Authorization": f"Bearer {key}"}
    statuses: list[int] = []

    async def go(method: str, url: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {**auth, **kw.pop("headers", {})}
        response = await client.request(method, url, json=body, headers=headers, **kw)
        statuses.append(response.status_code)
        return response

    planted = await go(
        "POST",
        "/v1/observations",
        {
            "entity_type": "Patient",
            "fields": {
                "name.family": FAMILY,
                "name.given": [GIVEN],
                "birth_date": BIRTH,
                "phone.mobile": PHONE,
                "email": EMAIL,
                "address.line": [STREET],
            },
            "level": "confirmed",
            "call_id": "call-phi",
            "evidence": {"transcript_span": f"I'm {GIVEN} {FAMILY}, born {BIRTH}, {PHONE}"},
        },
        headers={"Idempotency-Key": "call-phi:patient"},
    )
    assert planted.status_code == 200, planted.text
    patient = planted.json()["entity"]["entity_id"]
    maria = ids["pat-1001"]
    for phone in ("(617) 555-0987", PHONE, "(617) 555-0142", "+16175550988"):
        await go("POST", "/v1/ambient/context", {"phone": phone, "prompt_budget": 400})
    await go("POST", "/v1/ambient/context", {"phone": f"{GIVEN} {FAMILY}"})  # 422
    await go("POST", "/v1/ambient/context", {"phone": PHONE, "region": BIRTH})  # 422
    await go("POST", "/v1/patients/search", {"name": f"{GIVEN} {FAMILY}", "birth_date": BIRTH})
    await go("POST", "/v1/patients/search", {"phone": "617 555 0987"})
    await go("POST", "/v1/patients/search", {"address": STREET, "name": "Santos"})
    await go("POST", "/v1/patients/search", {"birth_date": f"{BIRTH} {GIVEN}"})  # 422
    await go("POST", "/v1/entities/search", {"text": FAMILY})
    await go("POST", "/v1/entities/search", {"email": EMAIL, "phone": PHONE})
    await go("POST", "/v1/entities/search", {"email": f"{GIVEN}-not-an-email"})  # 422
    for who in (patient, maria):
        await go("GET", f"/v1/entities/Patient/{who}")
        await go("GET", f"/v1/entities/Patient/{who}", params={"as_of": "2030-01-01T00:00:00Z"})
        await go("GET", f"/v1/entities/Patient/{who}/timeline", params={"limit": 5})
    await go("GET", f"/v1/entities/Patient/{patient}", params={"as_of": GIVEN})  # 422
    for missing in ("16175550987", "6175550142", f"{FAMILY}.{GIVEN}"):  # 404s
        await go("GET", f"/v1/entities/Patient/{missing}")
        await go("GET", f"/v1/entities/Patient/{missing}/timeline")
    await go("GET", f"/v1/entities/Patient/{PHONE}")  # 422: not an entity id
    await go("POST", "/v1/slots/search", {"start": DEC_1.isoformat(), "end": "2027-01-01T00:00Z"})
    await go("POST", "/v1/slots/search", {"start": BIRTH, "end": GIVEN})  # 422
    await go(
        "POST",
        "/v1/observations",
        {"entity_type": "Patient", "fields": {f"{GIVEN} {FAMILY}": BIRTH}, "level": "verified"},
    )  # 422
    await go(
        "POST",
        "/v1/observations",
        {"entity_type": "MedicationOrder", "fields": {"note": f"{GIVEN}'s pills"},
         "level": "confirmed"},
    )  # fmt: skip  # 403
    await go(
        "POST",
        "/v1/observations",
        {"entity_type": "Patient", "entity_id": "16175550987", "fields": {"email": EMAIL},
         "level": "confirmed"},
    )  # fmt: skip  # 404
    await go(
        "POST",
        "/v1/observations",
        {"entity_type": "Patient", "entity_id": patient, "fields": {"phone.home": GIVEN},
         "level": "mentioned"},
    )  # fmt: skip  # 422: not a phone
    transcript = f"Hello, this is {GIVEN} {FAMILY}, born {BIRTH}, at {STREET}; call me on {PHONE}."
    await go(
        "POST",
        "/v1/calls/call-phi/transcript",
        {"transcript": transcript, "patient_id": patient, "caller_phone": "(617) 555-0987"},
    )
    await go("POST", "/v1/calls/call-phi/transcript", {"transcript": transcript, "x": PHONE})
    booking = {
        "patient_id": patient,
        "slot_id": ids["slot-9001"],
        "reason": f"{GIVEN}'s knee, since {BIRTH}",
        "call_id": "call-phi",
        "evidence": {"transcript_span": f"Tuesday works for {GIVEN}"},
        "idempotency_key": "call-phi:booking",
    }
    await go("POST", "/v1/appointments", booking)
    await go("POST", "/v1/appointments", booking)  # the retry
    await go("POST", "/v1/appointments", {**booking, "idempotency_key": None})  # 409: taken
    await go("POST", "/v1/appointments", {**booking, "reason": GIVEN})  # 409: key reused
    # the edge's refusals
    await go("POST", "/v1/patients/search", {"name": FAMILY}, headers={"Authorization": PHONE})
    await go("POST", "/v1/patients/search", {"name": FAMILY}, headers={"X-API-Key": GIVEN})
    await go(
        "POST",
        "/v1/patients/search",
        content=f"name={GIVEN}&phone={PHONE}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # 415
    await go("POST", "/v1/calls/call-phi/transcript", {"transcript": transcript * 1000})  # 413
    await go("POST", "/v1/ambient/context", {"phone": PHONE}, headers={"X-Request-Id": FAMILY})
    await go("GET", f"/v1/patients/{PHONE}", params={"name": FAMILY})  # 404 route
    await go("GET", f"/{GIVEN}/{PHONE}", params={"dob": BIRTH})  # 404 outside /v1
    await go("DELETE", f"/v1/entities/Patient/{patient}")  # 405
    await go("GET", "/healthz", params={"q": PHONE})
    await go("GET", "/openapi.json")
    return statuses


async def exercise_outbox(
    client: httpx.AsyncClient, backend: Backend, operator: str, agent: str
) -> list[int]:
    """The operators' outbox routes, with an item whose payload holds planted values and the
    planted values in paths, queries and bodies; returns the statuses seen."""
    (item,) = await backend.outbox.enqueue(
        WS,
        [
            NewItem(
                sink="ehr",
                key=item_key("ehr", "phi"),
                lane="Patient/phi",
                entity_type="Patient",
                entity_id="phi",
                event_id="phi",
                operation="upsert",
                payload={"fields": {"phone.mobile": PHONE, "name.family": FAMILY}},
            )
        ],
    )
    statuses: list[int] = []

    async def go(method: str, url: str, body: Any = None, key: str = operator, **kw: Any) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        response = await client.request(method, url, json=body, headers=headers, **kw)
        statuses.append(response.status_code)

    await go("GET", "/v1/outbox/items")
    await go("GET", "/v1/outbox/items", params={"entity": f"Patient/{FAMILY}", "sink": GIVEN})
    await go("GET", "/v1/outbox/items", params={"entity": f"{GIVEN} {FAMILY}"})  # 422
    await go("GET", "/v1/outbox/items", params={"event": FAMILY.lower(), "status": BIRTH})  # 422
    await go("GET", f"/v1/outbox/items/{item.id}")
    await go("GET", f"/v1/outbox/items/{FAMILY.lower()}")  # 404
    await go("GET", f"/v1/outbox/items/{PHONE}")  # 422
    await go("POST", f"/v1/outbox/items/{item.id}/retry")  # 409: not parked
    await go("POST", f"/v1/outbox/items/{item.id}/skip", {"reason": f"{GIVEN} moved"})  # 409
    await go("POST", f"/v1/outbox/items/{FAMILY.lower()}/skip", {"reason": PHONE})  # 404
    await go("POST", f"/v1/outbox/items/{item.id}/skip", {"reason": PHONE, "x": BIRTH})  # 422
    await go("GET", "/v1/outbox/stats")
    await go("GET", "/v1/outbox/items", key=agent, params={"entity": f"Patient/{FAMILY}"})  # 403
    return statuses


#: the ids the server makes (request ids, entity ids: 26 or more hex digits) are random, and a
#: planted digit run like "1937" turns up inside one now and then; no planted value is one
_GENERATED_ID = re.compile(r"\b[0-9a-f]{26,}\b")


def scan(text: str) -> list[str]:
    text = _GENERATED_ID.sub("<id>", text.lower())
    return [value for value in PLANTED if value.lower() in text]


async def test_no_planted_value_reaches_any_log(
    store: Store,
    backend: Backend,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for name in [*logging.root.manager.loggerDict, ""]:
        caplog.set_level(logging.DEBUG, logger=name)
    ids = await _import(store, WS, [sample_bundle(), SLOTS])
    security = backend.security
    key, _ = await security.create_key(WS, "agent", name="voice bot")
    operator, _ = await security.create_key(WS, "operator", name="front desk")
    service = AgentService.on_store(store, security, clock=clock, outbox=backend.outbox)
    app = create_app(
        service, security, max_body_bytes=64 * 1024, mounts=mcp_mounts(service, security)
    )
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        statuses = await exercise(client, key, ids)
        outbox_statuses = await exercise_outbox(client, backend, operator, key)
    assert set(outbox_statuses) == {200, 403, 404, 409, 422}
    # the paths this walk was meant to take were taken
    assert {200, 201, 401, 403, 404, 405, 409, 413, 415, 422} <= set(statuses)
    server_records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    logged = "\n".join(caplog.handler.format(r) for r in server_records)
    assert "POST /v1/ambient/context 200" in logged
    assert "GET /v1/entities/{entity_type}/{entity_id} 404" in logged
    assert "GET /openapi.json 200" in logged and "GET - 404" in logged
    assert "POST /v1/outbox/items/{item_id}/skip 409" in logged
    assert any(r.name.startswith("uvicorn") for r in server_records)
    assert scan(logged) == []
    out, err = capfd.readouterr()
    assert scan(out + err) == []


async def test_an_unexpected_failure_quoting_phi_is_logged_without_it(
    store: Store,
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for name in [*logging.root.manager.loggerDict, ""]:
        caplog.set_level(logging.DEBUG, logger=name)
    await _import(store, WS, [sample_bundle()])
    security = backend.security
    key, _ = await security.create_key(WS, "agent")
    failing = FailingAudit(RuntimeError(f"row for {GIVEN} {FAMILY} {BIRTH} {PHONE}"))
    app = create_app(AgentService.on_store(store, failing), security)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(
            "/v1/ambient/context",
            json={"phone": "(617) 555-0142"},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 500
    assert scan(response.text) == []
    server_records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    logged = "\n".join(caplog.handler.format(r) for r in server_records)
    assert "RuntimeError" in logged and response.json()["request_id"] in logged
    assert scan(logged) == []
    out, err = capfd.readouterr()
    assert scan(out + err) == []
