"""The review loop with the ``policy`` judge (grounding, then the LLM for what grounding leaves
unsure) against the scripted OpenAI-compatible server, on both backends."""

from __future__ import annotations

from typing import Any

from ehrbridge.confidence import Level
from ehrbridge.review.judges import judge_named
from ehrbridge.review.llm import LlmSettings
from ehrbridge.review.loop import ReviewLoop
from ehrbridge.review.queue import ItemQuery
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.events import EventType
from ehrbridge.worldmodel.model import WorldModel
from tests.llmserver import LlmServer, answer

WS = "clinic"
#: an interpreter gives "her cell" without saying whose words they relay ("she says..."), which
#: the grounding judge leaves to others
TRANSCRIPT = """\
Agent: What's the best number to reach the patient?
Caller: [Interpreter] Her new cell is six one seven, five five five, oh one four four.
Agent: Thank you.
"""


async def verdict_of(backend: Backend, entity_id: str) -> Any:
    events = await backend.worldmodel.read_entity(WS, "Patient", entity_id)
    (regrade,) = [e for e in events if e.event_type is EventType.REGRADED]
    return regrade


async def test_the_llm_decides_what_grounding_leaves_unsure(
    backend: Backend, llm: LlmServer
) -> None:
    model = WorldModel(backend.worldmodel, WS)
    await model.write_voice(
        "Call", "call-1", {"transcript": TRANSCRIPT}, level=Level.VOICE_CONFIRMED, agent="a"
    )
    for entity_id in ("p1", "p2"):
        await model.write_voice(
            "Patient",
            entity_id,
            {"phone.mobile": "+16175550144"},
            level=Level.VOICE_CONFIRMED,
            agent="agent-1",
            call_id="call-1",
        )
    quote = "six one seven, five five five, oh one four four"
    supported = answer(
        verdict="supported",
        evidence=[{"turn": 1, "quote": quote}],
        value="+16175550144",
        reason="the interpreter gives the patient's new cell",
    )
    llm.app.script(supported, answer(verdict="supported", evidence=[], value="+16175550144"))
    settings = LlmSettings(base_url=llm.base_url, model="judge-1", timeout=5.0)
    judge = judge_named("policy", settings)
    loop = ReviewLoop(backend.worldmodel, backend.review, backend.runner, judge, workspace=WS)
    await loop.step()
    first = await verdict_of(backend, "p1")
    assert first.confidence == Level.VERIFIED.value
    assert first.evidence["verdict"]["judge"] == "llm"
    assert first.evidence["verdict"]["evidence"][0]["text"] == quote
    assert first.source.id == judge.name + "/" + judge.version
    # the second answer quotes nothing: the code turns it down, and a human looks
    second = await verdict_of(backend, "p2")
    assert second.confidence == Level.VOICE_CONFIRMED.value
    items = await backend.review.items(WS, ItemQuery())
    assert [i.entity_id for i in items] == ["p2"]
    assert len(llm.app.requests) == 2  # grounding was unsure on both
