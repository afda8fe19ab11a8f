"""``ehrbridge fhir backfill`` against the sandbox on a real socket: a backfill, a second one that
finds nothing new, a resumed one, and the refusals."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from ehrbridge.cli.main import app
from ehrbridge.sample import sample_bundle
from tests.sandbox_server import SandboxServer

CONFIG = """\
workspace: clinic
database: sqlite:///{db}
data_sources:
  - id: ehr
    kind: fhir
    base_url: {base_url}
    resources:
      - {{type: Practitioner, every: 1h}}
      - {{type: Location, every: 1h}}
      - {{type: Patient, every: 5m}}
      - {{type: Appointment, every: 1m}}
      - {{type: Encounter, every: 5m}}
  - id: inbox
    kind: file_drop
    path: {folder}
    every: 30s
"""


@pytest.fixture
def config(sandbox: SandboxServer, tmp_path: Path) -> Path:
    httpx.post(f"{sandbox.origin}/$reset").raise_for_status()
    loaded = httpx.post(
        sandbox.base_url,
        content=sample_bundle().read_bytes(),
        headers={"Content-Type": "application/fhir+json"},
    )
    loaded.raise_for_status()
    path = tmp_path / "runner.yaml"
    text = CONFIG.format(db=tmp_path / "wm.db", base_url=sandbox.base_url, folder=tmp_path)
    path.write_text(text)
    return path


def backfill(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["fhir", "backfill", *args], env={"COLUMNS": "200"})
    # Rich wraps long lines: compare words.
    return result.exit_code, " ".join(result.output.split())


def patients_in_sample() -> int:
    bundle = orjson.loads(sample_bundle().read_bytes())
    return sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def test_a_backfill_then_one_with_nothing_new(config: Path) -> None:
    code, out = backfill("--config", str(config), "--source", "ehr")
    assert code == 0, out
    assert (
        "complete" in out
        and "cursors: Appointment, Encounter, Location, Patient, Practitioner" in out
    )
    assert "Patient" in out and "total" in out
    assert f"{patients_in_sample():,}" in out

    code, out = backfill("--config", str(config), "--source", "ehr")
    assert code == 0, out
    assert "0 files" in out and "0 resources read" in out

    code, out = backfill("--config", str(config), "--source", "ehr", "--type", "Patient", "--full")
    assert code == 0, out
    assert f"{patients_in_sample()} resources read, 0 events written" in out


def test_refusals_and_failures_say_what_is_wrong(config: Path, sandbox: SandboxServer) -> None:
    code, out = backfill("--config", str(config), "--source", "nope")
    assert code == 2 and "--source nope is not a data source" in out and "fhir: ehr" in out
    code, out = backfill("--config", str(config), "--source", "inbox")
    assert code == 2 and "is not a fhir data source" in out

    sandbox.app.exports.fail_next = 1
    code, out = backfill("--config", str(config), "--source", "ehr")
    assert code == 1
    assert "backfill of ehr failed" in out and "the export failed" in out
    assert "injected export failure" in out and "run the same command again" in out

    # The failed job is forgotten on the server: the next run starts a new one and completes.
    code, out = backfill("--config", str(config), "--source", "ehr")
    assert code == 0, out
    assert "complete" in out


def test_an_unreachable_server_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text(
        CONFIG.format(db=tmp_path / "wm.db", base_url="http://127.0.0.1:9/fhir", folder=tmp_path)
    )
    code, out = backfill("--config", str(path), "--source", "ehr")
    assert code == 1 and "ConnectError" in out


def test_an_invalid_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text("workspace: clinic\n")
    code, out = backfill("--config", str(path), "--source", "ehr")
    assert code == 2 and "database" in out


def test_failed_entries_are_listed_and_written_with_errors(
    config: Path, sandbox: SandboxServer, tmp_path: Path
) -> None:
    # Encounters without their Patients: every entry points nowhere, the backfill is unfinished.
    errors = tmp_path / "errors.ndjson"
    args = ["--config", str(config), "--source", "ehr", "--type", "Encounter"]
    code, out = backfill(*args, "--errors", str(errors))
    assert code == 1
    assert "not complete" in out and "the next backfill imports those files again" in out
    assert "Encounter-1.ndjson: line 1:" in out and "points nowhere" in out
    lines = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert len(lines) == 6 and {line["resourceType"] for line in lines} == {"Encounter"}
    assert all(line["file"].endswith("/Encounter-1.ndjson") for line in lines)
