"""The review loop killed mid-batch (SIGKILL, both backends): after a restart every judgeable
event has exactly one verdict, and every one sent to a human is on the queue once."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from ehrbridge.confidence import Level
from ehrbridge.review.queue import ItemQuery
from ehrbridge.storage import Backend
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.events import EventType
from ehrbridge.worldmodel.model import WorldModel
from tests.conftest import POSTGRES_DSN
from tests.integration.review.test_loop import TRANSCRIPT

WS = "clinic"
FACTS = 40

#: a review loop in its own process, with a slow judge: even-numbered facts supported, odd ones
#: unsure; it prints a line per verdict and exits once the log is read to its end
LOOP = """
import asyncio, sys
from ehrbridge.review.loop import ReviewLoop, ReviewPolicy
from ehrbridge.review.verdicts import Outcome, Verdict
from ehrbridge.storage import open_backend

class Slow:
    name, version = "slow", "1"
    async def judge(self, case):
        await asyncio.sleep(0.02)
        n = int(case.fact.value.split("@")[0].rsplit("-", 1)[1])
        print("judged", n, flush=True)
        outcome = Outcome.SUPPORTED if n % 2 == 0 else Outcome.UNSURE
        return Verdict(outcome=outcome, judge="slow", version="1", reason="scripted")

async def main(url, schema):
    options = {"schema": schema} if schema else {}
    async with await open_backend(url, **options) as backend:
        loop = ReviewLoop(backend.worldmodel, backend.review, backend.runner, Slow(),
                          workspace="clinic", policy=ReviewPolicy(batch=7))
        while (await loop.step()).read:
            pass
    print("done", flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def where(backend: Backend) -> tuple[str, str]:
    store = backend.worldmodel
    if isinstance(store, SQLiteStore):
        return f"sqlite:///{store.path}", ""
    return POSTGRES_DSN, str(getattr(store, "schema", ""))


async def start(url: str, schema: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOOP, url, schema, stdout=asyncio.subprocess.PIPE
    )


@pytest.mark.parametrize("kill_after", [3, 11])
async def test_a_killed_review_loop_judges_every_fact_exactly_once(
    backend: Backend, kill_after: int
) -> None:
    model = WorldModel(backend.worldmodel, WS)
    await model.write_voice(
        "Call", "call-1", {"transcript": TRANSCRIPT}, level=Level.VOICE_CONFIRMED, agent="a"
    )
    for n in range(FACTS):
        await model.write_voice(
            "Patient",
            f"p{n}",
            {"email": f"fact-{n}@example.com"},
            level=Level.VOICE_CONFIRMED,
            agent="agent-1",
            call_id="call-1",
        )
    url, schema = where(backend)
    first = await start(url, schema)
    assert first.stdout is not None
    for _ in range(kill_after):  # mid-batch: a verdict or more of the batch in, others not
        assert (await asyncio.wait_for(first.stdout.readline(), timeout=60)).startswith(b"judged")
    first.send_signal(signal.SIGKILL)
    await first.wait()

    second = await start(url, schema)
    out, _ = await asyncio.wait_for(second.communicate(), timeout=120)
    assert second.returncode == 0 and out.decode().strip().endswith("done")

    verdicts: dict[str, int] = {}
    for n in range(FACTS):
        events = await backend.worldmodel.read_entity(WS, "Patient", f"p{n}")
        fact = events[0]
        regrades = [
            e
            for e in events
            if e.event_type is EventType.REGRADED and e.data.get("target") == fact.id
        ]
        verdicts[f"p{n}"] = len(regrades)
        expected = Level.VERIFIED.value if n % 2 == 0 else Level.VOICE_CONFIRMED.value
        assert [e.confidence for e in regrades] == [expected], (n, regrades)
    assert set(verdicts.values()) == {1}, json.dumps(verdicts)
    items = await backend.review.items(WS, ItemQuery(limit=1000))
    assert sorted(i.entity_id for i in items) == sorted(f"p{n}" for n in range(1, FACTS, 2))
    assert all(len(i.events) == 1 for i in items)
