"""The HTTP API (FastAPI over AgentService) on every backend, through httpx's ASGI transport:
every route, authentication, roles and write scope, workspace isolation, problem+json, the body
limit, idempotent retries and the audit trail's request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from ehrbridge.api.http import create_app
from ehrbridge.api.models import (
    AmbientRequest,
    AmbientResponse,
    BookingConfirmation,
    EntityList,
    EntitySearch,
    EntityView,
    PatientSearch,
    SlotList,
    SlotSearch,
    StateRequest,
    Timeline,
    TimelineRequest,
    WriteResult,
)
from ehrbridge.api.service import AgentService
from ehrbridge.api.store import AuditEntry, AuditLog, SecurityStore
from ehrbridge.errors import StorageError
from ehrbridge.sample import sample_bundle
from ehrbridge.storage import Backend
from ehrbridge.storage.security import KeyCache
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.store import Store
from tests.conftest import MakeBackend
from tests.integration.api.test_service import DEC_1, OTHER, SLOTS, WS, _import

MARIA_PHONE = "+16175550142"
NOWHERE = "01nonexistent0000000000000"
REQUEST_ID = "0123456789abcdef0123456789abcdef"
PROBLEM = "application/problem+json"


@dataclass
class Api:
    """The sample clinic (and a rival workspace) behind the HTTP API."""

    client: httpx.AsyncClient
    security: SecurityStore
    ids: dict[str, str]
    other_ids: dict[str, str]
    #: secrets by name: agent, operator, admin (WS), rival (an agent of OTHER), narrow (an agent
    #: of WS that may write Patient only)
    keys: dict[str, str]
    service: AgentService

    def auth(self, who: str = "agent") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def call(
        self, method: str, url: str, body: Any = None, *, who: str | None = "agent", **kw: Any
    ) -> httpx.Response:
        headers = {**(self.auth(who) if who else {}), **kw.pop("headers", {})}
        return await self.client.request(method, url, json=body, headers=headers, **kw)

    async def audit(self, **filters: Any) -> list[AuditEntry]:
        return await self.security.query_audit(WS, limit=1000, **filters)


async def make_keys(security: SecurityStore) -> dict[str, str]:
    keys = {}
    for name, workspace, role, scope in [
        ("agent", WS, "agent", None),
        ("operator", WS, "operator", None),
        ("admin", WS, "admin", None),
        ("rival", OTHER, "agent", None),
        ("narrow", WS, "agent", frozenset({"Patient"})),
    ]:
        extra = {"write_types": scope} if scope else {}
        keys[name], _ = await security.create_key(workspace, role, name=name, **extra)  # type: ignore[arg-type]
    return keys


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ehrbridge.test"
    )


@pytest.fixture
async def api(make_backend: MakeBackend, clock: FakeClock) -> AsyncIterator[Api]:
    backend = await make_backend(key_cache=KeyCache(timedelta(0)))
    store, security = backend.worldmodel, backend.security
    ids = await _import(store, WS, [sample_bundle(), SLOTS])
    other_ids = await _import(store, OTHER, [sample_bundle()])
    keys = await make_keys(security)
    service = AgentService.on_store(store, security, clock=clock)
    async with client_for(create_app(service, security, max_body_bytes=64 * 1024)) as client:
        yield Api(
            client=client,
            security=security,
            ids=ids,
            other_ids=other_ids,
            keys=keys,
            service=service,
        )


# --- the route table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One data route and a valid request to it (for the sample clinic's ``ids``)."""

    name: str
    method: str
    #: the URL of a valid request
    url: Callable[[dict[str, str]], str]
    body: Callable[[dict[str, str]], Any]
    #: the response model and the success status
    model: type[Any]
    status: int = 200
    writes: bool = False


WEEK = {"start": DEC_1.isoformat(), "end": (DEC_1 + timedelta(days=7)).isoformat()}

