"""What a new user trips over on the command line (issue 10, defect 11): a read never creates a
database, database URLs that are nearly right get a suggestion, the import's summary counts and
words what happened, and ``show`` lists fields in one order on every backend."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from ehrbridge.cli.main import app
from tests.conftest import BACKENDS, POSTGRES_DSN, new_schema

runner = CliRunner()


def invoke(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["show", "Patient/p1"],
        ["events", "Patient/p1"],
        ["patients", "--name", "Reyes"],
        ["rebuild"],
        ["keys", "list"],
        ["audit"],
    ],
)
def test_a_read_refuses_a_missing_sqlite_file_and_creates_none(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "mistyped.db"
    out = invoke(*command, "--db", f"sqlite:///{missing}", code=1)
    assert f"no database at {missing}" in out.replace("\n", "")
    assert not any(tmp_path.iterdir())  # no file, no -wal, no -writer lock


def test_init_and_import_create_the_database(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'new.db'}"
    assert "world model ready at" in invoke("init", "--db", db)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    invoke("import", "--db", other)
    assert "events: 117" in invoke("status", "--db", other)  # the sample clinic and schedules


def test_a_sqlite_url_with_two_slashes_suggests_three(tmp_path: Path) -> None:
    out = invoke("status", "--db", "sqlite://relative.db", code=1)
    assert "sqlite:///relative.db" in out
    assert "unknown database URL scheme" not in out
    out = invoke("keys", "list", "--db", "sqlite://relative.db", code=2)
    assert "sqlite:///relative.db" in out


def test_the_summary_of_a_file_that_could_not_be_read(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = invoke("import", str(bad), "--db", db, code=1)
    assert (
        "imported 0 resources from 1 file in" in out
        and "0 events written; 1 file could not be read" in out
    ), out
    assert "1 resources" not in out and "1 files" not in out


def test_the_summary_counts_what_failed(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    path = tmp_path / "Patient.ndjson"
    good = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Reyes"}]}
    path.write_bytes(orjson.dumps(good) + b"\n\n{broken\n")
    out = invoke("import", str(path), "--db", db, code=1)
    assert "imported 1 of 2 resources from 1 file in" in out, out
    assert "1 event written; 1 resource failed" in out
    assert "Patient.ndjson: line 3: not JSON at column 2" in out


@pytest.fixture(params=BACKENDS)
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each backend (PostgreSQL: a fresh schema, dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    schema = new_schema()
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_DSN}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_show_lists_fields_in_one_order_on_every_backend(any_db: str, tmp_path: Path) -> None:
    resource = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Reyes", "given": ["Ana"]}],
        "gender": "female",
        "birthDate": "1980-02-03",
        "telecom": [{"system": "phone", "value": "+16175550142", "use": "mobile"}],
        "address": [{"line": ["1 Main St"], "city": "Boston", "postalCode": "02110"}],
    }
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(orjson.dumps(resource) + b"\n")
    invoke("import", str(path), "--db", any_db, "--source", "ehr")
    found = re.search(r"(Patient/\w+)", invoke("patients", "--name", "Reyes", "--db", any_db))
    assert found is not None
    shown = invoke("show", found.group(1), "--db", any_db)
    fields = re.findall(r"^│ ([a-z][a-z0-9_.]*)\s+│", shown, flags=re.MULTILINE)
    assert len(fields) >= 5, shown
    assert fields == sorted(fields)
