"""The command line, end to end on a real SQLite file."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from ehrbridge.cli.main import app
from ehrbridge.confidence import Level
from ehrbridge.outbound.feed import OutboundFeed
from ehrbridge.outbound.gates import SinkPolicy
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.events import Source
from ehrbridge.worldmodel.model import WorldModel

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_demo_takes_a_voice_fact_to_the_ehr_and_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = invoke("demo")
    # synced from the in-process sandbox EHR through the connector runner
    assert "the connector runner is polling it" in out
    assert re.search(r"Observation\s+━+\s+6/6\s+in sync", out), out
    assert "world model: 117 entities, 117 events" in out
    assert "identified: Patient/" in out
    # the journey, in time order: heard, judged, queued, written, read back
    steps = re.findall(r"^\d\d:\d\d:\d\d\.\d{3}  (\S+(?: back)?)", out, re.MULTILINE)
    assert steps == ["heard", "judged", "queued", "written", "read back"], out
    assert "supported, re-graded to 0.80" in out
    assert "synced: Patient/pat-1001 is now version 2 at the EHR" in out
    assert "the next poll of the EHR: 0 new events, 0 conflicts" in out
    # the new number is the EHR's own now
    assert re.search(r"phone\.mobile\s+│\s+\+16175550199\s+│\s+1\.00\s+│\s+ehr:sandbox-ehr", out)
    assert "(pending)" not in out
    assert "upcoming appointments" in out
    assert (tmp_path / "ehrbridge-demo.db").exists()
    # the demo starts fresh every time
    again = invoke("demo")
    assert again.count("synced: Patient/pat-1001") == 1
    status = invoke("status", "--db", f"sqlite:///{tmp_path / 'ehrbridge-demo.db'}")
    assert re.search(r"sandbox-ehr\s+│\s+healthy", status), status


def test_import_is_idempotent_and_status_counts(db: str) -> None:
    first = invoke("import", "--db", db)
    assert re.search(r"Patient\s+│\s+6\s+│\s+0\s+│\s+0\s+│\s+0", first), first
    second = invoke("import", "--db", db)
    assert ": 0 events written" in second
    assert re.search(r"total\s+│\s+0\s+│\s+0\s+│\s+117\s+│\s+0", second), second
    status = invoke("status", "--db", db)
    assert re.search(r"Patient\s+│\s+6", status)
    assert "events: 117" in status
    assert "open conflicts: 0" in status


def test_show_events_and_rebuild(db: str) -> None:
    demo_out = invoke("demo", "--file", db.removeprefix("sqlite:///"))
    patient = re.search(r"identified: (Patient/\w+)", demo_out)
    assert patient is not None
    shown = invoke("show", patient.group(1), "--db", db)
    assert "Santos" in shown
    assert "+16175550199" in shown
    before_rebuild = shown
    timeline = invoke("events", patient.group(1), "--db", db)
    assert "recorded" in timeline
    assert "voice:demo-agent" in timeline
    assert "regraded" in timeline
    assert "sandbox-ehr: synced" in timeline  # the voice fact's sync status at the sink
    assert "rebuilt 118 entities" in invoke("rebuild", "--db", db)  # the call is one more
    assert invoke("show", patient.group(1), "--db", db) == before_rebuild
    past = runner.invoke(app, ["show", patient.group(1), "--db", db, "--as-of", "2020-01-01"])
    assert past.exit_code == 1
    assert "no Patient/" in past.output


def _transaction(*resources: dict[str, object]) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "request": {"method": "POST"}}
                for r in resources
            ],
        }
    )


def test_bad_input_is_refused_with_a_clear_error(db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["import", str(bad), "--db", db])
    assert result.exit_code == 1
    assert "not JSON" in result.output and "bad.json" in result.output
    dangling = tmp_path / "dangling.json"
    dangling.write_bytes(
        _transaction(
            {
                "resourceType": "Appointment",
                "id": "a1",
                "status": "booked",
                "participant": [{"actor": {"reference": "Patient/nobody"}, "status": "accepted"}],
            }
        )
    )
    result = runner.invoke(app, ["import", str(dangling), "--db", db])
    assert result.exit_code == 1
    assert "entry[0]" in result.output and "Appointment.patient" in result.output
    assert "points nowhere" in result.output
    wrong_value = tmp_path / "wrong.json"
    wrong_value.write_bytes(
        _transaction(
            {"resourceType": "Patient", "id": "p1", "name": [{"family": "Ok"}]},
            {"resourceType": "Patient", "id": "p2", "birthDate": "yesterday"},
        )
    )
    errors = tmp_path / "errors.ndjson"
    result = runner.invoke(app, ["import", str(wrong_value), "--db", db, "--errors", str(errors)])
    assert result.exit_code == 1
    assert "entry[1]" in result.output and "Patient.birthDate" in result.output
    assert "yesterday" not in result.output  # values are PHI: never echoed
    assert b"Patient.birthDate" in errors.read_bytes()
    # nothing half-written: the good first record of the transaction was not kept either
    assert "events: 0" in invoke("status", "--db", db)


def test_unknown_entity_and_bad_reference(db: str) -> None:
    invoke("init", "--db", db)
    result = runner.invoke(app, ["show", "Patient/nope", "--db", db])
    assert result.exit_code == 1
    assert "no Patient/nope" in result.output
    result = runner.invoke(app, ["show", "nonsense", "--db", db])
    assert result.exit_code == 2
    assert "not an entity reference" in result.output


def test_show_and_the_outbox_commands_tell_where_a_fact_stands(db: str) -> None:
    """A verified voice fact queued for a sink: ``show`` names its sync status, ``outbox list``
    and ``show`` the item (field names, never values), ``retry`` refuses an item not parked."""

    async def queued() -> tuple[str, str]:
        async with await open_backend(db) as backend:
            model = WorldModel(backend.worldmodel, "default")
            written = await model.write_voice(
                "Patient",
                "p1",
                {"phone.mobile": "+16175550199"},
                level=Level.VOICE_CONFIRMED,
                agent="agent-1",
            )
            fact = written.events[0].id
            judge = Source(kind="review", id="grounding/1")
            await model.regrade("Patient/p1", fact, Level.VERIFIED, by=judge)
            feed = OutboundFeed(
                backend.worldmodel,
                backend.outbox,
                workspace="default",
                sinks=[SinkPolicy(sink="ehr")],
            )
            while (await feed.step()).events:
                pass
            (item,) = (await backend.outbox.of_events("default", [fact]))[fact]
            return fact, item.id

    _, item_id = asyncio.run(queued())
    shown = invoke("show", "Patient/p1", "--db", db)
    assert "sync: phone.mobile: ehr: pending" in shown
    listed = invoke("outbox", "list", "--db", db, "--json")
    (line,) = [orjson.loads(x) for x in listed.splitlines()]
    assert line["id"] == item_id and line["fields"] == ["phone.mobile"]
    assert "+16175550199" not in listed
    assert item_id in invoke("outbox", "show", item_id, "--db", db)
    refused = runner.invoke(app, ["outbox", "retry", item_id, "--db", db, "--operator", "op"])
    assert refused.exit_code == 3 and "conflict" in refused.output
    missing = runner.invoke(app, ["outbox", "show", "nope", "--db", db])
    assert missing.exit_code != 0 and "no outbox item" in missing.output