ROUTES: Sequence[Route] = (
    Route(
        "ambient", "POST", lambda i: "/v1/ambient/context",
        lambda i: {"phone": "(617) 555-0142"}, AmbientResponse,
    ),
    Route(
        "entities.search", "POST", lambda i: "/v1/entities/search",
        lambda i: {"text": "santos"}, EntityList,
    ),
    Route(
        "patients.search", "POST", lambda i: "/v1/patients/search",
        lambda i: {"name": "Maria Santos"}, EntityList,
    ),
    Route(
        "state", "GET", lambda i: f"/v1/entities/Patient/{i['pat-1001']}",
        lambda i: None, EntityView,
    ),
    Route(
        "timeline", "GET", lambda i: f"/v1/entities/Patient/{i['pat-1001']}/timeline",
        lambda i: None, Timeline,
    ),
    Route("slots", "POST", lambda i: "/v1/slots/search", lambda i: WEEK, SlotList),
    Route(
        "observations", "POST", lambda i: "/v1/observations",
        lambda i: {
            "entity_type": "Patient", "entity_id": i["pat-1001"], "fields": {"language": "pt"},
            "level": "mentioned", "call_id": "call-1",
            "evidence": {"transcript_span": "I'd rather speak Portuguese"},
        },
        WriteResult, writes=True,
    ),
    Route(
        "transcript", "POST", lambda i: "/v1/calls/call-1/transcript",
        lambda i: {"transcript": "Hello, it's about my appointment.",
                   "patient_id": i["pat-1001"], "direction": "inbound"},
        WriteResult, writes=True,
    ),
    Route(
        "appointments", "POST", lambda i: "/v1/appointments",
        lambda i: {"patient_id": i["pat-1001"], "slot_id": i["slot-9001"], "call_id": "call-1"},
        BookingConfirmation, status=201, writes=True,
    ),
)  # fmt: skip
BY_NAME = {route.name: route for route in ROUTES}


async def request(api: Api, route: Route, who: str | None = "agent", **kw: Any) -> httpx.Response:
    return await api.call(route.method, route.url(api.ids), route.body(api.ids), who=who, **kw)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert {"type", "title", "status", "detail", "instance", "request_id"} <= set(problem)
    assert problem["request_id"] == response.headers["x-request-id"]
    assert problem["instance"] == f"urn:ehrbridge:request:{problem['request_id']}"
    return problem


# --- every route -----------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
async def test_every_route_answers_its_model(api: Api, route: Route) -> None:
    response = await request(api, route)
    assert response.status_code == route.status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    answer = route.model.model_validate(response.json())
    maria = api.ids["pat-1001"]
    if isinstance(answer, AmbientResponse):
        assert answer.match == "matched"
        assert answer.context is not None and answer.context.patient.entity_id == maria
        assert answer.prompt
    elif isinstance(answer, EntityList):
        assert maria in {item.entity_id for item in answer.items}
    elif isinstance(answer, EntityView):
        assert answer.entity_id == maria
        assert answer.fields["name.family"].value == "Santos"
    elif isinstance(answer, Timeline):
        assert answer.entity_id == maria and answer.events
    elif isinstance(answer, SlotList):
        assert api.ids["slot-9001"] in {slot.slot_id for slot in answer.items}
    elif isinstance(answer, BookingConfirmation):
        assert answer.status == "recorded"
        assert answer.appointment.fields["status"].value == "booked"
        assert response.headers["location"] == f"/v1/entities/Appointment/{answer.appointment_id}"
    else:
        assert isinstance(answer, WriteResult)
        assert answer.status == "recorded" and answer.event_id


