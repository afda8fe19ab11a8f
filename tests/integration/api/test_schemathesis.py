"""The HTTP API against its own OpenAPI document (schemathesis): whatever the generated
requests, no 5xx, and every response matches the status, content type and schema documented.

The app runs on a real uvicorn socket in a background thread, on a SQLite file with the sample
clinic and the Slot/Schedule fixture, its store opened in that thread's event loop; schemathesis
sends its requests with an agent key, and to the outbox routes with an operator key as well
(the server has the outbox, with two items in it). Examples are few and derandomised: the run
is the same every time and takes seconds.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from ehrbridge.api.http import create_app
from ehrbridge.api.serve import uvicorn_config
from ehrbridge.api.service import AgentService
from ehrbridge.api.store import ApiKeys
from ehrbridge.outbound.outbox import Attempt, ItemStatus, NewItem, Settle, item_key
from ehrbridge.sample import sample_bundle
from ehrbridge.storage import Backend, open_backend
from tests.integration.api.test_service import SLOTS, WS, _import

#: how long the server may take to start
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Served:
    url: str
    headers: dict[str, str]
    #: an operator key's, for the operators' routes
    operator_headers: dict[str, str]


def _serve(db: Path, ready: queue.Queue[Any], stop: threading.Event) -> None:
    async def main() -> None:
        backend = await open_backend(f"sqlite:///{db}")
        store = backend.worldmodel
        try:
            await _import(store, WS, [sample_bundle(), SLOTS])
            security = backend.security
            secret, _ = await security.create_key(WS, "agent", name="schemathesis")
            operator, _ = await security.create_key(WS, "operator", name="schemathesis ops")
            await _outbox_items(backend)
            service = AgentService.on_store(store, security, outbox=backend.outbox)
            app = create_app(service, security)
            server = uvicorn.Server(
                uvicorn_config(app, host="127.0.0.1", port=0, log_level="critical")
            )
            task = asyncio.create_task(server.serve())
            while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn has no event)
                await asyncio.sleep(0.01)
            host, port = server.servers[0].sockets[0].getsockname()[:2]
            ready.put(
                Served(
                    f"http://{host}:{port}",
                    {"Authorization": f"Bearer {secret}"},
                    {"Authorization": f"Bearer {operator}"},
                )
            )
            await asyncio.to_thread(stop.wait)
            server.should_exit = True
            await task
        finally:
            await store.close()

    try:
        asyncio.run(main())
    except BaseException as exc:  # reported to the fixture, which is waiting
        ready.put(exc)


async def _outbox_items(backend: Backend) -> None:
    """Two outbox items, one of them dead (it holds its lane), for the operators' routes."""
    for n in range(2):
        await backend.outbox.enqueue(
            WS,
            [
                NewItem(
                    sink="ehr",
                    key=item_key("ehr", f"fact-{n}"),
                    lane=f"Patient/p{n}",
                    entity_type="Patient",
                    entity_id=f"p{n}",
                    event_id=f"fact{n}",
                    operation="upsert",
                    payload={"fields": {"email": "someone@example.org"}},
                )
            ],
        )
    (claim, *_) = await backend.outbox.claim(WS, "ehr", "w", limit=1, lease=timedelta(minutes=1))
    now = datetime.now(UTC)
    attempt = Attempt(
        item_id=claim.item.id, epoch=claim.epoch, started_at=now, finished_at=now, outcome="dead"
    )
    await backend.outbox.settle(
        WS,
        claim.item.id,
        claim.epoch,
        Settle(status=ItemStatus.DEAD, attempt=attempt, error="refused (422)"),
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    ready: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    db = tmp_path_factory.mktemp("schemathesis") / "wm.db"
    thread = threading.Thread(target=_serve, args=(db, ready, stop), name="api", daemon=True)
    thread.start()
    started = ready.get(timeout=START_TIMEOUT)
    if isinstance(started, BaseException):
        raise started
    try:
        yield started
    finally:
        stop.set()
        thread.join(timeout=30)


#: The OpenAPI document, built from the code alone (no service is called to build it);
#: :func:`test_the_served_document_is_this_one` proves the server publishes the same.
DOCUMENT = create_app(cast(AgentService, None), cast(ApiKeys, None)).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_served_document_is_this_one(served: Served) -> None:
    response = httpx.get(f"{served.url}/openapi.json")
    assert response.status_code == 200
    assert response.json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_keeps_to_its_openapi_document(case: Any, served: Served) -> None:
    case.call_and_validate(
        base_url=served.url,
        headers=served.headers,
        # negative_data_rejection: the request models are pydantic's lax mode (the MCP tools
        # validate the same models from JSON-RPC arguments), which takes a number as a Unix
        # time where the schema says date-time and "20" where it says integer. Harmless, and
        # the generated negative cases still must not give a 5xx or an undocumented response.
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
        additional_checks=[schema_valid_requests_pass_validation],
    )


@schema.include(path_regex="^/v1/outbox/").parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_outbox_routes_keep_to_the_document_for_an_operator(case: Any, served: Served) -> None:
    """The same checks with an operator key: the outbox routes answer, not only refuse."""
    case.call_and_validate(
        base_url=served.url,
        headers=served.operator_headers,
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
        additional_checks=[schema_valid_requests_pass_validation],
    )


def schema_valid_requests_pass_validation(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' ``positive_data_acceptance``, less the service's own refusals.

    A request the schema allows must get past request validation (no ``invalid-request``
    422). The service may still refuse it as ``invalid-input`` (422): a "phone" of three digits
    that is no phone number, a slot window that ends before it starts, a search text with no
    letters. Nor may the request models' own checks across values (a range that ends before
    it starts, a birth date that is no calendar date, a NUL character): pydantic reports them
    as ``Value error, ...``. A JSON schema cannot say those, so those 422s are documented, not
    mismatches.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    problem = response.json()
    details = [item["detail"] for item in problem.get("errors") or []]
    if (
        problem["type"] == "urn:ehrbridge:problem:invalid-request"
        and details
        and all(detail.startswith("Value error, ") for detail in details)
    ):
        return None
    assert problem["type"] == "urn:ehrbridge:problem:invalid-input", (
        f"a schema-valid request failed validation: {problem.get('errors')}"
    )
    return None
