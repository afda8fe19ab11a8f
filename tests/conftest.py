"""Shared fixtures: a fake clock, and every storage port on every backend (docs/design.md §4)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from uuid import uuid4

import pytest

from ehrbridge.storage import Backend, open_backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.storage.security import KeyCache
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.store import Store

# The ``medplum`` fixture: a real FHIR server for the FHIR client and import tests; the
# ``sandbox`` fixture: the sandbox EHR on a real socket.
pytest_plugins = ["tests.fhir_server", "tests.sandbox_server", "tests.llmserver"]
# Databases written by earlier code, and the script that wrote them (against that code).
collect_ignore = ["fixtures"]

#: The PostgreSQL server the ``postgres`` tests use (CI runs one on 127.0.0.1:5432).
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


class MakeBackend(Protocol):
    """Opens one more connection (every port, a :class:`Backend`) to the test's database."""

    def __call__(self, *, key_cache: KeyCache | None = None) -> Awaitable[Backend]: ...


#: Opens one more connection (a world-model store) to the test's database.
MakeStore = Callable[[], Awaitable[Store]]


def new_schema() -> str:
    """A fresh PostgreSQL schema name, so tests never see each other's rows."""
    return f"t_{uuid4().hex[:12]}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
async def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[MakeBackend]:
    """A factory for backends on one database: every call opens another connection to it.

    SQLite: the same file. PostgreSQL: the same schema, dropped at teardown.
    """
    url = f"sqlite:///{tmp_path / 'wm.db'}" if request.param == "sqlite" else POSTGRES_DSN
    options: dict[str, Any] = {} if request.param == "sqlite" else {"schema": new_schema()}
    opened: list[Backend] = []

    async def make(*, key_cache: KeyCache | None = None) -> Backend:
        backend = await open_backend(url, clock=clock, key_cache=key_cache, **options)
        opened.append(backend)
        return backend

    yield make
    # Close the extra connections first so dropping the schema waits on nobody.
    for backend in reversed(opened[1:]):
        await backend.close()
    if opened:
        first = opened[0].worldmodel
        if isinstance(first, PostgresStore):
            await first.drop_schema()
        await opened[0].close()


@pytest.fixture
async def backend(make_backend: MakeBackend) -> Backend:
    """Every port under test, on each backend."""
    return await make_backend()


@pytest.fixture
def make_store(make_backend: MakeBackend) -> MakeStore:
    """A factory for world-model stores on one database (see :func:`make_backend`)."""

    async def make() -> Store:
        return (await make_backend()).worldmodel

    return make


@pytest.fixture
def store(backend: Backend) -> Store:
    """The world-model store under test, on each backend."""
    return backend.worldmodel