async def test_read_routes_answer_exactly_what_the_service_answers(api: Api) -> None:
    # the MCP tests prove the tools answer what the service answers: together, HTTP == MCP
    agent = await api.security.authenticate(api.keys["agent"])
    assert agent is not None
    svc, maria = api.service, api.ids["pat-1001"]
    cases: list[tuple[Route, Any]] = [
        (BY_NAME["ambient"], svc.ambient_context(agent, AmbientRequest(phone="(617) 555-0142"))),
        (BY_NAME["entities.search"], svc.search_entities(agent, EntitySearch(text="santos"))),
        (
            BY_NAME["patients.search"],
            svc.search_patients(agent, PatientSearch(name="Maria Santos")),
        ),
        (
            BY_NAME["state"],
            svc.entity_state(agent, StateRequest(entity_type="Patient", entity_id=maria)),
        ),
        (
            BY_NAME["timeline"],
            svc.entity_timeline(agent, TimelineRequest(entity_type="Patient", entity_id=maria)),
        ),
        (BY_NAME["slots"], svc.search_slots(agent, SlotSearch.model_validate(WEEK))),
    ]
    for route, direct in cases:
        over_http = await request(api, route)
        assert over_http.json() == (await direct).model_dump(mode="json"), route.name


async def test_state_as_of_and_timeline_paging(api: Api, clock: FakeClock) -> None:
    maria = api.ids["pat-1001"]
    as_of = clock.now.isoformat()
    clock.advance()
    wrote = await request(api, BY_NAME["observations"])
    assert wrote.status_code == 200
    now = await api.call("GET", f"/v1/entities/Patient/{maria}")
    assert now.json()["pending"]["language"][0]["value"] == "pt"
    # as of before the write, it is not there
    then = await api.call("GET", f"/v1/entities/Patient/{maria}", params={"as_of": as_of})
    assert then.status_code == 200, then.text
    assert "language" not in then.json()["pending"]
    first = await api.call("GET", f"/v1/entities/Patient/{maria}/timeline", params={"limit": 1})
    page = Timeline.model_validate(first.json())
    assert len(page.events) == 1 and page.next_version == 1
    rest = await api.call(
        "GET", f"/v1/entities/Patient/{maria}/timeline", params={"after_version": 1}
    )
    assert [e.correlation_id for e in Timeline.model_validate(rest.json()).events] == ["call-1"]
    # a time without a zone is refused, naming the parameter
    naive = await api.call(
        "GET", f"/v1/entities/Patient/{maria}", params={"as_of": "2026-11-20T08:00:00"}
    )
    problem = assert_problem(naive, 422)
    assert [(e["location"], e["field"]) for e in problem["errors"]] == [("query", "as_of")]


async def test_healthz_and_openapi_are_public_and_hold_no_data(api: Api) -> None:
    health = await api.call("GET", "/healthz", who=None)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    document = await api.call("GET", "/openapi.json", who=None)
    assert document.status_code == 200
    # built from the code alone: no entity of the clinic appears in it
    assert not [i for i in api.ids.values() if i in document.text]


async def test_openapi_documents_every_route_its_problems_and_the_security_schemes(
    api: Api,
) -> None:
    document = (await api.call("GET", "/openapi.json", who=None)).json()
    assert set(document["components"]["securitySchemes"]) == {"bearerKey", "apiKeyHeader"}
    assert "Problem" in document["components"]["schemas"]
    operations = {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
        if path.startswith("/v1/")
    }
    # the agent's routes, and the operators' review queue and outbox (test_review.py,
    # test_outbox.py)
    review = {key for key in operations if key[1].startswith("/v1/review/")}
    outbox = {key for key in operations if key[1].startswith("/v1/outbox/")}
    assert len(operations) - len(review) - len(outbox) == len(ROUTES)
    assert (len(review), len(outbox)) == (9, 5)
    problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
    for (method, path), op in operations.items():
        assert op["security"] == [{"bearerKey": []}, {"apiKeyHeader": []}], path
        expected = {"401", "403", "404", "413", "422", "500"}
        if method == "POST":
            expected |= {"415"}
        if path in ("/v1/observations", "/v1/appointments") or path.endswith("/transcript"):
            expected |= {"409"}
        if method == "POST" and (method, path) in review | outbox:
            expected |= {"409"}
        assert expected <= set(op["responses"]), path
        for status in expected:
            assert op["responses"][status]["content"] == {PROBLEM: problem}, (path, status)
    for path in ("/v1/observations", "/v1/appointments"):
        op = operations["POST", path]
        assert "Idempotency-Key" in {p["name"] for p in op["parameters"]}
    assert "/mcp" not in document["paths"]


