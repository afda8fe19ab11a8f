"""``ehrbridge review ...``: an operator clears the queue from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from ehrbridge.cli.main import app
from ehrbridge.confidence import Level
from ehrbridge.review.queue import Flag
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.model import WorldModel

runner = CliRunner()
WS = "clinic"


def review(db: str, *args: str, operator: str | None = "ana") -> tuple[int, str]:
    more = ["--operator", operator] if operator else []
    command = ["review", *args, "--db", db, "--workspace", WS]
    if args[0] not in ("list", "stats"):
        command += more
    result = runner.invoke(app, command, env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'review.db'}"


async def flag_two(db: str) -> list[str]:
    """Two voice facts flagged for a human: their items' ids."""
    async with await open_backend(db) as backend:
        model = WorldModel(backend.worldmodel, WS)
        ids = []
        for entity_id, data in (("p1", {"email": "ana@example.com"}), ("p2", {"language": "es"})):
            result = await model.write_voice(
                "Patient", entity_id, data, level=Level.VOICE_CONFIRMED, agent="agent-1"
            )
            flag = Flag(
                entity_type="Patient",
                entity_id=entity_id,
                event_id=result.events[0].id,
                reason="judge: unsure",
            )
            ids.append((await backend.review.flag(WS, flag)).item_id)
        return ids


async def confidences(db: str, entity_id: str) -> dict[str, float]:
    async with await open_backend(db) as backend:
        state = await backend.worldmodel.get_state(WS, "Patient", entity_id)
        assert state is not None
        return {name: fv.confidence for name, fv in state.fields.items()}


def test_an_operator_clears_the_queue(db: str) -> None:
    first, second = asyncio.run(flag_two(db))
    code, out = review(db, "list", "--json")
    assert code == 0, out
    listed = [orjson.loads(line) for line in out.splitlines()]
    assert [i["item_id"] for i in listed] == [first, second]
    code, out = review(db, "show", first)
    assert code == 0 and "judge: unsure" in out and "email" in out, out

    assert review(db, "claim", first)[0] == 0
    code, out = review(db, "approve", first, operator="bo")
    assert code == 3 and "claimed by ana" in out, out
    code, out = review(db, "approve", first)
    assert code == 0 and "approved by ana" in out, out
    assert asyncio.run(confidences(db, "p1")) == {"email": 0.95}

    code, out = review(db, "reject", second)
    assert code == 2 and "needs a reason" in out
    code, out = review(db, "reject", second, "--reason", "not the patient's")
    assert code == 0, out
    code, out = review(db, "stats")
    assert code == 0 and "0 open" in out
    code, out = review(db, "approve", first, operator="bo")
    assert code == 3 and "already approved by ana" in out


def test_a_correction_and_the_audit_trail(db: str) -> None:
    first, _ = asyncio.run(flag_two(db))
    code, out = review(db, "correct", first, "--set", "email=ana.s@example.com")
    assert code == 0, out
    assert asyncio.run(confidences(db, "p1")) == {"email": 1.0}
    result = runner.invoke(app, ["audit", "--db", db, "--workspace", WS, "--json"])
    actions = {orjson.loads(line)["action"] for line in result.output.splitlines()}
    assert {"review.correct"} <= actions
    code, out = review(db, "approve", "0123abc")
    assert code == 3 and "no such review item" in out


def test_the_operator_must_be_named(db: str) -> None:
    first, _ = asyncio.run(flag_two(db))
    code, out = review(db, "approve", first, operator=None)
    assert code == 2 and "name the operator" in out
