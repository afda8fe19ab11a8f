"""The operators' outbox over HTTP (``/v1/outbox/...``), on both backends: operator keys only,
every call audited, another workspace's items not found, an action an item cannot take a 409,
and no payload value in any answer; and the sync status the agent's reads show for what it
heard. Items are queued, claimed and settled through the real outbox
store, as the dispatcher does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest

from ehrbridge.api.http import create_app
from ehrbridge.api.service import AgentService
from ehrbridge.outbound.outbox import (
    Attempt,
    ItemStatus,
    NewItem,
    Outbox,
    OutboxItem,
    Settle,
    item_key,
)
from ehrbridge.storage import Backend
from ehrbridge.storage.security import KeyCache
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.events import NewEvent, Source
from ehrbridge.worldmodel.model import WorldModel
from tests.conftest import MakeBackend

WS, OTHER = "clinic", "rival"
PROBLEM = "application/problem+json"
#: a value in every payload: no answer may contain it
SECRET_PHONE = "+16175550123"
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/outbox/items", None),
    ("GET", "/v1/outbox/items/{item}", None),
    ("POST", "/v1/outbox/items/{item}/retry", None),
    ("POST", "/v1/outbox/items/{item}/skip", {"reason": "the front desk fixed it"}),
    ("GET", "/v1/outbox/stats", None),
]


@dataclass
class Ops:
    client: httpx.AsyncClient
    backend: Backend
    clock: FakeClock
    keys: dict[str, str]
    key_ids: dict[str, str]

    async def call(
        self, method: str, url: str, body: Any = None, *, who: str | None = "ana", **kw: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return await self.client.request(method, url, json=body, headers=headers, **kw)

    async def queue(
        self, entity_id: str, event_id: str, *, sink: str = "ehr", workspace: str = WS
    ) -> OutboxItem:
        """An item writing a mobile number of ``Patient/entity_id`` to ``sink``."""
        (item,) = await self.backend.outbox.enqueue(
            workspace,
            [
                NewItem(
                    sink=sink,
                    key=item_key(sink, event_id),
                    lane=f"Patient/{entity_id}",
                    entity_type="Patient",
                    entity_id=entity_id,
                    event_id=event_id,
                    operation="upsert",
                    payload={"fields": {"phone.mobile": SECRET_PHONE}, "base": {}},
                )
            ],
        )
        return item

    async def settle(
        self, sink: str, status: ItemStatus, *, error: str, workspace: str = WS
    ) -> OutboxItem:
        """Claim the head of ``sink``'s first lane and settle it as ``status`` (a 422 from the
        sink, as a dispatcher records it)."""
        outbox = self.backend.outbox
        claim = (
            await outbox.claim(workspace, sink, "worker-1", limit=1, lease=timedelta(minutes=1))
        )[0]
        now = self.clock()
        settled = await outbox.settle(
            workspace,
            claim.item.id,
            claim.epoch,
            Settle(
                status=status,
                attempt=Attempt(
                    item_id=claim.item.id,
                    epoch=claim.epoch,
                    started_at=now,
                    finished_at=now,
                    outcome=status.value,
                    status=422,
                    detail=error,
                ),
                error=error,
                result={"ref": "Patient/9", "version": "2", "created": False}
                if status is ItemStatus.SYNCED
                else None,
            ),
        )
        assert settled
        item = await outbox.item(workspace, claim.item.id)
        assert item is not None and item.status is status
        return item


@pytest.fixture
async def ops(make_backend: MakeBackend, clock: FakeClock) -> AsyncIterator[Ops]:
    backend = await make_backend(key_cache=KeyCache(timedelta(0)))
    security = backend.security
    service = AgentService.on_store(
        backend.worldmodel, security, clock=clock, review=backend.review, outbox=backend.outbox
    )
    keys, key_ids = {}, {}
    for name, workspace, role in [
        ("agent", WS, "agent"),
        ("ana", WS, "operator"),
        ("admin", WS, "admin"),
        ("rival", OTHER, "operator"),
    ]:
        keys[name], stored = await security.create_key(workspace, role, name=name)  # type: ignore[arg-type]
        key_ids[name] = stored.key_id
    transport = httpx.ASGITransport(app=create_app(service, security))
    async with httpx.AsyncClient(transport=transport, base_url="http://ehrbridge.test") as client:
        yield Ops(client=client, backend=backend, clock=clock, keys=keys, key_ids=key_ids)


async def test_only_operator_and_admin_keys_reach_the_outbox(ops: Ops) -> None:
    await ops.queue("p1", "e1")
    dead = await ops.settle("ehr", ItemStatus.DEAD, error="the sink refused it (422)")
    for method, url, body in ROUTES:
        path = url.replace("{item}", dead.id)
        assert (await ops.call(method, path, body, who=None)).status_code == 401, path
        denied = await ops.call(method, path, body, who="agent")
        assert denied.status_code == 403, path
        assert denied.headers["content-type"] == PROBLEM
        assert denied.json()["type"] == "urn:ehrbridge:problem:permission-denied"
    # another workspace's operator sees nothing of this one, and cannot act on it
    for method, url, body in ROUTES[1:4]:
        path = url.replace("{item}", dead.id)
        missing = await ops.call(method, path, body, who="rival")
        assert missing.status_code == 404, path
        assert missing.json()["type"] == "urn:ehrbridge:problem:not-found"
    assert (await ops.call("GET", "/v1/outbox/items", who="rival")).json()["items"] == []
    assert (await ops.call("GET", "/v1/outbox/stats", who="rival")).json()["sinks"] == []
    still = await ops.backend.outbox.item(WS, dead.id)
    assert still is not None and still.status is ItemStatus.DEAD
    # the admin reads it too; every refusal and read is in the audit trail
    assert (await ops.call("GET", f"/v1/outbox/items/{dead.id}", who="admin")).status_code == 200
    denied_entries = [
        a
        for a in await ops.backend.security.query_audit(WS, key_id=ops.key_ids["agent"])
        if a.outcome == "denied"
    ]
    assert {a.action for a in denied_entries} == {
        "outbox.list",
        "outbox.show",
        "outbox.retry",
        "outbox.skip",
        "outbox.stats",
    }
    rival = await ops.backend.security.query_audit(OTHER, action="outbox.retry")
    assert [(a.outcome, a.entity_id) for a in rival] == [("not_found", None)]


async def test_the_listing_filters_and_pages_and_never_shows_a_value(ops: Ops) -> None:
    first = await ops.queue("p1", "e1")
    second = await ops.queue("p2", "e2")
    third = await ops.queue("p2", "e3", sink="billing")
    dead = await ops.settle("billing", ItemStatus.DEAD, error="the sink refused it (422)")
    assert dead.id == third.id

    listed = await ops.call("GET", "/v1/outbox/items")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [i["id"] for i in body["items"]] == [third.id, second.id, first.id]  # newest first
    assert body["next_before"] is None
    assert SECRET_PHONE not in listed.text
    shown = body["items"][0]
    assert shown["fields"] == ["phone.mobile"]
    assert (shown["sink"], shown["status"], shown["sync"]) == ("billing", "dead", "failed")
    assert (shown["entity_type"], shown["entity_id"], shown["event_id"]) == ("Patient", "p2", "e3")
    assert shown["last_error"] == "the sink refused it (422)"

    async def ids(**params: Any) -> list[str]:
        answer = await ops.call("GET", "/v1/outbox/items", params=params)
        assert answer.status_code == 200, answer.text
        return [i["id"] for i in answer.json()["items"]]

    assert await ids(sink="ehr") == [second.id, first.id]
    assert await ids(status="dead") == [third.id]
    assert await ids(status="pending", sink="billing") == []
    assert await ids(entity="Patient/p2") == [third.id, second.id]
    assert await ids(event="e1") == [first.id]
    # pages of two: the second starts before the first page's last item
    page = (await ops.call("GET", "/v1/outbox/items", params={"limit": 2})).json()
    assert [i["id"] for i in page["items"]] == [third.id, second.id]
    assert page["next_before"] == second.position
    assert await ids(limit=2, before=page["next_before"]) == [first.id]
    # audited: one entry per entity the items write, marked as patient data
    (entry, *_) = await ops.backend.security.query_audit(WS, action="outbox.list")
    assert entry.outcome == "ok" and entry.phi and entry.key_id == ops.key_ids["ana"]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "lost"},
        {"entity": "p1"},
        {"entity": "Patient/"},
        {"sink": "bad sink"},
        {"event": "E1;drop"},
        {"limit": 0},
        {"limit": 1001},
        {"before": -1},
    ],
)
async def test_a_bad_filter_is_a_problem_naming_it(ops: Ops, params: dict[str, Any]) -> None:
    answer = await ops.call("GET", "/v1/outbox/items", params=params)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["type"] == "urn:ehrbridge:problem:invalid-request"
    [name] = params
    assert [e["field"] for e in problem["errors"]] == [name]


async def test_show_has_the_attempts_and_the_sinks_answer(ops: Ops) -> None:
    await ops.queue("p1", "e1")
    synced = await ops.settle("ehr", ItemStatus.SYNCED, error="")
    answer = await ops.call("GET", f"/v1/outbox/items/{synced.id}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert SECRET_PHONE not in answer.text
    assert body["item"]["status"] == "synced" and body["item"]["sync"] == "synced"
    assert body["item"]["result"] == {"ref": "Patient/9", "version": "2", "created": False}
    assert [(a["outcome"], a["status"], a["epoch"]) for a in body["attempts"]] == [
        ("synced", 422, 1)
    ]
    (entry,) = await ops.backend.security.query_audit(WS, action="outbox.show")
    assert (entry.entity_type, entry.entity_id, entry.details["item"]) == (
        "Patient",
        "p1",
        synced.id,
    )
    missing = await ops.call("GET", "/v1/outbox/items/0123456789abcdef0123456789")
    assert missing.status_code == 404
    malformed = await ops.call("GET", "/v1/outbox/items/Not-An-Id")
    assert malformed.status_code == 422


async def test_an_operator_retries_and_skips_parked_items_and_nothing_else(ops: Ops) -> None:
    await ops.queue("p1", "e1")
    dead = await ops.settle("ehr", ItemStatus.DEAD, error="retries spent")
    await ops.queue("p2", "e2")
    conflict = await ops.settle("ehr", ItemStatus.CONFLICT, error="the sink changed it")

    retried = await ops.call("POST", f"/v1/outbox/items/{dead.id}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
    # pending now: not parked, so neither retry nor skip applies
    for action, body in (("retry", None), ("skip", {"reason": "no"})):
        refused = await ops.call("POST", f"/v1/outbox/items/{dead.id}/{action}", body)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == PROBLEM
        problem = refused.json()
        assert problem["type"] == "urn:ehrbridge:problem:outbox-conflict"
        assert "pending" in problem["detail"]

    bad_bodies: list[dict[str, Any]] = [
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x", "extra": 1},
    ]
    for bad_body in bad_bodies:
        bad = await ops.call("POST", f"/v1/outbox/items/{conflict.id}/skip", bad_body)
        assert bad.status_code == 422, bad_body
    skipped = await ops.call(
        "POST", f"/v1/outbox/items/{conflict.id}/skip", {"reason": "the front desk fixed it"}
    )
    assert skipped.status_code == 200, skipped.text
    assert (skipped.json()["status"], skipped.json()["sync"]) == ("skipped", "not applicable")
    stored = await ops.backend.outbox.item(WS, conflict.id)
    assert stored is not None and stored.status is ItemStatus.SKIPPED
    # who did what is on record, with the item
    attempts = await ops.backend.outbox.attempts(WS, conflict.id)
    assert attempts[-1].outcome == "skipped" and ops.key_ids["ana"] in attempts[-1].detail
    retries = await ops.backend.security.query_audit(WS, action="outbox.retry")
    assert [(a.outcome, a.entity_id) for a in retries] == [("invalid", None), ("ok", "p1")]
    skips = await ops.backend.security.query_audit(WS, action="outbox.skip")
    assert [(a.outcome, a.entity_id) for a in skips] == [("ok", "p2"), ("invalid", None)]


async def test_stats_are_the_depth_per_sink_and_the_dispatchers_states(ops: Ops) -> None:
    empty = (await ops.call("GET", "/v1/outbox/stats")).json()
    assert (empty["open"], empty["dead"], empty["oldest"], empty["sinks"]) == (0, 0, None, [])
    first = await ops.queue("p1", "e1")
    ops.clock.advance(timedelta(minutes=5))
    await ops.queue("p2", "e2")
    await ops.queue("p3", "e3", sink="billing")
    await ops.settle("billing", ItemStatus.DEAD, error="refused")
    await ops.backend.outbox.save_sink_state(
        WS, "ehr", "runner-a", {"circuit": "open", "limit": 3, "in_flight": 0}
    )
    answer = await ops.call("GET", "/v1/outbox/stats")
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    assert (stats["open"], stats["dead"], stats["conflict"]) == (2, 1, 0)
    by_sink = {s["sink"]: s for s in stats["sinks"]}
    assert (by_sink["ehr"]["pending"], by_sink["ehr"]["dead"]) == (2, 0)
    assert (by_sink["billing"]["pending"], by_sink["billing"]["dead"]) == (0, 1)
    assert stats["oldest"] == by_sink["ehr"]["oldest"]
    assert stats["oldest"].startswith(first.created_at.isoformat()[:19])
    (state,) = stats["states"]
    assert (state["sink"], state["holder"], state["stale"]) == ("ehr", "runner-a", False)
    assert state["state"] == {"circuit": "open", "limit": 3, "in_flight": 0}
    entries = await ops.backend.security.query_audit(WS, action="outbox.stats")
    assert [(e.outcome, e.phi) for e in entries] == [("ok", False), ("ok", False)]


async def test_a_server_without_an_outbox_has_none_to_show(ops: Ops) -> None:
    security = ops.backend.security
    service = AgentService.on_store(ops.backend.worldmodel, security)
    transport = httpx.ASGITransport(app=create_app(service, security))
    async with httpx.AsyncClient(transport=transport, base_url="http://ehrbridge.test") as client:
        answer = await client.get(
            "/v1/outbox/stats", headers={"Authorization": f"Bearer {ops.keys['ana']}"}
        )
    assert answer.status_code == 404
    assert answer.json()["detail"] == "this server has no outbox"


# --- sync status in the agent's reads ---------------------------------------------------------


class CountingOutbox:
    """The real outbox, counting the sync-status look-ups made through it."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.looked_up: list[list[str]] = []

    async def of_events(
        self, workspace: str, event_ids: Sequence[str]
    ) -> dict[str, list[OutboxItem]]:
        self.looked_up.append(list(event_ids))
        return await self.outbox.of_events(workspace, event_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.outbox, name)


