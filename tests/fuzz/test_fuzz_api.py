"""Fuzzing the agent API's bodies, on every backend (issue 10: the API and MCP third of the fuzz
suite; defects 4, 6 and 10 as classes).

Structure-aware: each case is a *valid* request of one route (or MCP tool) with one or a few
parts mutated: a wrong type, a NUL character, a huge or negative number, deep nesting, a long
string, a bad date or time, an unknown field, a field dropped. Through the HTTP app in process
(httpx's ASGI transport) and the MCP tools' handler, every answer must be:

- never a 5xx and never a traceback (an MCP refusal is a tool error, never an exception);
- a refusal is a problem (a tool error) that names where (a 422 lists the fields) and never
  contains a submitted string value (:func:`submitted`): values may be patient data;
- nothing written when refused: the event count of both workspaces is unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import httpx
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrbridge.api.mcptools import TOOLS, McpTools
from ehrbridge.api.models import FIELD_PATTERN
from ehrbridge.api.store import Principal
from tests.integration.api import test_http as test_api_http
from tests.integration.api.test_http import ROUTES, Api, Route
from tests.integration.api.test_service import DEC_1, OTHER, WS

api = test_api_http.api

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: strings a problem may contain although a request sent them: shorter than this
SHORT = 6

# --- mutations -------------------------------------------------------------------------------

#: canary-marked text: a problem that contains it echoed a submitted value
canary = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=40
).map(lambda t: f"Qz{t}xW")
BAD_TIMES = [
    "1984-02-30", "2026-13-01T00:00:00Z", "2026-12-01T25:00:00Z", "2026-12-01T10:00:00",
    "yesterday", "", "0000-00-00", "2026-12-01T10:00:00+99:00", "9999-12-31T23:59:59-23:59",
]  # fmt: skip
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**53, 2**63, -(2**63) - 1, 10**30, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    canary,
    canary.map(lambda t: t[:3] + "\x00" + t[3:]),
    st.sampled_from(BAD_TIMES),
    st.integers(min_value=1_000, max_value=70_000).map(lambda n: "Qz" + "a" * n),
)


def nested(depth: int) -> Any:
    value: Any = "Qzdeep"
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


mutant = st.one_of(
    scalar,
    st.lists(scalar, max_size=4),
    st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), scalar, max_size=4),
    st.integers(min_value=2, max_value=200).map(nested),
)


@st.composite
def mutated(draw: st.DrawFn, body: Any) -> Any:
    """``body`` with one to three of its parts (at any depth) replaced, dropped or added."""
    if not isinstance(body, dict):
        return body
    body = json.loads(json.dumps(body))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = body
        while True:
            keys = sorted(target)
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if isinstance(target[key], dict) and draw(st.booleans()):
                target = target[key]
                continue
            break
        action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if action == "add" or not target:
            target[draw(st.sampled_from(["Qzextra_field", "x", "fields", "level"]))] = draw(mutant)
        elif action == "drop":
            del target[key]
        else:
            target[key] = draw(mutant)
    return body


def submitted(value: Any, schema_text: str) -> set[str]:
    """The strings of a request a problem must never contain: every string value (and object
    key but a valid field path, which errors name as where) of at least :data:`SHORT`
    characters that the published schema does not spell itself (a Literal option, an entity
    type)."""
    found: set[str] = set()
    if isinstance(value, str):
        if len(value) >= SHORT and value not in schema_text:
            found.add(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            # a valid field path names where (``data.language: expected a code``), by design
            if not re.fullmatch(FIELD_PATTERN, key):
                found |= submitted(key, schema_text)
            found |= submitted(item, schema_text)
    elif isinstance(value, list):
        for item in value:
            found |= submitted(item, schema_text)
    return found


async def events(api: Api) -> tuple[int, int]:
    """The events of both workspaces, from the store under the service."""
    store = api.service._models(WS).store
    return (await store.counts(WS)).events, (await store.counts(OTHER)).events


def assert_refusal_is_clean(response: httpx.Response, sent: set[str]) -> None:
    assert response.status_code < 500, response.text
    if response.status_code < 400:
        return
    assert response.headers["content-type"] == "application/problem+json"
    text = response.text
    assert "Traceback" not in text
    problem = response.json()
    assert problem["detail"]
    if problem["status"] == 422 and problem.get("errors"):
        assert all(item["field"] for item in problem["errors"])
    leaked = [value for value in sent if value in text]
    assert not leaked, (problem, leaked)


WRITES = [route for route in ROUTES if route.method == "POST"]


@pytest.mark.parametrize("route", WRITES, ids=lambda r: r.name)
@FUZZ
@given(data=st.data())
async def test_mutated_bodies_are_refused_cleanly(
    api: Api, route: Route, data: st.DataObject
) -> None:
    published = (await api.client.get("/openapi.json")).text
    body = data.draw(mutated(route.body(api.ids)), label="body")
    before = await events(api)
    response = await api.call(route.method, route.url(api.ids), body)
    assert_refusal_is_clean(response, submitted(body, published))
    if response.status_code >= 400:
        assert await events(api) == before


@pytest.mark.parametrize("depth", [100, 1_000, 10_000])
async def test_deep_nesting_in_the_raw_body_is_a_422(api: Api, depth: int) -> None:
    """A body too deep for the JSON reader (or for the writer) is refused as invalid, with
    nothing written; a depth that fits the body limit is tried."""
    raw = (
        '{"entity_type": "Patient", "fields": {"note": '
        + "[" * depth
        + "]" * depth
        + '}, "level": "confirmed"}'
    )
    before = await events(api)
    response = await api.client.post(
        "/v1/observations",
        content=raw,
        headers={**api.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert await events(api) == before


async def test_a_nul_character_anywhere_is_a_422_naming_the_field(api: Api) -> None:
    """Defect 4 at the API's edge: never a 503 that tells the client to retry."""
    route = test_api_http.BY_NAME["observations"]
    for body, field in [
        ({**route.body(api.ids), "fields": {"name.family": "Nul\x00Name"}}, "fields"),
        ({**route.body(api.ids), "call_id": "call\x001"}, "call_id"),
        (
            {**route.body(api.ids), "evidence": {"transcript_span": "he\x00llo"}},
            "evidence.transcript_span",
        ),
    ]:
        response = await api.call("POST", "/v1/observations", body)
        assert response.status_code == 422, response.text
        assert field in [item["field"] for item in response.json()["errors"]]
    search = await api.call("POST", "/v1/patients/search", {"name": "Maria\x00"})
    assert search.status_code == 422
    assert search.json()["errors"][0]["field"] == "name"


