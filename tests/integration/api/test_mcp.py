"""The MCP tools over streamable HTTP, through the SDK's own client, on every backend.

The app is served by uvicorn on a real loopback socket in the test's own event loop (so the
PostgreSQL pool, bound to that loop, serves both the app and the direct service calls the
answers are compared with). Both protocol eras of the SDK are exercised: the initialize
handshake (2025-11-25) and the per-request envelope (2026-07-28, ``server/discover``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx2
import mcp_types as types
import pytest
import uvicorn
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from ehrbridge.api.mcp import (
    CHANNEL,
    REQUEST_ID_META_KEY,
    TOOLS,
    McpHttpApp,
    quiet_sdk_logging,
    stdio_mcp_server,
    streamable_http_app,
)
from ehrbridge.api.models import (
    AmbientRequest,
    AppointmentBooking,
    EntitySearch,
    Evidence,
    ObservationWrite,
    PatientSearch,
    SlotSearch,
    StateRequest,
    TimelineRequest,
    TranscriptAttach,
)
from ehrbridge.api.service import AgentService
from ehrbridge.api.store import Principal, SecurityStore
from ehrbridge.errors import Unauthenticated
from ehrbridge.sample import sample_bundle
from ehrbridge.storage import Backend
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.store import Store
from tests.integration.api.test_service import DEC_1, OTHER, SLOTS, WS, _import

MARIA_PHONE = "+16175550142"


@dataclass
class Served:
    """The sample clinic (and a rival workspace) behind a running MCP endpoint."""

    url: str
    service: AgentService
    security: SecurityStore
    ids: dict[str, str]
    other_ids: dict[str, str]
    #: secrets: an agent of WS, an agent of OTHER
    agent_key: str
    rival_key: str
    agent: Principal
    era: str

    @asynccontextmanager
    async def session(self, secret: str | None = None) -> AsyncIterator[ClientSession]:
        """A client session with ``secret`` (default: the WS agent's key)."""
        key = secret or self.agent_key
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
            streamable_http_client(self.url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            if self.era == "handshake":
                await session.initialize()
            else:
                await session.discover()
            yield session


@asynccontextmanager
async def serving(app: ASGIApp, path: str = "/mcp") -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 from this event loop; yields the endpoint URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", access_log=False, http="h11",
        lifespan="on", loop="asyncio",
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}{path}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(params=["handshake", "modern"])
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def served(
    store: Store, backend: Backend, clock: FakeClock, era: str
) -> AsyncIterator[Served]:
    ids = await _import(store, WS, [sample_bundle(), SLOTS])
    other_ids = await _import(store, OTHER, [sample_bundle()])
    security = backend.security
    agent_key, _ = await security.create_key(WS, "agent", name="voice bot")
    rival_key, _ = await security.create_key(OTHER, "agent", name="rival bot")
    agent = await security.authenticate(agent_key)
    assert agent is not None
    service = AgentService.on_store(store, security, clock=clock)
    async with serving(streamable_http_app(service, security)) as url:
        yield Served(
            url=url,
            service=service,
            security=security,
            ids=ids,
            other_ids=other_ids,
            agent_key=agent_key,
            rival_key=rival_key,
            agent=agent,
            era=era,
        )


async def call(
    session: ClientSession, name: str, arguments: dict[str, Any]
) -> types.CallToolResult:
    result = await session.call_tool(name, arguments)
    assert isinstance(result, types.CallToolResult)
    return result


def args(request: BaseModel) -> dict[str, Any]:
    """A request model as tool arguments (JSON, defaults left out)."""
    return request.model_dump(mode="json", exclude_unset=True)


def error_text(result: types.CallToolResult) -> str:
    assert result.is_error
    (block,) = result.content
    assert isinstance(block, types.TextContent)
    return block.text


# --- the tools -------------------------------------------------------------------------------


async def test_lists_every_operation_as_a_tool_with_its_schemas(served: Served) -> None:
    async with served.session() as session:
        listing = await session.list_tools()
    tools = {tool.name: tool for tool in listing.tools}
    assert set(tools) == {
        "ambient_context",
        "search_entities",
        "search_patients",
        "get_entity_state",
        "get_entity_timeline",
        "search_slots",
        "write_observation",
        "attach_transcript",
        "book_appointment",
    }
    for spec in TOOLS:
        tool = tools[spec.name]
        assert tool.input_schema == spec.request.model_json_schema()
        assert tool.output_schema == spec.response.model_json_schema(mode="serialization")
        assert tool.description and len(tool.description) > 80
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is spec.read_only
    assert "voice confidence" in str(tools["write_observation"].description)
    assert tools["ambient_context"].input_schema["required"] == ["phone"]


async def test_read_tools_answer_exactly_what_the_service_answers(served: Served) -> None:
    svc, agent, ids = served.service, served.agent, served.ids
    maria = ids["pat-1001"]
    cases: list[tuple[str, BaseModel, Any]] = [
        ("ambient_context", AmbientRequest(phone="(617) 555-0142"), svc.ambient_context),
        ("ambient_context", AmbientRequest(phone=MARIA_PHONE, prompt_budget=400),
         svc.ambient_context),
        ("search_entities", EntitySearch(text="santos"), svc.search_entities),
        ("search_patients", PatientSearch(birth_date="1990-06-21"), svc.search_patients),
        ("get_entity_state", StateRequest(entity_type="Patient", entity_id=maria),
         svc.entity_state),
        (
            "get_entity_timeline",
            TimelineRequest(entity_type="Patient", entity_id=maria),
            svc.entity_timeline,
        ),
        ("search_slots", SlotSearch(start=DEC_1, end=DEC_1 + timedelta(days=7)), svc.search_slots),
    ]  # fmt: skip
    async with served.session() as session:
        for name, request, method in cases:
            result = await call(session, name, args(request))
            assert not result.is_error, name
            direct = await method(agent, request)
            assert result.structured_content == direct.model_dump(mode="json"), name
            assert type(direct).model_validate(result.structured_content) == direct
            (text,) = result.content
            assert isinstance(text, types.TextContent)
            assert type(direct).model_validate_json(text.text) == direct
    ambient = await svc.ambient_context(agent, AmbientRequest(phone=MARIA_PHONE))
    assert ambient.context is not None
    assert ambient.context.patient.entity_id == maria


async def test_write_tools_record_at_voice_level_as_the_service_does(served: Served) -> None:
    svc, agent, ids = served.service, served.agent, served.ids
    maria = ids["pat-1001"]
    write = ObservationWrite(
        entity_type="Patient",
        entity_id=maria,
        fields={"phone.mobile": "+16175550199"},
        level="confirmed",
        call_id="call-mcp-1",
        evidence=Evidence(transcript_span="my new cell is 617 555 0199"),
        idempotency_key="mcp-write-0001",
    )
    slot = ids["slot-9001"]
    booking = AppointmentBooking(
        patient_id=maria, slot_id=slot, call_id="call-mcp-1", idempotency_key="mcp-book-0001"
    )
    transcript = TranscriptAttach(
        call_id="call-mcp-1", transcript="Agent: Hello.\nCaller: Hi.", patient_id=maria
    )
    async with served.session() as session:
        wrote = await call(session, "write_observation", args(write))
        booked = await call(session, "book_appointment", args(booking))
        attached = await call(session, "attach_transcript", args(transcript))
        context = await call(session, "ambient_context", {"phone": MARIA_PHONE})
    assert not (wrote.is_error or booked.is_error or attached.is_error)

    # the same requests through the service, with the same key: duplicates of what MCP wrote
    again = await svc.write_observation(agent, write)
    assert again.status == "duplicate"
    assert wrote.structured_content == again.model_copy(update={"status": "recorded"}).model_dump(
        mode="json"
    )
    mobile = again.entity.pending["phone.mobile"][0]
    assert (mobile.value, mobile.confidence, mobile.source.kind) == ("+16175550199", 0.5, "voice")
    rebooked = await svc.book_appointment(agent, booking)
    assert rebooked.status == "duplicate"
    assert booked.structured_content is not None
    assert booked.structured_content["appointment_id"] == rebooked.appointment_id
    assert booked.structured_content["appointment"]["fields"]["status"]["confidence"] == 0.5
    reattached = await svc.attach_transcript(agent, transcript)
    assert reattached.status == "duplicate"
    assert attached.structured_content is not None
    assert attached.structured_content["entity"] == reattached.entity.model_dump(mode="json")
    # the booking and the pending number are in the caller's context at once
    assert context.structured_content is not None
    upcoming = context.structured_content["context"]["upcoming_appointments"]
    assert rebooked.appointment_id in [a["entity_id"] for a in upcoming]
    assert context.structured_content == (
        await svc.ambient_context(agent, AmbientRequest(phone=MARIA_PHONE))
    ).model_dump(mode="json")


async def test_tools_answer_what_the_http_routes_answer(served: Served) -> None:
    # the HTTP API is built alongside; compared when it is there
    http_api: Any = pytest.importorskip("ehrbridge.api.http")
    maria = served.ids["pat-1001"]
    app = http_api.create_app(served.service, served.security)
    window = {"start": DEC_1.isoformat(), "end": "2026-12-08T00:00:00Z"}
    pairs: list[tuple[str, dict[str, Any], str, str, dict[str, Any] | None]] = [
        ("ambient_context", {"phone": MARIA_PHONE}, "POST", "/v1/ambient/context",
         {"phone": MARIA_PHONE}),
        ("search_patients", {"name": "Santos"}, "POST", "/v1/patients/search", {"name": "Santos"}),
        ("get_entity_state", {"entity_type": "Patient", "entity_id": maria}, "GET",
         f"/v1/entities/Patient/{maria}", None),
        ("search_slots", window, "POST", "/v1/slots/search", window),
    ]  # fmt: skip
    headers = {"Authorization": f"Bearer {served.agent_key}"}
    async with (
        serving(app, "") as origin,
        served.session() as session,
        httpx2.AsyncClient(base_url=origin, headers=headers) as http,
    ):
        for tool, arguments, method, path, body in pairs:
            result = await call(session, tool, arguments)
            response = await http.request(method, path, json=body)
            assert response.status_code == 200, (tool, response.text)
            assert result.structured_content == response.json(), tool


# --- errors ----------------------------------------------------------------------------------


async def test_refusals_are_tool_errors_with_the_service_messages(served: Served) -> None:
    ids = served.ids
    async with served.session() as session:
        missing = await call(
            session, "get_entity_state", {"entity_type": "Patient", "entity_id": "nobody"}
        )
        bad_schema = await call(
            session,
            "write_observation",
            {"entity_type": "Patient", "fields": {"Bad Path": 1}, "level": "verified", "x": 1},
        )
        bad_phone = await call(session, "ambient_context", {"phone": "hello there"})
        taken = await call(
            session,
            "book_appointment",
            {"patient_id": ids["pat-1004"], "slot_id": ids["slot-9002"]},
        )
        backwards = await call(
            session,
            "search_slots",
            {"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
        )
    assert error_text(missing) == "not found: no such Patient in this workspace"
    schema_text = error_text(bad_schema)
    assert schema_text.startswith("invalid input: ")
    assert "level: Input should be 'confirmed', 'mentioned' or 'inferred'" in schema_text
    assert "(unknown field): Extra inputs are not permitted" in schema_text
    assert "fields.[key]: String should match pattern" in schema_text
    assert "Bad Path" not in schema_text  # a refused key is submitted data: not echoed
    assert "verified" not in schema_text.replace("'", " ").split()  # the value given: not echoed
    assert error_text(bad_phone).startswith("invalid input: ")
    assert "hello" not in error_text(bad_phone)
    assert error_text(taken) == "slot unavailable: slot_id: the slot is not free"
    assert error_text(backwards) == "invalid input: end: Value error, must be after start"
    for result in (missing, bad_schema, bad_phone, taken, backwards):
        assert result.meta is not None and len(result.meta[REQUEST_ID_META_KEY]) == 32


async def test_an_unknown_tool_is_a_protocol_error(served: Served) -> None:
    async with served.session() as session:
        with pytest.raises(MCPError) as refused:
            await session.call_tool("drop_everything", {})
    assert refused.value.error.code == -32602
    assert "unknown tool" in refused.value.error.message


async def test_an_agent_key_cannot_write_outside_its_scope(served: Served) -> None:
    async with served.session() as session:
        result = await call(
            session,
            "write_observation",
            {
                "entity_type": "MedicationOrder",
                "fields": {"status": "stopped"},
                "level": "confirmed",
            },
        )
    assert error_text(result).startswith("permission denied: ")
    assert result.meta is not None
    (entry,) = await served.security.query_audit(WS, action="observations.write")
    assert (entry.outcome, entry.entity_type, entry.request_id) == (
        "denied",
        "MedicationOrder",
        result.meta[REQUEST_ID_META_KEY],
    )


async def test_a_key_of_one_workspace_never_sees_another(served: Served) -> None:
    maria, rival_maria = served.ids["pat-1001"], served.other_ids["pat-1001"]
    assert maria != rival_maria
    async with served.session(served.rival_key) as session:
        ambient = await call(session, "ambient_context", {"phone": MARIA_PHONE})
        state = await call(
            session, "get_entity_state", {"entity_type": "Patient", "entity_id": maria}
        )
        unknown = await call(
            session, "get_entity_state", {"entity_type": "Patient", "entity_id": "no-such-id"}
        )
        timeline = await call(
            session, "get_entity_timeline", {"entity_type": "Patient", "entity_id": maria}
        )
        found = await call(session, "search_patients", {"name": "Santos"})
        slots = await call(
            session, "search_slots", {"start": DEC_1.isoformat(), "end": "2026-12-08T00:00:00Z"}
        )
        write = await call(
            session,
            "write_observation",
            {"entity_type": "Patient", "entity_id": maria, "fields": {"language": "fr"},
             "level": "mentioned"},
        )  # fmt: skip
    assert ambient.structured_content is not None
    assert ambient.structured_content["context"]["patient"]["entity_id"] == rival_maria
    # a WS entity is refused exactly like one that does not exist
    assert error_text(state) == "not found: no such Patient in this workspace"
    assert error_text(unknown) == error_text(state)
    assert error_text(timeline).startswith("not found: ")
    assert error_text(write).startswith("not found: ")
    assert found.structured_content is not None
    found_ids = {p["entity_id"] for p in found.structured_content["items"]}
    assert found_ids and found_ids <= set(served.other_ids.values())
    assert slots.structured_content == {"items": [], "truncated": False}  # WS has the slots
    assert await served.security.query_audit(WS) == []


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer ehr_not_a_key", "Basic dXNlcjpwYXNz", "Bearer"])
async def test_requests_without_a_valid_key_get_401_before_mcp(
    served: Served, header: str | None
) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if header is not None:
        headers["Authorization"] = header
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx2.AsyncClient() as http:
        response = await http.post(served.url, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem = response.json()
    assert (problem["status"], problem["type"]) == (401, "urn:ehrbridge:problem:unauthenticated")
    assert problem["request_id"] == response.headers["x-request-id"]


async def test_the_key_may_come_in_x_api_key(served: Served) -> None:
    headers = {"Accept": "application/json, text/event-stream", "X-API-Key": served.agent_key}
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            served.url, json=body, headers={**headers, "Mcp-Protocol-Version": "2025-11-25"}
        )
    assert response.status_code == 200
    assert response.json()["id"] == 1


async def test_the_sdk_client_is_refused_with_a_bad_or_revoked_key(served: Served) -> None:
    # the SDK raises the refusal inside an exception group
    with pytest.raises((MCPError, ExceptionGroup)) as refused:
        async with served.session("ehr_bogus_bogus"):
            pass
    assert _leaves(refused.value, MCPError)
    secret, key = await served.security.create_key(WS, "agent", name="short-lived")
    async with served.session(secret) as session:
        assert not (await call(session, "ambient_context", {"phone": MARIA_PHONE})).is_error
    assert await served.security.revoke_key(WS, key.key_id)
    with pytest.raises((MCPError, ExceptionGroup)) as revoked:
        async with served.session(secret):
            pass
    assert _leaves(revoked.value, MCPError)


async def test_stdio_server_authenticates_the_key_on_every_call(
    store: Store, backend: Backend, clock: FakeClock
) -> None:
    await _import(store, WS, [sample_bundle()])
    security = backend.security
    secret, key = await security.create_key(WS, "agent", name="desktop")
    service = AgentService.on_store(store, security, clock=clock)
    with pytest.raises(Unauthenticated):
        await stdio_mcp_server(service, security, "ehb_0123456789ab_not-a-key")
    server = await stdio_mcp_server(service, security, secret)
    async with Client(server) as client:
        before = await client.call_tool("ambient_context", {"phone": MARIA_PHONE})
        assert await security.revoke_key(WS, key.key_id)
        after = await client.call_tool("ambient_context", {"phone": MARIA_PHONE})
    assert not before.is_error
    assert error_text(after) == "unauthenticated: the API key is missing, unknown or revoked"
    audit = await security.query_audit(WS, action="ambient.context")
    assert audit and all(e.details["channel"] == CHANNEL for e in audit)


def _leaves(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_leaves(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind)


# --- audit -----------------------------------------------------------------------------------


async def test_tool_calls_are_audited_with_channel_mcp(served: Served) -> None:
    async with served.session() as session:
        result = await call(session, "ambient_context", {"phone": MARIA_PHONE})
        await call(session, "search_patients", {"name": "Santos"})
    assert result.meta is not None
    request_id = result.meta[REQUEST_ID_META_KEY]
    entries = await served.security.query_audit(WS, action="ambient.context")
    assert entries and all(e.request_id == request_id for e in entries)
    assert ("Patient", served.ids["pat-1001"]) in {(e.entity_type, e.entity_id) for e in entries}
    everything = await served.security.query_audit(WS)
    assert {e.action for e in everything} == {"ambient.context", "patients.search"}
    assert all(e.details["channel"] == CHANNEL for e in everything)
    assert all(e.key_id == served.agent.key_id and e.role == "agent" for e in everything)


async def test_a_tool_call_is_audited_under_the_http_request_id(served: Served) -> None:
    request_id = uuid4().hex
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {served.agent_key}",
        "Mcp-Protocol-Version": "2025-11-25",
        "X-Request-Id": request_id,
    }
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "ambient_context", "arguments": {"phone": MARIA_PHONE}},
    }
    async with httpx2.AsyncClient() as http:
        response = await http.post(served.url, json=body, headers=headers)
        unnamed = await http.post(served.url, json=body, headers={**headers, "X-Request-Id": "x"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    assert response.json()["result"]["_meta"][REQUEST_ID_META_KEY] == request_id
    entries = await served.security.query_audit(WS, action="ambient.context")
    assert {e.request_id for e in entries} == {request_id, unnamed.headers["x-request-id"]}
    assert unnamed.headers["x-request-id"] != "x"  # not an opaque id: a new one


# --- mounted, logging ------------------------------------------------------------------------


async def test_mounted_under_a_parent_app_without_its_lifespan(served: Served) -> None:
    # a parent app (as ``ehrbridge serve`` mounts it) does not pass its lifespan on: the session
    # manager starts with the first request
    app = McpHttpApp(served.service, served.security)
    parent = Starlette(routes=[Mount("/mcp", app)])
    try:
        async with serving(parent, "/mcp/") as url:
            mounted = replace(served, url=url)
            async with mounted.session() as session:
                result = await call(session, "ambient_context", {"phone": MARIA_PHONE})
    finally:
        await app.stop()
    assert result.structured_content is not None
    assert result.structured_content["match"] == "matched"


PLANTED = ["Santos", "Maria", "+16175550142", "555-0142", "Moreau", "Claire", "1979-04-02"]


async def test_no_patient_data_reaches_the_logs(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: everything an app could configure
    ids = served.ids
    async with served.session() as session:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("ambient_context", {"phone": "(617) 555-0142"}),
            ("search_patients", {"name": "Maria Santos", "birth_date": "1979-04-02"}),
            ("search_entities", {"text": "Santos"}),
            ("get_entity_state", {"entity_type": "Patient", "entity_id": ids["pat-1001"]}),
            ("get_entity_timeline", {"entity_type": "Patient", "entity_id": ids["pat-1001"]}),
            ("search_slots", {"start": DEC_1.isoformat(), "end": "2026-12-08T00:00:00Z"}),
            ("write_observation", {"entity_type": "Patient", "level": "confirmed",
                                   "fields": {"name.family": "Moreau", "name.given": ["Claire"],
                                              "birth_date": "1979-04-02"}}),
            ("write_observation", {"entity_type": "Patient", "level": "Claire Moreau",
                                   "fields": {"birth_date": "1979-04-02", "Maria Santos": 1}}),
            ("attach_transcript", {"call_id": "c-1", "transcript": "Hi, Claire Moreau here"}),
            ("book_appointment", {"patient_id": ids["pat-1001"], "slot_id": ids["slot-9003"],
                                  "reason": "Claire Moreau's cough"}),
            ("ambient_context", {"phone": "Claire Moreau"}),
        ]  # fmt: skip
        results = [await call(session, name, arguments) for name, arguments in calls]
    captured = caplog.text
    assert all(value not in captured for value in PLANTED), captured
    # and the refusals do not echo what was sent
    refusals = [error_text(r) for r in results if r.is_error]
    assert len(refusals) == 2
    assert all(value not in text for text in refusals for value in PLANTED), refusals


def test_sdk_records_keep_their_template_only(caplog: pytest.LogCaptureFixture) -> None:
    quiet_sdk_logging()
    sdk = logging.getLogger("mcp.server.runner")
    with caplog.at_level(logging.DEBUG):
        sdk.debug("frame %r", {"name": "Maria Santos"})
        try:
            raise ValueError("birth date 1985-03-14")
        except ValueError:
            sdk.exception("handler for %r raised", "Maria Santos")
    (record,) = caplog.records
    assert record.getMessage() == "handler for %r raised [ValueError]"
    assert "Maria" not in caplog.text and "1985" not in caplog.text