async def agent_reads(ops: Ops) -> tuple[httpx.AsyncClient, CountingOutbox]:
    """A client of a service whose outbox counts its look-ups, and the counter."""
    counting = CountingOutbox(ops.backend.outbox)
    service = AgentService.on_store(
        ops.backend.worldmodel, ops.backend.security, outbox=cast(Outbox, counting)
    )
    transport = httpx.ASGITransport(app=create_app(service, ops.backend.security))
    client = httpx.AsyncClient(
        transport=transport,
        base_url="http://ehrbridge.test",
        headers={"Authorization": f"Bearer {ops.keys['agent']}"},
    )
    return client, counting


async def ehr_patient(ops: Ops) -> None:
    await WorldModel(ops.backend.worldmodel, WS).record(
        [
            NewEvent(
                workspace=WS,
                entity_type="Patient",
                entity_id="p1",
                data={"name.family": "Santos", "phone.mobile": "+16175550142"},
                source=Source(kind="ehr", id="ehr", ref="Patient/1"),
                confidence=1.0,
                effective_at=datetime(2026, 11, 1, tzinfo=UTC),
            )
        ]
    )


async def test_a_voice_value_says_where_it_stands_at_each_sink(ops: Ops) -> None:
    await ehr_patient(ops)
    client, counting = await agent_reads(ops)
    async with client:
        # EHR data only: no sync status, and no look-up
        read = (await client.get("/v1/entities/Patient/p1")).json()
        assert read["fields"]["name.family"]["sync"] is None
        assert counting.looked_up == []
        written = await client.post(
            "/v1/observations",
            json={
                "entity_type": "Patient",
                "entity_id": "p1",
                "fields": {"email": "ana@example.com"},
                "level": "confirmed",
            },
        )
        assert written.status_code == 200, written.text
        fact = written.json()["event_id"]

        async def email_sync() -> Any:
            answer = await client.get("/v1/entities/Patient/p1")
            assert answer.status_code == 200, answer.text
            fields = answer.json()["fields"]
            assert fields["name.family"]["sync"] is None  # EHR data, still
            return fields["email"]["sync"]

        # heard, not yet let through to any sink
        assert await email_sync() == {}
        assert counting.looked_up == [[fact]]  # one look-up, of the voice fact only
        await ops.queue("p1", fact)
        await ops.queue("p1", fact, sink="billing")
        assert await email_sync() == {"billing": "pending", "ehr": "pending"}
        await ops.settle("ehr", ItemStatus.SYNCED, error="")
        await ops.settle("billing", ItemStatus.CONFLICT, error="the sink changed it")
        assert await email_sync() == {"billing": "conflict", "ehr": "synced"}
        assert len(counting.looked_up) == 3
        # as of a past time, nothing is looked up (the outbox knows only now)
        past = await client.get("/v1/entities/Patient/p1", params={"as_of": "2030-01-01T00:00:00Z"})
        assert past.json()["fields"]["email"]["sync"] is None
        assert len(counting.looked_up) == 3
        # the searches show it too, in one look-up for every entity found
        found = await client.post("/v1/patients/search", json={"phone": "+16175550142"})
        (patient,) = found.json()["items"]
        assert patient["fields"]["email"]["sync"] == {"billing": "conflict", "ehr": "synced"}
        assert len(counting.looked_up) == 4


