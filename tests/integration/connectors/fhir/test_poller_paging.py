"""The FHIR poller against an in-process server that ignores ``_sort``: the cursor moves only
once every page is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from ehrbridge.connectors.fhir.poller import FhirPoller
from ehrbridge.connectors.source import DataSourceConfig, ResourceConfig
from ehrbridge.fhir.client import FhirClient
from ehrbridge.runner.polling import poll_once
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.model import WorldModel
from tests.integration.connectors.fhir.test_poller import FailingAppends

BASE = "http://ehr.test/fhir"


def patient(id: str, updated: str, family: str, born: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "meta": {"versionId": "1", "lastUpdated": updated},
        "name": [{"family": family, "given": ["Pat"]}],
        "birthDate": born,
    }


# Newest first on page 1: the server did not sort by _lastUpdated.
PAGES = [
    [
        patient("p3", "2026-11-20T10:00:00.000Z", "Santos", "1970-03-04"),
        patient("p2", "2026-11-20T09:00:00.000Z", "Okafor", "1985-06-07"),
    ],
    [patient("p1", "2026-11-20T08:00:00.000Z", "Lindqvist", "1999-10-11")],
]


def serve(request: httpx.Request, on_page: Callable[[int], None]) -> httpx.Response:
    page = int(request.url.params.get("page", "0"))
    on_page(page)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in PAGES[page]],
        "link": [{"relation": "self", "url": str(request.url)}],
    }
    if page + 1 < len(PAGES):
        bundle["link"].append({"relation": "next", "url": f"{BASE}/Patient?page={page + 1}"})
    return httpx.Response(
        200, content=orjson.dumps(bundle), headers={"content-type": "application/fhir+json"}
    )


async def test_a_failure_on_a_later_page_leaves_the_cursor_where_it_was(tmp_path: Path) -> None:
    backend = await open_backend(f"sqlite:///{tmp_path / 'wm.db'}")
    store = backend.worldmodel
    cursors = backend.runner
    source = DataSourceConfig(id="ehr", kind="fhir", base_url=BASE)
    patients = ResourceConfig(type="Patient", every=timedelta(minutes=1), page_size=2)
    # Page 1 is stored (one batch per page); the database fails once page 2 has been read.
    failing = FailingAppends(store)
    broken = [True]

    def on_page(page: int) -> None:
        if page == 1 and broken:
            failing.failures = 1
            broken.clear()

    transport = httpx.MockTransport(lambda request: serve(request, on_page))
    poller = FhirPoller(
        WorldModel(failing, "clinic"),
        cursors,
        client_for=lambda s: FhirClient(s.base_url, transport=transport),
        batch=1,
    )
    try:
        outcome = await poll_once(
            poller, source, patients, workspace=poller.model.workspace, clock=poller.clock
        )
        assert not outcome.ok and outcome.error is not None
        assert (await store.counts("clinic")).entities == {"Patient": 2}
        assert await cursors.get_cursor("clinic", "ehr", "Patient") is None

        done = await poll_once(
            poller, source, patients, workspace=poller.model.workspace, clock=poller.clock
        )
        assert done.ok and done.fetched == 3
        assert (await store.counts("clinic")).entities == {"Patient": 3}
        assert await cursors.get_cursor("clinic", "ehr", "Patient") == (
            "2026-11-20T10:00:00.000000+00:00"
        )
    finally:
        await poller.aclose()
        await store.close()