# --- authentication and roles ----------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
async def test_every_data_route_refuses_a_missing_bad_or_revoked_key(
    api: Api, route: Route
) -> None:
    revoked, stored = await api.security.create_key(WS, "agent", name="old")
    assert await api.security.revoke_key(WS, stored.key_id)
    api.keys["revoked"] = revoked
    ambient_before = await api.audit()
    attempts: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer ehb_000000000000_notakeyatallnotakeyatallnotakeyatall123"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {api.keys['agent']}"},
        {"X-API-Key": "nonsense"},
        api.auth("revoked"),
    ]
    for headers in attempts:
        response = await request(api, route, who=None, headers=headers)
        problem = assert_problem(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer realm="ehrbridge"'
        assert problem["type"] == "urn:ehrbridge:problem:unauthenticated"
    # nothing was done, so nothing was audited
    assert await api.audit() == ambient_before
    # the same key in X-API-Key works
    ok = await request(api, route, who=None, headers={"X-API-Key": api.keys["agent"]})
    assert ok.status_code == route.status


async def test_an_unknown_route_under_v1_is_401_before_it_is_404(api: Api) -> None:
    assert_problem(await api.call("GET", "/v1/secrets", who=None), 401)
    missing = assert_problem(await api.call("GET", "/v1/secrets"), 404)
    assert missing["type"] == "about:blank"
    wrong = await api.call("DELETE", "/v1/observations")
    assert_problem(wrong, 405)
    assert wrong.headers["allow"] == "POST"


@pytest.mark.parametrize("role", ["agent", "operator", "admin"])
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
async def test_every_role_may_use_every_route_within_its_scope(
    api: Api, route: Route, role: str
) -> None:
    response = await request(api, route, who=role)
    assert response.status_code == route.status, response.text
    [entry, *_] = await api.audit()
    assert (entry.role, entry.outcome, entry.details["channel"]) == (role, "ok", "http")


async def test_writes_outside_the_write_scope_are_403_and_audited(api: Api) -> None:
    medication = {
        "entity_type": "MedicationOrder",
        "fields": {"status": "stopped"},
        "level": "confirmed",
    }
    denied = assert_problem(await api.call("POST", "/v1/observations", medication), 403)
    assert denied["type"] == "urn:ehrbridge:problem:permission-denied"
    assert "MedicationOrder" in denied["detail"]
    # operator and admin keys are not limited by type
    for who in ("operator", "admin"):
        allowed = await api.call("POST", "/v1/observations", medication, who=who)
        assert allowed.status_code == 200, allowed.text
    # a key scoped to Patient may neither book nor attach a transcript
    for name in ("appointments", "transcript"):
        assert_problem(await request(api, BY_NAME[name], who="narrow"), 403)
    assert (await request(api, BY_NAME["observations"], who="narrow")).status_code == 200
    outcomes = [(e.action, e.outcome, e.role) for e in await api.audit() if e.outcome != "ok"]
    assert sorted(outcomes) == [
        ("appointments.book", "denied", "agent"),
        ("observations.write", "denied", "agent"),
        ("transcripts.attach", "denied", "agent"),
    ]


@pytest.mark.parametrize("level", ["verified", "ehr", "operator", "1.0"])
async def test_a_level_above_voice_cannot_be_asked_for(api: Api, level: str) -> None:
    body = {**BY_NAME["observations"].body(api.ids), "level": level}
    for who in ("agent", "admin"):
        problem = assert_problem(await api.call("POST", "/v1/observations", body, who=who), 422)
        assert [e["field"] for e in problem["errors"]] == ["level"]
    booking = {**BY_NAME["appointments"].body(api.ids), "level": level}
    assert_problem(await api.call("POST", "/v1/appointments", booking), 422)


# --- workspace isolation ---------------------------------------------------------------------


def _anonymous(problem: dict[str, Any], entity_id: str) -> dict[str, Any]:
    """A problem without what differs by request: its id, and the id asked for."""
    return {
        key: str(value).replace(entity_id, "<id>")
        for key, value in problem.items()
        if key not in ("instance", "request_id")
    }


async def test_a_key_of_another_workspace_learns_nothing(api: Api) -> None:
    theirs = api.ids["pat-1001"]  # Maria in WS; OTHER has its own ids

    async def refusals(entity_id: str) -> list[dict[str, Any]]:
        answers = []
        for method, url, body in [
            ("GET", f"/v1/entities/Patient/{entity_id}", None),
            ("GET", f"/v1/entities/Patient/{entity_id}/timeline", None),
            ("POST", "/v1/observations",
             {"entity_type": "Patient", "entity_id": entity_id, "fields": {"language": "en"},
              "level": "confirmed"}),
            ("POST", "/v1/appointments",
             {"patient_id": entity_id, **WEEK, "end": (DEC_1 + timedelta(hours=1)).isoformat()}),
            ("POST", "/v1/calls/call-x/transcript", {"transcript": "hi", "patient_id": entity_id}),
        ]:  # fmt: skip
            response = await api.call(method, url, body, who="rival")
            answers.append(_anonymous(assert_problem(response, 404), entity_id))
        return answers

    # an entity of WS is refused exactly like one that exists nowhere
    assert await refusals(theirs) == await refusals(NOWHERE)
    # booking a slot of WS for the rival's own patient: the slot does not exist for them
    slot = {"patient_id": api.other_ids["pat-1001"], "slot_id": api.ids["slot-9001"]}
    assert_problem(await api.call("POST", "/v1/appointments", slot, who="rival"), 404)
    # searches see only OTHER
    ws_ids = set(api.ids.values())
    for url, body in [
        ("/v1/patients/search", {"name": "Santos"}),
        ("/v1/entities/search", {"text": "santos"}),
        ("/v1/entities/search", {"phone": MARIA_PHONE}),
    ]:
        found = EntityList.model_validate((await api.call("POST", url, body, who="rival")).json())
        assert found.items and not {e.entity_id for e in found.items} & ws_ids
    slots = await api.call("POST", "/v1/slots/search", WEEK, who="rival")
    assert slots.json()["items"] == []
    ambient = await api.call("POST", "/v1/ambient/context", {"phone": MARIA_PHONE}, who="rival")
    assert ambient.json()["context"]["patient"]["entity_id"] == api.other_ids["pat-1001"]
    # nothing of the rival's calls is in WS's audit trail; its own entries name no WS entity
    assert not [e for e in await api.audit() if e.workspace != WS]
    rival_entries = await api.security.query_audit(OTHER, limit=1000)
    assert rival_entries and all(e.workspace == OTHER for e in rival_entries)
    assert not {e.entity_id for e in rival_entries if e.outcome == "ok"} & ws_ids


# --- problems, limits, request ids -----------------------------------------------------------


async def test_validation_problems_name_fields_never_values(api: Api) -> None:
    body = {
        "entity_type": "Patient",
        "fields": {"Ottoline Quillfeather": "x", "birth_date": "1937-03-14"},
        "level": "confirmed",
        "evidence": {"transcript_span": ""},
        "call_id": "+1 617 555 0987",
    }
    response = await api.call("POST", "/v1/observations", body)
    problem = assert_problem(response, 422)
    assert problem["type"] == "urn:ehrbridge:problem:invalid-request"
    fields = sorted(e["field"] for e in problem["errors"])
    assert fields == ["call_id", "evidence.transcript_span", "fields.[key]"]
    pointers = {e["field"]: e.get("pointer") for e in problem["errors"]}
    assert pointers["evidence.transcript_span"] == "#/evidence/transcript_span"
    for planted in ("Ottoline", "Quillfeather", "1937", "555 0987"):
        assert planted not in response.text
    not_json = await api.call(
        "POST",
        "/v1/ambient/context",
        headers={"Content-Type": "application/json"},
        content=b'{"phone": "+1617555',
    )
    assert [e["field"] for e in assert_problem(not_json, 422)["errors"]] == ["(body)"]
    # the service's own refusals are 422 too, with its message
    bad_phone = await api.call("POST", "/v1/ambient/context", {"phone": "not a number"})
    assert assert_problem(bad_phone, 422)["type"] == "urn:ehrbridge:problem:invalid-input"


async def test_bodies_must_be_json(api: Api) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = await api.call(
            "POST",
            "/v1/patients/search",
            content=b"name=Santos",
            headers={"Content-Type": content_type},
        )
        assert_problem(response, 415)
    missing = await api.call("POST", "/v1/patients/search", content=b'{"name": "Santos"}')
    assert_problem(missing, 415)
    suffixed = await api.call(
        "POST",
        "/v1/patients/search",
        content=b'{"name": "Santos"}',
        headers={"Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert suffixed.status_code == 200


async def test_an_oversized_body_is_413_before_it_is_read(api: Api) -> None:
    big = {"call_id": "c", "transcript": "x" * 70_000}
    declared = await api.call("POST", "/v1/calls/call-1/transcript", big)
    problem = assert_problem(declared, 413)
    assert "65536 bytes" in problem["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"transcript": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}'

    streamed = await api.call(
        "POST",
        "/v1/calls/call-1/transcript",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413)
    # neither reached the service
    assert [e for e in await api.audit() if e.action == "transcripts.attach"] == []
    # just under the limit is fine
    fits = await api.call("POST", "/v1/calls/call-1/transcript", {"transcript": "z" * 60_000})
    assert fits.status_code == 200


async def test_a_retry_with_the_same_idempotency_key_writes_once(api: Api) -> None:
    body = BY_NAME["observations"].body(api.ids)
    key = {"Idempotency-Key": "call-1:language"}
    first = await api.call("POST", "/v1/observations", body, headers=key)
    again = await api.call("POST", "/v1/observations", body, headers=key)
    one, two = WriteResult.model_validate(first.json()), WriteResult.model_validate(again.json())
    assert (one.status, two.status) == ("recorded", "duplicate")
    assert one.event_id == two.event_id
    assert one.entity.version == two.entity.version
    # the key may come in the body instead: the same request
    in_body = await api.call(
        "POST", "/v1/observations", {**body, "idempotency_key": "call-1:language"}
    )
    assert in_body.json()["event_id"] == one.event_id
    # both, disagreeing: refused; the key for another request: 409
    both = await api.call(
        "POST", "/v1/observations", {**body, "idempotency_key": "call-1:other"}, headers=key
    )
    assert assert_problem(both, 422)["detail"].startswith("idempotency_key")
    changed = {**body, "fields": {"language": "es"}}
    conflict = assert_problem(await api.call("POST", "/v1/observations", changed, headers=key), 409)
    assert conflict["type"] == "urn:ehrbridge:problem:idempotency-conflict"
    timeline = await api.call("GET", f"/v1/entities/Patient/{api.ids['pat-1001']}/timeline")
    voice = [e for e in timeline.json()["events"] if e["source"]["kind"] == "voice"]
    assert len(voice) == 1
    # bookings: 201 then 200 with the same appointment; the slot is then taken (409)
    booking = BY_NAME["appointments"].body(api.ids)
    key = {"Idempotency-Key": "call-1:booking"}
    booked = await api.call("POST", "/v1/appointments", booking, headers=key)
    retried = await api.call("POST", "/v1/appointments", booking, headers=key)
    assert (booked.status_code, retried.status_code) == (201, 200)
    assert booked.json()["appointment_id"] == retried.json()["appointment_id"]
    assert booked.headers["location"] == retried.headers["location"]
    taken = assert_problem(await api.call("POST", "/v1/appointments", booking), 409)
    assert taken["type"] == "urn:ehrbridge:problem:slot-unavailable"
    entries = [e for e in await api.audit() if e.action == "appointments.book"]
    assert [e.details.get("status") for e in reversed(entries) if e.outcome == "ok"] == [
        "recorded",
        "duplicate",
    ]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
async def test_audit_entries_carry_the_request_id_and_channel(api: Api, route: Route) -> None:
    response = await request(api, route, headers={"X-Request-Id": REQUEST_ID})
    assert response.headers["x-request-id"] == REQUEST_ID
    entries = [e for e in await api.audit() if e.request_id == REQUEST_ID]
    assert entries and all(e.outcome == "ok" for e in entries)
    assert {e.details["channel"] for e in entries} == {"http"}
    assert all(e.key_id == api.keys["agent"].split("_")[1] for e in entries)
    if route.writes:
        assert all("status" in e.details for e in entries)
    else:  # slots are no patient data
        assert any(e.phi for e in entries) is (route.name != "slots")


async def test_a_request_id_that_is_not_opaque_is_replaced(api: Api) -> None:
    for given in ("Maria-Santos", "6175550142", "x" * 32):
        response = await request(api, BY_NAME["ambient"], headers={"X-Request-Id": given})
        assert response.headers["x-request-id"] != given
        assert len(response.headers["x-request-id"]) == 32
    uuid = "123e4567-e89b-12d3-a456-426614174000"
    response = await request(api, BY_NAME["ambient"], headers={"X-Request-Id": uuid})
    assert response.headers["x-request-id"] == uuid


class FailingAudit:
    """An audit log whose database is gone (or that breaks with a message quoting data)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        raise self.error

    async def query_audit(self, workspace: str, **filters: Any) -> list[AuditEntry]:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RuntimeError("Ottoline Quillfeather +16175550987"), 500),
        (StorageError("Ottoline Quillfeather +16175550987"), 503),
    ],
)
async def test_a_failure_is_a_generic_problem_logged_without_its_message(
    store: Store, backend: Backend, caplog: pytest.LogCaptureFixture, error: Exception, status: int
) -> None:
    await _import(store, WS, [sample_bundle()])
    security = backend.security
    secret, _ = await security.create_key(WS, "agent")
    audit: AuditLog = FailingAudit(error)
    app = create_app(AgentService.on_store(store, audit), security)
    caplog.set_level("DEBUG")
    async with client_for(app) as client:
        response = await client.post(
            "/v1/ambient/context",
            json={"phone": MARIA_PHONE},
            headers={"Authorization": f"Bearer {secret}"},
        )
    problem = assert_problem(response, status)
    assert "Ottoline" not in response.text
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("ehrbridge"))
    assert type(error).__name__ in logged and problem["request_id"] in logged
    assert "Ottoline" not in caplog.text and "0987" not in caplog.text


async def test_mounted_apps_share_the_edge_but_authenticate_on_their_own(
    store: Store,
    backend: Backend,
) -> None:
    security = backend.security
    seen: list[bytes] = []

    async def extra(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"mounted"})

    app = create_app(
        AgentService.on_store(store, security),
        security,
        max_body_bytes=2048,
        mounts=[("/extra", extra)],
    )
    async with client_for(app) as client:
        ok = await client.post("/extra/anything", content=b"hello")
        too_big = await client.post("/extra/anything", content=b"x" * 4096)
    assert (ok.status_code, ok.text, seen) == (200, "mounted", [b"hello"])
    assert len(ok.headers["x-request-id"]) == 32
    assert_problem(too_big, 413)