async def test_the_ambient_context_says_what_is_in_the_ehr(ops: Ops) -> None:
    await ehr_patient(ops)
    client, counting = await agent_reads(ops)
    async with client:
        before = (await client.post("/v1/ambient/context", json={"phone": "+16175550142"})).json()
        assert before["match"] == "matched" and counting.looked_up == []
        assert "EHR" not in before["prompt"]
        written = await client.post(
            "/v1/observations",
            json={
                "entity_type": "Patient",
                "entity_id": "p1",
                "fields": {"email": "ana@example.com"},
                "level": "confirmed",
            },
        )
        fact = written.json()["event_id"]
        await ops.queue("p1", fact)

        async def context() -> Any:
            answer = await client.post("/v1/ambient/context", json={"phone": "+16175550142"})
            assert answer.status_code == 200, answer.text
            return answer.json()

        pending = await context()
        assert pending["context"]["patient"]["fields"]["email"]["sync"] == {"ehr": "pending"}
        (email_line,) = [line for line in pending["prompt"].splitlines() if "Email" in line]
        assert "being written to the EHR" in email_line
        await ops.settle("ehr", ItemStatus.SYNCED, error="")
        synced = await context()
        assert synced["context"]["patient"]["fields"]["email"]["sync"] == {"ehr": "synced"}
        (email_line,) = [line for line in synced["prompt"].splitlines() if "Email" in line]
        assert email_line.endswith(", in the EHR)")
        assert len(counting.looked_up) == 2


