"""Databases written before the storage layer moved (``tests/fixtures/storage``, schema version 6,
written by ``make_fixtures.py`` at commit 0c15e43) open with today's code on both backends: the
migration history is kept, the later migrations apply, every row reads back as it was written,
and the database takes new writes of every port."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ehrbridge.audit import AuditEntry
from ehrbridge.confidence import Level
from ehrbridge.outbound.outbox import NewItem, item_key
from ehrbridge.review.queue import Flag
from ehrbridge.storage import Backend, migrations, open_backend
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel
from tests.conftest import BACKENDS, POSTGRES_DSN, new_schema
from tests.integration.storage.raw import rows
from tests.paths import FIXTURES

HERE = FIXTURES / "storage"
SECRETS = json.loads((HERE / "secrets.json").read_text(encoding="utf-8"))
#: the schema the PostgreSQL dump was taken from (renamed on loading)
DUMPED_SCHEMA = "storage_fixture"
WS = "clinic"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def load_dump(schema: str) -> None:
    """Load the PostgreSQL fixture into ``schema`` as ``psql`` would, without meta-commands."""
    lines = (HERE / "v6-postgres.sql").read_text(encoding="utf-8").splitlines()
    script = "\n".join(line for line in lines if not line.startswith("\\"))
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(script.replace(DUMPED_SCHEMA, schema).encode())


@pytest.fixture(params=BACKENDS)
async def written(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Backend]]:
    """(backend name, every port on a copy of that backend's fixture)."""
    if request.param == "sqlite":
        copy = tmp_path / "v6.sqlite"
        shutil.copy(HERE / "v6.sqlite", copy)
        async with await open_backend(f"sqlite:///{copy}") as backend:
            yield "sqlite", backend
        return
    schema = new_schema()
    load_dump(schema)
    try:
        async with await open_backend(POSTGRES_DSN, schema=schema) as backend:
            yield "postgres", backend
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def patient_key(external_id: str) -> RecordKey:
    return RecordKey(data_source="ehr", resource_type="Patient", external_id=external_id)


async def test_the_migration_history_is_kept_and_the_later_migrations_applied(
    written: tuple[str, Backend],
) -> None:
    name, backend = written
    versions = await rows(backend, "SELECT version FROM schema_version ORDER BY version")
    # the six versions written then, each once, and every later one applied by the opening
    assert [r[0] for r in versions] == [v for v, _ in migrations.migrations(name)]
    assert [r[0] for r in versions][:6] == [1, 2, 3, 4, 5, 6]
    assert migrations.latest(name) > 6


async def test_the_world_model_reads_back_as_written(written: tuple[str, Backend]) -> None:
    _, backend = written
    model = WorldModel(backend.worldmodel, WS)
    found = await backend.worldmodel.record_entities(
        WS, [patient_key("p-1"), patient_key("p-2"), patient_key("p-3")]
    )
    assert len(found) == 3
    maria = found[patient_key("p-1")][1]
    state = await model.state("Patient", maria)
    assert state is not None and state.version == 3
    assert state.values["name.family"] == "Santos-Lee"
    assert state.values["language"] == "es"
    assert state.fields["language"].confidence == 0.5
    events = await model.events("Patient", maria)
    assert [e.version for e in events] == [1, 2, 3]
    assert events[2].idempotency_key == "voice-1" and events[2].evidence == {"span": [3, 9]}
    counts = await backend.worldmodel.counts(WS)
    assert counts.entities == {"Appointment": 1, "Patient": 3} and counts.events == 6
    # the projections rebuilt from the log are the ones stored
    before = {i: await model.state("Patient", i) for _, i in found.values()}
    assert await backend.worldmodel.rebuild(WS) == 4
    assert {i: await model.state("Patient", i) for _, i in found.values()} == before


async def test_the_runner_state_reads_back_as_written(written: tuple[str, Backend]) -> None:
    _, backend = written
    runner = backend.runner
    held = await runner.holder(WS, "poll:ehr")
    assert held is not None and held.holder == "runner-1"
    assert await runner.get_cursor(WS, "ehr", "Patient") == "2026-11-20T09:30:00+00:00"
    versions = await runner.known_versions(WS, "ehr", "Patient", ["p-1", "p-2", "p-3"])
    assert versions == {"p-1": "2", "p-2": "1"}
    outcomes = await runner.recent_outcomes(WS)
    assert {(o.resource_type, o.ok) for o in outcomes} == {("Patient", True), ("Encounter", False)}
    failed = next(o for o in outcomes if not o.ok)
    assert failed.error == "FhirUnavailable: the server answered 503"
    # the pause written then has long passed: a slot is free now, and the next one is not
    assert await runner.take_slot(WS, "source:ehr", timedelta(hours=1)) == timedelta(0)
    assert await runner.take_slot(WS, "source:ehr", timedelta(hours=1)) > timedelta(0)


async def test_keys_and_the_audit_trail_read_back_as_written(written: tuple[str, Backend]) -> None:
    name, backend = written
    security = backend.security
    admin = await security.authenticate(SECRETS[name])
    assert admin is not None and admin.role == "admin" and admin.name == "ops"
    keys = await security.list_keys(WS)
    assert [(k.name, k.role, k.revoked_at is not None) for k in keys] == [
        ("front desk bot", "agent", True),
        ("ops", "admin", False),
    ]
    entries = await security.query_audit(WS)
    assert [(e.action, e.key_id == "cli", e.phi) for e in entries] == [
        ("keys.list", True, False),
        ("ambient.context", False, True),
    ]
    assert entries[1].at == T0 and entries[1].details == {"channel": "http"}


async def test_every_port_takes_new_writes(written: tuple[str, Backend]) -> None:
    _, backend = written
    model = WorldModel(backend.worldmodel, WS)
    found = await backend.worldmodel.record_entities(WS, [patient_key("p-2")])
    diaz = found[patient_key("p-2")][1]
    result = await model.write_voice(
        "Patient", diaz, {"language": "pt"}, level=Level.VOICE_CONFIRMED, agent="agent-2"
    )
    assert [e.version for e in result.events] == [2]
    await backend.runner.set_cursor(WS, "ehr", "Encounter", "2026-12-01T00:00:00+00:00")
    assert await backend.runner.get_cursor(WS, "ehr", "Encounter") == "2026-12-01T00:00:00+00:00"
    secret, _ = await backend.security.create_key(WS, "operator", name="reviewer")
    assert await backend.security.authenticate(secret) is not None
    entry = AuditEntry(workspace=WS, at=T0, key_id="cli", role="admin", action="keys.create")
    await backend.security.record_audit([entry])
    assert len(await backend.security.query_audit(WS)) == 3
    # and the ports added since (the review queue's table came with migration 7, the
    # outbox's with migration 8)
    flag = Flag(entity_type="Patient", entity_id=diaz, event_id=result.events[0].id, reason="x")
    item = await backend.review.flag(WS, flag)
    assert await backend.review.item(WS, item.item_id) == item
    fact = result.events[0].id
    queued = NewItem(
        sink="ehr",
        key=item_key("ehr", fact),
        lane=f"Patient/{diaz}",
        entity_type="Patient",
        entity_id=diaz,
        event_id=fact,
        operation="upsert",
        payload={"fields": {"language": "pt"}},
    )
    (stored,) = await backend.outbox.enqueue(WS, [queued])
    (claim,) = await backend.outbox.claim(WS, "ehr", "w1", limit=5, lease=timedelta(minutes=1))
    assert claim.item.id == stored.id and claim.epoch == 1
