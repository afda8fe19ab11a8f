"""The operators' review queue over HTTP (``/v1/review/...``), on both backends: operator keys
only, every action audited, conflicts a 409, and the decisions land in the world model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ehrbridge.api.http import create_app
from ehrbridge.api.service import AgentService
from ehrbridge.confidence import Level
from ehrbridge.review.loop import ReviewLoop
from ehrbridge.review.verdicts import Outcome
from ehrbridge.storage import Backend
from ehrbridge.storage.security import KeyCache
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.events import NewEvent, Source
from ehrbridge.worldmodel.model import WorldModel
from tests.conftest import MakeBackend
from tests.integration.review.test_loop import TRANSCRIPT, ScriptedJudge

WS, OTHER = "clinic", "rival"
PROBLEM = "application/problem+json"
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/review/items", None),
    ("GET", "/v1/review/items/{item}", None),
    ("POST", "/v1/review/items/{item}/claim", None),
    ("POST", "/v1/review/items/{item}/unclaim", None),
    ("POST", "/v1/review/items/{item}/approve", {}),
    ("POST", "/v1/review/items/{item}/reject", {"reason": "wrong"}),
    ("POST", "/v1/review/items/{item}/correct", {"values": {"email": "a@example.com"}}),
    ("POST", "/v1/review/batch", {"item_ids": ["{item}"], "decision": "approve"}),
    ("GET", "/v1/review/stats", None),
]


@dataclass
class Desk:
    client: httpx.AsyncClient
    backend: Backend
    keys: dict[str, str]
    key_ids: dict[str, str]

    async def call(
        self, method: str, url: str, body: Any = None, *, who: str | None = "ana"
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return await self.client.request(method, url, json=body, headers=headers)


@pytest.fixture
async def desk(make_backend: MakeBackend, clock: FakeClock) -> AsyncIterator[Desk]:
    backend = await make_backend(key_cache=KeyCache(timedelta(0)))
    security = backend.security
    service = AgentService.on_store(
        backend.worldmodel, security, clock=clock, review=backend.review
    )
    keys, key_ids = {}, {}
    for name, workspace, role in [
        ("agent", WS, "agent"),
        ("ana", WS, "operator"),
        ("bo", WS, "operator"),
        ("admin", WS, "admin"),
        ("rival", OTHER, "operator"),
    ]:
        keys[name], stored = await security.create_key(workspace, role, name=name)  # type: ignore[arg-type]
        key_ids[name] = stored.key_id
    transport = httpx.ASGITransport(app=create_app(service, security))
    async with httpx.AsyncClient(transport=transport, base_url="http://ehrbridge.test") as client:
        yield Desk(client=client, backend=backend, keys=keys, key_ids=key_ids)


async def flagged_email(desk: Desk) -> tuple[str, str]:
    """The agent writes an email it heard; the review loop leaves it to a human: (the item id,
    the event id)."""
    model = WorldModel(desk.backend.worldmodel, WS)
    patient = NewEvent(
        workspace=WS,
        entity_type="Patient",
        entity_id="p1",
        data={"name.family": "Santos"},
        source=Source(kind="ehr", id="ehr", ref="Patient/1"),
        confidence=1.0,
        effective_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    await model.record([patient])
    await model.write_voice(
        "Call", "call-1", {"transcript": TRANSCRIPT}, level=Level.VOICE_CONFIRMED, agent="agent-1"
    )
    written = await desk.call(
        "POST",
        "/v1/observations",
        {
            "entity_type": "Patient",
            "entity_id": "p1",
            "fields": {"email": "ana@example.com"},
            "level": "confirmed",
            "call_id": "call-1",
        },
        who="agent",
    )
    assert written.status_code in (200, 201), written.text
    loop = ReviewLoop(
        desk.backend.worldmodel,
        desk.backend.review,
        desk.backend.runner,
        ScriptedJudge({("email", "ana@example.com"): Outcome.UNSURE}),
        workspace=WS,
    )
    await loop.step()
    listed = await desk.call("GET", "/v1/review/items")
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    return item["item_id"], item["events"][0]


async def test_only_operator_and_admin_keys_reach_the_queue(desk: Desk) -> None:
    item_id, _ = await flagged_email(desk)
    for method, url, body in ROUTES:
        path = url.replace("{item}", item_id)
        payload = _fill(body, item_id)
        assert (await desk.call(method, path, payload, who=None)).status_code == 401, path
        denied = await desk.call(method, path, payload, who="agent")
        assert denied.status_code == 403, path
        assert denied.headers["content-type"] == PROBLEM
    # another workspace's operator sees nothing of this one
    assert (await desk.call("GET", f"/v1/review/items/{item_id}", who="rival")).status_code == 404
    assert (await desk.call("GET", "/v1/review/items", who="rival")).json() == {"items": []}
    assert (await desk.call("GET", "/v1/review/stats", who="admin")).json()["open"] == 1


async def test_an_operator_claims_reads_and_approves_and_the_fact_is_approved(
    desk: Desk,
) -> None:
    item_id, event_id = await flagged_email(desk)
    detail = (await desk.call("GET", f"/v1/review/items/{item_id}")).json()
    assert [e["id"] for e in detail["flagged"]] == [event_id]
    (verdict,) = detail["grades"]
    assert verdict["evidence"]["verdict"]["outcome"] == "unsure"
    assert detail["entity"]["entity_id"] == "p1"

    # the agent sees where the fact stands: still being checked
    seen = await desk.call("GET", "/v1/entities/Patient/p1", who="agent")
    assert seen.json()["fields"]["email"]["review"] == "pending review"
    assert seen.json()["fields"]["name.family"]["review"] is None  # EHR data

    claimed = await desk.call("POST", f"/v1/review/items/{item_id}/claim")
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == desk.key_ids["ana"]
    conflict = await desk.call("POST", f"/v1/review/items/{item_id}/approve", {}, who="bo")
    assert conflict.status_code == 409 and conflict.headers["content-type"] == PROBLEM
    assert "claimed by" in conflict.json()["detail"]
    approved = await desk.call("POST", f"/v1/review/items/{item_id}/approve", {"note": "ok"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["decision"]["outcome"] == "approved"
    state = await desk.backend.worldmodel.get_state(WS, "Patient", "p1")
    assert state is not None and state.fields["email"].confidence == 0.95
    seen = await desk.call("GET", "/v1/entities/Patient/p1", who="agent")
    assert seen.json()["fields"]["email"]["review"] == "approved"
    again = await desk.call("POST", f"/v1/review/items/{item_id}/reject", {"reason": "x"})
    assert again.status_code == 409
    audit = await desk.backend.security.query_audit(WS, action="review.approve")
    # newest first: ana's approval, and bo's attempt that met her claim
    assert [(a.key_id, a.entity_id, a.outcome) for a in audit] == [
        (desk.key_ids["ana"], "p1", "ok"),
        (desk.key_ids["bo"], None, "invalid"),
    ]
    stats = (await desk.call("GET", "/v1/review/stats")).json()
    assert stats["open"] == 0 and stats["depth"] == []
    assert [d["decided"] for d in stats["decided_per_day"]] == [1]


async def test_reject_needs_a_reason_and_correct_writes_the_operators_value(desk: Desk) -> None:
    item_id, _ = await flagged_email(desk)
    missing = await desk.call("POST", f"/v1/review/items/{item_id}/reject", {})
    assert missing.status_code == 422
    corrected = await desk.call(
        "POST",
        f"/v1/review/items/{item_id}/correct",
        {"values": {"email": "ana.s@example.com"}, "note": "spelled on the call"},
    )
    assert corrected.status_code == 200, corrected.text
    state = await desk.backend.worldmodel.get_state(WS, "Patient", "p1")
    assert state is not None and state.values["email"] == "ana.s@example.com"
    assert state.fields["email"].confidence == 1.0
    seen = await desk.call("GET", "/v1/entities/Patient/p1", who="agent")
    assert seen.json()["fields"]["email"]["review"] == "corrected"
    unknown = await desk.call("POST", "/v1/review/items/0123abc/approve", {})
    assert unknown.status_code == 404 and "0123abc" not in unknown.text


async def test_a_batch_answers_each_item_and_a_bad_query_is_refused(desk: Desk) -> None:
    item_id, _ = await flagged_email(desk)
    answered = await desk.call(
        "POST",
        "/v1/review/batch",
        {"item_ids": [item_id, "0123abc"], "decision": "reject", "note": "a test call"},
    )
    assert answered.status_code == 200, answered.text
    answers = {a["item_id"]: a for a in answered.json()["answers"]}
    assert answers[item_id]["ok"] and not answers["0123abc"]["ok"]
    no_reason = await desk.call(
        "POST", "/v1/review/batch", {"item_ids": [item_id], "decision": "reject"}
    )
    assert no_reason.status_code == 422
    decided = await desk.call("GET", "/v1/review/items?status=decided")
    assert decided.status_code == 200 and len(decided.json()["items"]) == 1
    assert (await desk.call("GET", "/v1/review/items?limit=0")).status_code == 422
    assert (await desk.call("GET", "/v1/review/items?priority=0")).status_code == 422


def _fill(body: Any, item_id: str) -> Any:
    if isinstance(body, dict):
        return {k: _fill(v, item_id) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, item_id) for v in body]
    return item_id if body == "{item}" else body
