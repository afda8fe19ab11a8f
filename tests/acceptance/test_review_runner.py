"""``ehrbridge run`` with a ``review:`` section: a voice fact written while the runner runs is
judged within seconds by the grounding judge, verified or queued for a human."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from ehrbridge.confidence import Level
from ehrbridge.review.queue import ItemQuery
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.events import EventType
from ehrbridge.worldmodel.model import WorldModel

WS = "clinic"
CONFIG = """\
workspace: clinic
database: sqlite:///{db}
review:
  judge: grounding
  timezone: America/New_York
  catch_up: 200ms
"""
COMMAND = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "run", "--config"]
TRANSCRIPT = """\
Agent: Thank you for calling Riverside Family Medicine. Who am I speaking with?
Caller: Hi, this is Maria Delgado.
Agent: How can I help today?
Caller: I got a new cell phone number and wanted to update it.
Agent: Sure. What's the new number?
Caller: It's six one seven, five five five, oh one two seven.
Agent: Let me read that back: six one seven, five five five, zero one two seven. Is that correct?
Caller: Yep, that's it.
"""


async def write(db: str) -> list[str]:
    """The call; the number the caller gave, another number, and an email nobody said."""
    async with await open_backend(db) as backend:
        model = WorldModel(backend.worldmodel, WS)
        await model.write_voice(
            "Call",
            "call-1",
            {"transcript": TRANSCRIPT, "started_at": "2026-11-16T09:12:00-05:00"},
            level=Level.VOICE_CONFIRMED,
            agent="agent-1",
        )
        ids = []
        facts = (
            ("p1", {"phone.mobile": "+16175550127"}),
            ("p2", {"phone.mobile": "+16175550199"}),
            ("p3", {"email": "maria@example.com"}),
        )
        for entity_id, data in facts:
            result = await model.write_voice(
                "Patient",
                entity_id,
                data,
                level=Level.VOICE_CONFIRMED,
                agent="agent-1",
                call_id="call-1",
            )
            ids.append(result.events[0].id)
        return ids


async def verdicts(db: str) -> dict[str, float]:
    async with await open_backend(db) as backend:
        found = {}
        for entity_id in ("p1", "p2", "p3"):
            events = await backend.worldmodel.read_entity(WS, "Patient", entity_id)
            for e in events:
                if e.event_type is EventType.REGRADED:
                    found[entity_id] = e.confidence
        return found


async def queue(db: str) -> list[str]:
    async with await open_backend(db) as backend:
        return [i.entity_id for i in await backend.review.items(WS, ItemQuery())]


def test_the_runner_judges_a_voice_fact_within_seconds(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'wm.db'}"
    config = tmp_path / "runner.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "wm.db"))
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*COMMAND, str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        time.sleep(1.0)  # the runner is up and has read the (empty) log
        asyncio.run(write(db))
        written = time.monotonic()
        found: dict[str, float] = {}
        while time.monotonic() - written < 30 and len(found) < 3:
            found = asyncio.run(verdicts(db))
            time.sleep(0.05)
        # the number the caller gave and confirmed is verified; another number for the same
        # field is contradicted (rejected); an email nobody said waits for a human
        assert found == {"p1": 0.8, "p2": 0.0, "p3": 0.5}, found
        assert asyncio.run(queue(db)) == ["p3"]
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
