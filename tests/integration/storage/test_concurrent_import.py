"""Any number of ``ehrbridge import`` processes writing one database leave exactly the state one
sequential import of the same files leaves (docs/design.md, "Concurrent writers"): no reference
points to an entity that does not exist, no record has two entities, and every entity's
projected values (with references named by the records they point to) are the same.

Racing importers each pre-assign an entity id to a record new to them; the store keeps the
first writer's, so the loser must translate its references again (``RecordClaimed``)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from ehrbridge.storage import open_backend
from tests.conftest import BACKENDS, POSTGRES_DSN, new_schema
from tests.synthea import patient_bundles
from tests.worldstate import named, references

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()"]


class Database:
    """A fresh database on one backend, and raw reads of it for the checks."""

    def __init__(self, backend: str, path: Path, schema: str) -> None:
        self.backend, self.path, self.schema = backend, path, schema

    @property
    def url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        return f"{POSTGRES_DSN}?options=-csearch_path%3D{self.schema}"

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            with sqlite3.connect(self.path) as conn:
                return conn.execute(sql).fetchall()
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f"SET search_path = {self.schema}".encode())
            return conn.execute(sql.encode()).fetchall()


@pytest.fixture(params=BACKENDS)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Database]]:
    """Two fresh databases on the backend: one for the sequential import, one for the race."""
    backend: str = request.param
    made = [Database(backend, tmp_path / f"db{i}.db", new_schema()) for i in range(2)]
    if backend == "postgres":
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            for db in made:
                conn.execute(f"CREATE SCHEMA {db.schema}".encode())
    yield made
    if backend == "postgres":
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            for db in made:
                conn.execute(f"DROP SCHEMA {db.schema} CASCADE".encode())


def run(*args: str) -> None:
    done = subprocess.run(  # noqa: S603 (our own command line)
        [*CLI, *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def run_at_once(url: str, inputs: list[list[str]]) -> None:
    """One ``ehrbridge import`` process per argument list, all started together."""
    procs = [
        subprocess.Popen(  # noqa: S603 (our own command line)
            [*CLI, "import", "--db", url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in inputs
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]


async def state_of(db: Database) -> dict[str, Any]:
    """What an import left, independent of the entity ids it drew: every entity named by its
    source records, with its projected values and its references named the same way; the
    references that point nowhere; and the number of events."""
    records: dict[tuple[str, str], list[str]] = {}
    for resource_type, external_id, entity_type, entity_id in db.rows(
        "SELECT resource_type, external_id, entity_type, entity_id FROM source_records"
    ):
        records.setdefault((entity_type, entity_id), []).append(f"{resource_type}/{external_id}")
    names = {key: " + ".join(sorted(refs)) for key, refs in records.items()}
    entities = {(t, i) for t, i in db.rows("SELECT entity_type, entity_id FROM entities")}
    dangling = 0
    for (data,) in db.rows("SELECT data FROM events"):
        data = orjson.loads(data) if isinstance(data, str | bytes) else data
        dangling += sum(1 for ref in references(data) if ref not in entities)

    store = (await open_backend(db.url)).worldmodel
    try:
        states = {}
        for key, name in names.items():
            state = await store.get_state("default", *key)
            assert state is not None, f"{key[0]} of {name} has records but no state"
            states[name] = named(state.values, names)
    finally:
        await store.close()
    (events,) = db.rows("SELECT count(*) FROM events")[0]
    return {
        "entities": len(entities),
        "states": states,
        "dangling": dangling,
        "events": events,
    }


def bundles() -> list[Path]:
    """Sixteen patients' bundles, which share some practitioners and organisations (with the
    same content: a record whose copies differ ends as whichever copy came last, and its
    number of events depends on the order, sequential or not)."""
    return patient_bundles()[:16]


@pytest.mark.parametrize("overlap", [False, True], ids=["disjoint", "overlapping"])
async def test_concurrent_imports_leave_the_state_of_a_sequential_import(
    databases: list[Database], overlap: bool
) -> None:
    files = [str(f) for f in bundles()]
    sequential, raced = databases
    run("import", "--db", sequential.url, *files)
    run("init", "--db", raced.url)
    halves = [files[0::2], files[1::2]]
    # Overlapping: the two halves and, beside them, all of it (every record is raced for).
    run_at_once(raced.url, [*halves, files] if overlap else halves)
    await assert_same_state(sequential, raced)


async def test_concurrent_sources_resolve_one_person_to_one_entity(
    databases: list[Database],
) -> None:
    """Two data sources sending the same people at once: each Patient and Practitioner of the
    second is matched (by identifier) to the first's, as when they come one after the other,
    never created twice because both matched before either wrote."""
    files = [str(f) for f in bundles()[:8]]
    sequential, raced = databases
    for source in ("ehr-a", "ehr-b"):
        run("import", "--db", sequential.url, "--source", source, *files)
    run("init", "--db", raced.url)
    run_at_once(raced.url, [["--source", source, *files] for source in ("ehr-a", "ehr-b")])
    expected = await assert_same_state(sequential, raced)
    patients = [name for name in expected["states"] if name.startswith("Patient/")]
    assert patients, "the bundles hold patients"
    assert all(" + " in name for name in patients), "each patient has both sources' records"


async def assert_same_state(sequential: Database, raced: Database) -> dict[str, Any]:
    expected, actual = await state_of(sequential), await state_of(raced)
    assert expected["dangling"] == 0
    assert actual["dangling"] == 0
    assert actual["entities"] == expected["entities"]
    assert actual["states"] == expected["states"]
    assert actual["events"] == expected["events"]
    return expected
