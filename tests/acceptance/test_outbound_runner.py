"""``ehrbridge run`` both ways (docs/design.md §9, the outbound issue's "done when"): a voice fact
written while the runner runs is judged against the call's transcript, passes the gate, is
written to the sandbox EHR through the outbox, and the next poll reads it back with no event and
no conflict."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ehrbridge.confidence import Level
from ehrbridge.outbound.outbox import ItemStatus
from ehrbridge.sample import SAMPLE_SOURCE
from ehrbridge.sandbox.app import SandboxApp
from ehrbridge.sandbox.serve import running_sandbox
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.events import EventType
from ehrbridge.worldmodel.model import WorldModel

WS = "clinic"
CONFIG = """\
workspace: clinic
database: sqlite:///{db}
data_sources:
  - id: {source}
    kind: fhir
    base_url: {base}
    resources:
      - {{type: Practitioner, every: 1s}}   # a patient refers to a practitioner
      - {{type: Patient, every: 1s}}
    outbound:
      entity_types: [Patient]
      rate: 20/s
review:
  judge: grounding
  timezone: America/New_York
  catch_up: 200ms
"""
COMMAND = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "run", "--config"]
TRANSCRIPT = """\
Agent: Thanks for calling. Is the number we have for you still good?
Caller: No, I have a new cell: six one seven, five five five, oh one nine nine.
Agent: Let me read that back: six one seven, five five five, zero one nine nine?
Caller: Yes, that's right.
"""
NEW = "+16175550199"
#: how long the test waits for each step (generous: shared machines); never asserted on
PATIENCE = 60.0


@pytest.fixture
def ehr(tmp_path: Path) -> Iterator[str]:
    """The sandbox EHR seeded with the sample clinic (Maria Santos is ``Patient/pat-1001``)."""
    app = SandboxApp(tmp_path / "sandbox.db", seed=True)
    try:
        with running_sandbox(app) as base_url:
            yield base_url
    finally:
        app.close()


def wait_for(what: str, check: object) -> object:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        found = check() if callable(check) else None
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"not within {PATIENCE:.0f} s: {what}")


async def maria(db: str) -> str | None:
    async with await open_backend(db) as backend:
        rows = await backend.worldmodel.find(WS, "phone:+16175550142", "Patient")
        return rows[0].entity_id if rows else None


async def hear(db: str, entity_id: str) -> str:
    async with await open_backend(db) as backend:
        model = WorldModel(backend.worldmodel, WS)
        await model.write_voice(
            "Call",
            "call-1",
            {"transcript": TRANSCRIPT, "started_at": "2026-12-04T09:12:00-05:00"},
            level=Level.VOICE_CONFIRMED,
            agent="agent-1",
        )
        written = await model.write_voice(
            "Patient",
            entity_id,
            {"phone.mobile": NEW},
            level=Level.VOICE_CONFIRMED,
            agent="agent-1",
            call_id="call-1",
        )
        return written.events[0].id


async def outcome(db: str, fact: str) -> ItemStatus | None:
    async with await open_backend(db) as backend:
        items = (await backend.outbox.of_events(WS, [fact])).get(fact, [])
        return items[0].status if items else None


def mobile_at_ehr(base: str) -> str | None:
    resource = httpx.get(f"{base}/Patient/pat-1001").json()
    return next((t["value"] for t in resource.get("telecom", []) if t.get("use") == "mobile"), None)


async def history(db: str, entity_id: str) -> tuple[list[EventType], int]:
    async with await open_backend(db) as backend:
        events = await backend.worldmodel.read_entity(WS, "Patient", entity_id)
        state = await backend.worldmodel.get_state(WS, "Patient", entity_id)
        return [e.event_type for e in events], len(state.conflicts) if state else -1


def test_a_voice_fact_goes_to_the_ehr_and_back(tmp_path: Path, ehr: str) -> None:
    db = f"sqlite:///{tmp_path / 'wm.db'}"
    config = tmp_path / "runner.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "wm.db", source=SAMPLE_SOURCE, base=ehr))
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*COMMAND, str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        entity_id = wait_for("the patients polled in", lambda: asyncio.run(maria(db)))
        assert isinstance(entity_id, str)
        fact = asyncio.run(hear(db, entity_id))
        wait_for("the new number at the EHR", lambda: mobile_at_ehr(ehr) == NEW)
        assert asyncio.run(outcome(db, fact)) is ItemStatus.SYNCED
        settled = asyncio.run(history(db, entity_id))
        time.sleep(2.5)  # two more polls of Patient at 1 s: they must find nothing new
        assert asyncio.run(history(db, entity_id)) == settled
        kinds, conflicts = settled
        assert conflicts == 0
        # polled in; heard; verified by the judge; the EHR's answer to our write, as its own
        assert kinds == [
            EventType.RECORDED,
            EventType.RECORDED,
            EventType.REGRADED,
            EventType.RECORDED,
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