async def test_the_idempotency_conflict_never_echoes_the_key(api: Api) -> None:
    """Defect 6: the key is call data; the 409 names the field."""
    route = test_api_http.BY_NAME["observations"]
    key = "call-5551234:turn-3"
    first = await api.call(
        "POST", "/v1/observations", {**route.body(api.ids), "idempotency_key": key}
    )
    assert first.status_code == 200
    other = {**route.body(api.ids), "fields": {"language": "fr"}, "idempotency_key": key}
    again = await api.call("POST", "/v1/observations", other)
    assert again.status_code == 409
    assert key not in again.text and "5551234" not in again.text
    assert again.json()["type"] == "urn:ehrbridge:problem:idempotency-conflict"


VALIDATION_GAPS: list[tuple[str, Callable[[dict[str, str]], dict[str, Any]], str]] = [
    (
        "/v1/observations",
        lambda i: {
            "entity_type": "Patient", "entity_id": i["pat-1001"], "fields": {"language": "pt"},
            "level": "confirmed",
            "evidence": {"transcript_span": "in Portuguese", "start_ms": 900, "end_ms": 100},
        },
        "evidence.end_ms",
    ),
    (
        "/v1/calls/call-1/transcript",
        lambda i: {"transcript": "Hello", "started_at": "2026-12-01T10:00:00Z",
                   "ended_at": "2026-12-01T09:00:00Z"},
        "ended_at",
    ),
    ("/v1/patients/search", lambda i: {"birth_date": "1984-02-30"}, "birth_date"),
    ("/v1/patients/search", lambda i: {"birth_date": "1984-13"}, "birth_date"),
    (
        "/v1/appointments",
        lambda i: {"patient_id": i["pat-1001"], "start": "2026-12-04T10:00:00Z",
                   "end": "2026-12-04T09:00:00Z"},
        "end",
    ),
    (
        "/v1/slots/search",
        lambda i: {"start": DEC_1.isoformat(), "end": (DEC_1 - timedelta(days=1)).isoformat()},
        "end",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("url", "body", "field"), VALIDATION_GAPS, ids=lambda v: str(v)[:40])
async def test_every_range_and_date_is_checked_at_the_edge(
    api: Api, url: str, body: Callable[[dict[str, str]], dict[str, Any]], field: str
) -> None:
    """Defect 10 as a class: each time range and date of the request models."""
    before = await events(api)
    response = await api.call("POST", url, body(api.ids))
    assert response.status_code == 422, response.text
    assert [item["field"] for item in response.json()["errors"]] == [field]
    assert await events(api) == before


# --- the MCP tools ---------------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
@FUZZ
@given(data=st.data())
async def test_mutated_tool_arguments_are_tool_errors(
    api: Api, tool: Any, data: st.DataObject
) -> None:
    agent = await api.security.authenticate(api.keys["agent"])
    assert agent is not None

    async def principal_of(ctx: Any) -> Principal | None:
        return agent

    tools = McpTools(api.service, principal_of)
    published = json.dumps(tool.tool().model_dump(mode="json"))
    arguments = data.draw(mutated(TOOL_ARGUMENTS[tool.name](api.ids)), label="arguments")
    before = await events(api)
    result = await tools.call_tool(
        cast(Any, None), types.CallToolRequestParams(name=tool.name, arguments=arguments)
    )
    if not result.is_error:
        return
    (content,) = result.content
    assert isinstance(content, types.TextContent)
    assert not content.text.startswith("internal error"), content.text
    leaked = [v for v in submitted(arguments, published) if v in content.text]
    assert not leaked, (content.text, leaked)
    assert await events(api) == before


TOOL_ARGUMENTS: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
    "ambient_context": lambda i: {"phone": "(617) 555-0142"},
    "search_patients": lambda i: {"name": "Maria Santos", "birth_date": "1984"},
    "search_entities": lambda i: {"text": "santos", "entity_type": "Patient"},
    "get_entity_state": lambda i: {"entity_type": "Patient", "entity_id": i["pat-1001"]},
    "get_entity_timeline": lambda i: {"entity_type": "Patient", "entity_id": i["pat-1001"]},
    "search_slots": lambda i: test_api_http.WEEK,
    "write_observation": lambda i: test_api_http.BY_NAME["observations"].body(i),
    "attach_transcript": lambda i: {"call_id": "call-1", "transcript": "Hello there"},
    "book_appointment": lambda i: {"patient_id": i["pat-1001"], "slot_id": i["slot-9003"]},
}
