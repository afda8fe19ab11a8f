"""The versioned schema: migrations produce the schema the code expects, once, on both
backends."""

from __future__ import annotations

import pytest

from ehrbridge.errors import SchemaError
from ehrbridge.storage import Backend, migrations
from ehrbridge.storage.rows import EVENT_COLUMNS
from tests.conftest import MakeBackend
from tests.integration.storage.raw import backend_name, execute, rows

EXPECTED_TABLES = {
    "events",
    "entities",
    "entity_keys",
    "entity_claims",
    "source_records",
    "open_conflicts",
    "leases",
    "cursors",
    "poll_outcomes",
    "record_versions",
    "request_budgets",
    "api_keys",
    "audit_log",
    "review_items",
    "outbox_items",
    "outbox_attempts",
    "outbox_cursors",
    "outbox_sink_states",
}


async def tables(backend: Backend) -> set[str]:
    if backend_name(backend) == "sqlite":
        found = await rows(backend, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        found = await rows(
            backend,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()",
        )
    return {r[0] for r in found}


async def columns(backend: Backend, table: str) -> list[str]:
    if backend_name(backend) == "sqlite":
        return [r[1] for r in await rows(backend, f"PRAGMA table_info({table})")]
    found = await rows(
        backend,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = "
        f"current_schema() AND table_name = '{table}' ORDER BY ordinal_position",
    )
    return [r[0] for r in found]


async def test_fresh_database_migrates_to_the_latest_schema(backend: Backend) -> None:
    assert await tables(backend) >= EXPECTED_TABLES | {"schema_version"}
    versions = await rows(backend, "SELECT version FROM schema_version ORDER BY version")
    assert [r[0] for r in versions] == [v for v, _ in migrations.migrations(backend_name(backend))]
    # the columns the code reads and writes are the columns the migrations made
    events = await columns(backend, "events")
    assert events[:20] == [c.strip() for c in EVENT_COLUMNS.split(",")]
    assert "tx" in events


async def test_reopening_applies_nothing_twice(make_backend: MakeBackend) -> None:
    for _ in range(3):
        backend = await make_backend()
    ((count,),) = await rows(backend, "SELECT count(*) FROM schema_version")
    assert count == len(migrations.migrations(backend_name(backend)))


async def test_a_newer_database_is_refused(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await execute(backend, "INSERT INTO schema_version VALUES (999, '2030-01-01')")
    with pytest.raises(SchemaError, match="newer"):
        await make_backend()


def test_both_backends_have_the_same_migration_versions() -> None:
    assert [v for v, _ in migrations.migrations("sqlite")] == [
        v for v, _ in migrations.migrations("postgres")
    ]