async def test_an_operators_value_shows_the_least_advanced_of_its_steps(ops: Ops) -> None:
    await ehr_patient(ops)
    recorded = await WorldModel(ops.backend.worldmodel, WS).record(
        [
            NewEvent(
                workspace=WS,
                entity_type="Patient",
                entity_id="p1",
                data={"email": "ana@example.com"},
                source=Source(kind="operator", id="ana"),
                confidence=1.0,
                effective_at=datetime(2026, 11, 2, tzinfo=UTC),
            )
        ]
    )
    fact = recorded[0].events[0].id
    # a workflow of two steps at one sink, both delivering the operator's fact
    for step in (1, 2):
        await ops.backend.outbox.enqueue(
            WS,
            [
                NewItem(
                    sink="ehr",
                    key=item_key("ehr", "wf-1", str(step)),
                    lane="Patient/p1",
                    entity_type="Patient",
                    entity_id="p1",
                    event_id=fact,
                    operation=f"step-{step}",
                    payload={"fields": {"email": SECRET_PHONE}},
                    workflow="wf-1",
                    step=step,
                )
            ],
        )
    client, counting = await agent_reads(ops)
    async with client:

        async def email_sync() -> Any:
            answer = await client.get("/v1/entities/Patient/p1")
            assert answer.status_code == 200, answer.text
            assert SECRET_PHONE not in answer.text
            return answer.json()["fields"]["email"]["sync"]

        assert await email_sync() == {"ehr": "pending"}
        await ops.settle("ehr", ItemStatus.SYNCED, error="")  # the first step
        assert await email_sync() == {"ehr": "pending"}  # the second is still to go
        await ops.settle("ehr", ItemStatus.SYNCED, error="")
        assert await email_sync() == {"ehr": "synced"}
        assert counting.looked_up == [[fact]] * 3
