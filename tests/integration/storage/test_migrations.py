"""The versioned schema: migrations produce the schema the code expects, once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ehrbridge.errors import SchemaError
from ehrbridge.worldmodel import migrations
from ehrbridge.worldmodel.sqlite import SQLiteStore
from ehrbridge.worldmodel.store import EVENT_COLUMNS

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
}


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


async def test_fresh_database_migrates_to_the_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = await SQLiteStore.open(path)
    await store.close()
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= EXPECTED_TABLES | {"schema_version"}
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version")] == [
        v for v, _ in migrations.migrations("sqlite")
    ]
    # the columns the code reads and writes are the columns the migrations made
    assert columns(conn, "events")[:20] == [c.strip() for c in EVENT_COLUMNS.split(",")]
    assert "tx" in columns(conn, "events")
    conn.close()


async def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    for _ in range(3):
        store = await SQLiteStore.open(path)
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(
        migrations.migrations("sqlite")
    )
    conn.close()


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = await SQLiteStore.open(path)
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (999, '2030-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="newer"):
        await SQLiteStore.open(path)


def test_both_backends_have_the_same_migration_versions() -> None:
    assert [v for v, _ in migrations.migrations("sqlite")] == [
        v for v, _ in migrations.migrations("postgres")
    ]
