"""``ehrbridge gates explain``: the gate's decision for a stored event, layer by layer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from ehrbridge.cli.main import app
from ehrbridge.confidence import Level
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.events import Source
from ehrbridge.worldmodel.model import WorldModel

runner = CliRunner()
WS = "clinic"


def explain(db: str, event_id: str, *more: str) -> tuple[int, str]:
    args = ["gates", "explain", event_id, "--db", db, "--workspace", WS, *more]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gates.db'}"


async def voice_fact(db: str) -> tuple[str, str]:
    """A voice phone number on a new patient: (the entity, the event id)."""
    async with await open_backend(db) as backend:
        model = WorldModel(backend.worldmodel, WS)
        result = await model.write_voice(
            "Patient",
            "p-1",
            {"phone.mobile": "+16175550127"},
            level=Level.VOICE_CONFIRMED,
            agent="agent-1",
            call_id="call-1",
        )
        return "Patient/p-1", result.events[0].id


async def regrade(db: str, entity: str, event_id: str, level: Level, by: Source) -> None:
    async with await open_backend(db) as backend:
        await WorldModel(backend.worldmodel, WS).regrade(entity, event_id, level, by=by)


def test_a_voice_fact_is_blocked_until_judged_then_eligible_unless_policy_wants_a_human(
    db: str,
) -> None:
    entity, event_id = asyncio.run(voice_fact(db))
    code, out = explain(db, event_id)
    assert code == 1, out
    assert "fail  confidence  source confidence 0.5 < 0.8, not yet judged" in out
    assert "blocked for ehr at confidence" in out
    assert "+1617" not in out  # ids, fields and reasons only, never a value

    judge = Source(kind="review", id="grounding")
    asyncio.run(regrade(db, entity, event_id, Level.VERIFIED, judge))
    code, out = explain(db, event_id, "--json")
    assert code == 0, out
    decision = orjson.loads(out)
    assert decision["eligible"] is True and decision["blocked_by"] is None
    assert [c["layer"] for c in decision["checks"]] == [
        "scope",
        "origin",
        "confidence",
        "judge",
        "human",
        "current",
        "sink-newer",
    ]

    code, out = explain(db, event_id, "--human-field", "Patient.phone.mobile")
    assert code == 1 and "blocked for ehr at human" in out, out
    assert "Patient.phone.mobile always needs a human review; not reviewed yet" in out


def test_an_unknown_event_is_a_clear_error(db: str) -> None:
    asyncio.run(voice_fact(db))
    code, out = explain(db, "no-such-event")
    assert code == 1
    assert "no event no-such-event in workspace clinic" in out


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    code, out = explain(f"sqlite:///{tmp_path / 'absent.db'}", "e1")
    assert code == 1 and "no database at" in out
    assert not (tmp_path / "absent.db").exists()
