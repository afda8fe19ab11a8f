"""Three ``ehrbridge run`` processes on one PostgreSQL database poll one FHIR source: exactly
one polls at a time; when it is killed another takes over, and nothing is missed or duplicated."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import POSTGRES_DSN, new_schema
from tests.fhir_server import MedplumServer

pytestmark = [pytest.mark.postgres, pytest.mark.fhir_server, pytest.mark.slow]
COMMAND = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "run", "--config"]
CONFIG = """\
workspace: clinic
database: {dsn}?options=-csearch_path%3D{schema}
runner: {{lease_ttl: 1s}}
data_sources:
  - id: ehr
    kind: fhir
    base_url: {base_url}
    resources:
      - {{type: Patient, every: 1s}}
"""
FAMILIES = ["Santos", "Okafor", "Lindqvist", "Haddad", "Moreau", "Tanaka", "Kowalski"]


def create_patient(base_url: str, n: int) -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": FAMILIES[n], "given": ["Alex"]}],
        "birthDate": f"19{50 + 7 * n}-0{1 + n}-1{n}",
    }
    response = httpx.post(
        f"{base_url}/Patient", json=patient, headers={"content-type": "application/fhir+json"}
    )
    response.raise_for_status()


@pytest.fixture
def schema() -> Iterator[str]:
    name = new_schema()
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    yield name
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def query(schema: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}")
        return conn.execute(sql.encode()).fetchall()


def count(schema: str, sql: str) -> int:
    """``SELECT count(*) ...``; -1 while the runners have not made the tables yet."""
    try:
        return int(query(schema, sql)[0][0])
    except psycopg.errors.UndefinedTable:
        return -1


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def holder(schema: str) -> str | None:
    rows = query(schema, "SELECT holder FROM leases WHERE expires_at > now()")
    return str(rows[0][0]) if rows else None


def test_exactly_one_of_three_runners_polls_and_a_killed_one_is_replaced(
    medplum: MedplumServer, schema: str, tmp_path: Path
) -> None:
    medplum.reset_sync()
    for n in range(5):
        create_patient(medplum.base_url, n)
    config = tmp_path / "runner.yaml"
    config.write_text(CONFIG.format(dsn=POSTGRES_DSN, schema=schema, base_url=medplum.base_url))
    processes = [
        subprocess.Popen(  # noqa: S603 (fixed arguments)
            [*COMMAND, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    try:
        patients = "SELECT count(*) FROM entities WHERE entity_type = 'Patient'"
        wait_for(lambda: count(schema, patients) == 5)
        first = holder(schema)
        assert first is not None
        victim = next(p for p in processes if first.split("-")[-2] == str(p.pid))
        create_patient(medplum.base_url, 5)
        create_patient(medplum.base_url, 6)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        wait_for(lambda: holder(schema) not in (None, first))
        wait_for(lambda: query(schema, patients)[0][0] == 7)
        events = query(schema, "SELECT count(*) FROM events")[0][0]
        polls = query(schema, "SELECT count(*) FROM poll_outcomes")[0][0]
        wait_for(lambda: query(schema, "SELECT count(*) FROM poll_outcomes")[0][0] >= polls + 3)
        # Re-polls wrote nothing: nothing was imported twice.
        assert query(schema, "SELECT count(*) FROM events")[0][0] == events
        # One poll at a time: the recorded polls never overlap.
        spans = query(schema, "SELECT started_at, finished_at FROM poll_outcomes ORDER BY 1")
        for (_, finished), (started, _) in itertools.pairwise(spans):
            assert started >= finished
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in processes]
    assert sorted(codes) == [-signal.SIGKILL, 0, 0]
