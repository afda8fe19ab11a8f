"""Two ``ehrbridge run`` processes on one database keep a source's ``budget`` against the sandbox
EHR's requests-per-second limit: 17 resource types, no request refused, every poll ok."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ehrbridge.sandbox.faults import FaultPlan
from tests.sandbox_server import SandboxServer

pytestmark = [pytest.mark.slow]
COMMAND = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "run", "--config"]
TYPES = [
    "Patient", "Practitioner", "Organization", "Location", "Encounter", "Observation",
    "Condition", "Procedure", "MedicationRequest", "Immunization", "AllergyIntolerance",
    "DiagnosticReport", "Appointment", "Coverage", "CarePlan", "Claim", "DocumentReference",
]  # fmt: skip
CONFIG = """\
workspace: clinic
database: sqlite:///{db}
data_sources:
  - id: ehr
    kind: fhir
    base_url: {base_url}
    budget: {{rate: 3/s, concurrency: 2}}
    resources:
{resources}
"""


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the runner has not made the tables yet
        return []


def wait_for(condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def every_type_polled(db: Path) -> bool:
    done = rows(db, "SELECT DISTINCT resource_type FROM poll_outcomes")
    return {str(r[0]) for r in done} >= set(TYPES)


def test_two_runner_processes_keep_the_sources_budget(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    httpx.post(f"{sandbox.origin}/$reset").raise_for_status()
    # The sandbox admits 4 a second; the source's budget is 3 (a real EHR's limit, with margin).
    sandbox.app.faults.set(FaultPlan(rate_limit=4))
    db = tmp_path / "wm.db"
    resources = "\n".join(f"      - {{type: {t}, every: 1s}}" for t in TYPES)
    config = tmp_path / "runner.yaml"
    config.write_text(CONFIG.format(db=db, base_url=sandbox.base_url, resources=resources))
    runners = [
        subprocess.Popen(  # noqa: S603 (fixed arguments)
            [*COMMAND, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    try:
        wait_for(lambda: every_type_polled(db) or any(r.poll() is not None for r in runners))
        assert all(r.poll() is None for r in runners), "a runner stopped"
    finally:
        for runner in runners:
            runner.send_signal(signal.SIGTERM)
        errors = [runner.communicate(timeout=30)[1].decode() for runner in runners]
    assert [r.returncode for r in runners] == [0, 0], errors
    assert sandbox.app.faults.injected["rate_limit"] == 0
    assert rows(db, "SELECT count(*) FROM poll_outcomes WHERE NOT ok") == [(0,)]
    sandbox.app.faults.clear()
