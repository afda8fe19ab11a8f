"""``ehrbridge run`` killed with SIGKILL in the middle of a poll of the sandbox EHR, then started
again: nothing is missed and nothing is duplicated, against a clean import of the same data."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from ehrbridge.fhir.importer import Importer
from ehrbridge.sandbox.faults import FaultPlan
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.model import WorldModel
from tests.paths import FIXTURES
from tests.sandbox_server import SandboxServer

pytestmark = pytest.mark.slow
COMMAND = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "run", "--config"]
BUNDLES = sorted((FIXTURES / "synthea").glob("*.json"))
TYPES = [
    "Patient",
    "Organization",
    "Practitioner",
    "Encounter",
    "Condition",
    "Procedure",
    "Immunization",
    "DiagnosticReport",
    "Observation",
    "Claim",
    "ExplanationOfBenefit",
]
CONFIG = """\
workspace: clinic
database: sqlite:///{db}
runner: {{lease_ttl: 1s}}
data_sources:
  - id: ehr
    kind: fhir
    base_url: {base_url}
    resources:
{resources}
"""


def config(tmp_path: Path, db: Path, base_url: str) -> Path:
    resources = "\n".join(f"      - {{type: {t}, every: 1s, page_size: 5}}" for t in TYPES)
    path = tmp_path / "runner.yaml"
    path.write_text(CONFIG.format(db=db, base_url=base_url, resources=resources))
    return path


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
        time.sleep(0.05)


def count(db: Path, table: str) -> int:
    return int(str(rows(db, f"SELECT count(*) FROM {table}")[0][0]))


def cursors(db: Path) -> set[str]:
    return {str(r[0]) for r in rows(db, "SELECT resource_type FROM cursors")}


def in_sync(db: Path) -> bool:
    """Every type has a cursor and its newest poll succeeded."""
    newest = rows(
        db,
        "SELECT resource_type, ok FROM poll_outcomes o WHERE id = (SELECT max(id) FROM "
        "poll_outcomes WHERE resource_type = o.resource_type)",
    )
    return cursors(db) >= set(TYPES) and len(newest) == len(TYPES) and all(r[1] for r in newest)


def entity_counts(db: Path) -> dict[str, int]:
    found = rows(db, "SELECT entity_type, count(*) FROM entities GROUP BY 1")
    return {str(t): int(str(n)) for t, n in found}


async def reference_counts(path: Path) -> dict[str, int]:
    """The entities a clean import of the same bundles makes."""
    store = await SQLiteStore.open(path)
    try:
        await Importer(WorldModel(store, "clinic"), source="ehr").import_paths(BUNDLES)
        return (await store.counts("clinic")).entities
    finally:
        await store.close()


def test_a_runner_killed_mid_poll_restarts_with_nothing_missed_or_duplicated(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    httpx.post(f"{sandbox.origin}/$reset").raise_for_status()
    for bundle in BUNDLES:
        response = httpx.post(
            sandbox.base_url,
            content=bundle.read_bytes(),
            headers={"content-type": "application/fhir+json"},
            timeout=60,
        )
        response.raise_for_status()
    # Slow every request, so a poll of many pages is long enough to be killed in.
    sandbox.app.faults.set(FaultPlan(latency=0.05))
    db = tmp_path / "wm.db"
    path = config(tmp_path, db, sandbox.base_url)
    first = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*COMMAND, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # Some types are stored and the Observations' poll is still reading pages.
        wait_for(lambda: bool(cursors(db)) and "Observation" not in cursors(db))
        wait_for(lambda: bool(rows(db, "SELECT 1 FROM events LIMIT 1")))
        assert "Observation" not in cursors(db)
    finally:
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL

    second = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*COMMAND, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: in_sync(db))
        events = count(db, "events")
        polls = count(db, "poll_outcomes")
        wait_for(lambda: count(db, "poll_outcomes") >= polls + len(TYPES))
        # Quiet polls write nothing: nothing is imported twice.
        assert count(db, "events") == events
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=30)
    assert second.returncode == 0, stderr.decode()
    sandbox.app.faults.clear()

    # Nothing missed: every resource of the sandbox was stored once.
    found = rows(db, "SELECT resource_type, count(*) FROM record_versions GROUP BY 1")
    stored = {str(t): int(str(n)) for t, n in found}
    sent = Counter(
        entry["resource"]["resourceType"]
        for bundle in BUNDLES
        for entry in orjson.loads(bundle.read_bytes())["entry"]
        if entry["resource"]["resourceType"] in TYPES
    )
    assert stored == sent
    # Nothing duplicated: the same entities as a clean import, no event written twice.
    assert entity_counts(db) == asyncio.run(reference_counts(tmp_path / "reference.db"))
    twice = rows(
        db,
        "SELECT entity_type, entity_id, content_hash FROM events GROUP BY 1, 2, 3 "
        "HAVING count(*) > 1",
    )
    assert twice == []
