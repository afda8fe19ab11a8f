"""Shared fixtures: a fake clock and the world-model store on every backend (docs/design.md §4)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from uuid import uuid4

import pytest

from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.sqlite import SQLiteStore
from ehrbridge.worldmodel.store import Store

# The ``medplum`` fixture: a real FHIR server for the FHIR client and import tests; the
# ``sandbox`` fixture: the sandbox EHR on a real socket.
pytest_plugins = ["tests.fhir_server", "tests.sandbox_server"]
# Databases written by earlier code, and the script that wrote them (against that code).
collect_ignore = ["fixtures"]

#: The PostgreSQL server the ``postgres`` tests use (CI runs one on 127.0.0.1:5432).
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


#: Opens one more connection (a store object) to the test's database.
MakeStore = Callable[[], Awaitable[Store]]


def new_schema() -> str:
    """A fresh PostgreSQL schema name, so tests never see each other's rows."""
    return f"t_{uuid4().hex[:12]}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[MakeStore]:
    """A factory for stores on one database: every call opens another connection to it.

    SQLite: the same file. PostgreSQL: the same schema, dropped at teardown.
    """
    backend: str = request.param
    schema = new_schema()
    opened: list[Store] = []
    dropper: Callable[[], Awaitable[None]] | None = None

    async def make() -> Store:
        nonlocal dropper
        store: Store
        if backend == "sqlite":
            store = await SQLiteStore.open(tmp_path / "wm.db", clock=clock)
        else:
            # Imported here so the SQLite tests run without the PostgreSQL adapter's imports.
            from ehrbridge.worldmodel.postgres import PostgresStore

            pg = await PostgresStore.open(POSTGRES_DSN, schema=schema, clock=clock)
            if dropper is None:
                dropper = pg.drop_schema
            store = pg
        opened.append(store)
        return store

    yield make
    # Close the extra connections first so dropping the schema waits on nobody.
    for store in reversed(opened[1:]):
        await store.close()
    if dropper is not None:
        await dropper()
    if opened:
        await opened[0].close()


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    """The store under test, on each backend."""
    return await make_store()
