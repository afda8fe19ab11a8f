"""A write and its audit record are one transaction (docs/design.md §11), on both backends.

The invariant: the world model never holds a voice write whose audit record is missing, and the
audit trail never records a write that is not in the world model. Two faults would break it if
the two were stored separately: the process dying between them (an unaudited write) and the
audit insert failing after the write committed (the same). Each test injects one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest

from ehrbridge.api.models import AppointmentBooking, ObservationWrite, TranscriptAttach
from ehrbridge.api.service import AgentService
from ehrbridge.api.store import Principal, SecurityStore
from ehrbridge.audit import WriteAudit
from ehrbridge.errors import StorageError
from ehrbridge.storage import Backend
from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.planner import AppendResult, Submission
from ehrbridge.worldmodel.store import Store

WS = "clinic"
AGENT = Principal(workspace=WS, key_id="key-agent", role="agent")


class ProcessDied(BaseException):
    """The process is gone: nothing after the point it was raised at runs."""


class DiesAfterCommit:
    """A store whose process dies the moment an append has committed."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def append(
        self, workspace: str, items: Sequence[Submission], *, audit: WriteAudit | None = None
    ) -> list[AppendResult]:
        await self.store.append(workspace, items, audit=audit)
        raise ProcessDied

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def refuse_write_audits(store: Store) -> None:
    """Make the database refuse the audit rows of successful voice observations (as a full disk
    or a broken constraint would), and nothing else."""
    if isinstance(store, SQLiteStore):

        def create(conn: sqlite3.Connection) -> None:
            conn.execute(
                "CREATE TEMP TRIGGER refuse_write_audit BEFORE INSERT ON main.audit_log "
                "WHEN NEW.action = 'observations.write' AND NEW.outcome = 'ok' "
                "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
            )

        await store.database.call(create)
        return
    assert isinstance(store, PostgresStore)
    async with store.pool.connection() as conn:
        await conn.execute(
            "CREATE FUNCTION refuse_write_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.action = 'observations.write' AND NEW.outcome = 'ok' THEN "
            "RAISE EXCEPTION 'audit refused'; END IF; RETURN NEW; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER refuse_write_audit BEFORE INSERT ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION refuse_write_audit()"
        )


async def patient(service: AgentService) -> str:
    written = await service.write_observation(
        AGENT,
        ObservationWrite(entity_type="Patient", fields={"name": "Ada Quill"}, level="confirmed"),
    )
    return written.entity.entity_id


async def actions(security: SecurityStore) -> list[tuple[str, str, str | None]]:
    entries = await security.query_audit(WS, limit=1000)
    return [(e.action, e.outcome, e.entity_id) for e in reversed(entries)]


async def test_a_process_dying_right_after_a_write_leaves_it_audited(
    store: Store, backend: Backend
) -> None:
    security = backend.security
    ada = await patient(AgentService.on_store(store, security))
    dying = AgentService.on_store(DiesAfterCommit(store), security)
    before = await actions(security)
    with pytest.raises(ProcessDied):
        await dying.write_observation(
            AGENT,
            ObservationWrite(
                entity_type="Patient", entity_id=ada, fields={"language": "fr"}, level="mentioned"
            ),
        )
    with pytest.raises(ProcessDied):
        await dying.attach_transcript(AGENT, TranscriptAttach(call_id="call-1", transcript="Hi."))
    with pytest.raises(ProcessDied):
        await dying.book_appointment(
            AGENT,
            AppointmentBooking(
                patient_id=ada,
                start="2026-12-01T09:00:00Z",  # type: ignore[arg-type]
                end="2026-12-01T09:30:00Z",  # type: ignore[arg-type]
            ),
        )
    # every write is in the world model, and each has its audit record
    model = WorldModel(store, WS)
    state = await model.state("Patient", ada)
    assert state is not None and state.values["language"] == "fr"
    assert await model.state("Call", "call-1") is not None
    after = (await actions(security))[len(before) :]
    assert [(action, outcome) for action, outcome, _ in after] == [
        ("observations.write", "ok"),
        ("transcripts.attach", "ok"),
        ("appointments.book", "ok"),
    ]
    assert after[0][2] == ada and after[1][2] == "call-1"
    booked = await model.state("Appointment", str(after[2][2]))
    assert booked is not None and booked.fields["patient"].value == f"Patient/{ada}"


async def test_a_write_whose_audit_record_is_refused_is_not_stored(
    store: Store, backend: Backend
) -> None:
    security = backend.security
    service = AgentService.on_store(store, security)
    ada = await patient(service)
    model = WorldModel(store, WS)
    events_before = len(await model.events("Patient", ada))
    await refuse_write_audits(store)
    with pytest.raises(StorageError):
        await service.write_observation(
            AGENT,
            ObservationWrite(
                entity_type="Patient", entity_id=ada, fields={"language": "fr"}, level="mentioned"
            ),
        )
    with pytest.raises(StorageError):
        await service.write_observation(
            AGENT,
            ObservationWrite(entity_type="Patient", fields={"name": "Bo Lind"}, level="mentioned"),
        )
    # nothing of either write is in the world model
    assert len(await model.events("Patient", ada)) == events_before
    state = await model.state("Patient", ada)
    assert state is not None and "language" not in state.values
    counts = await store.counts(WS)
    assert (counts.entities, counts.events) == ({"Patient": 1}, events_before)
    # the refused calls are audited as errors (the refusal was of successful writes only)
    entries = await actions(security)
    assert [(a, o) for a, o, _ in entries[1:]] == [
        ("observations.write", "error"),
        ("observations.write", "error"),
    ]


async def test_a_retried_write_is_audited_once_per_call(store: Store, backend: Backend) -> None:
    """A retry under the same idempotency key writes nothing: its entry is recorded after the
    answer, like a read's, and names the entity the first call wrote."""
    security = backend.security
    service = AgentService.on_store(store, security)
    write = ObservationWrite(
        entity_type="Patient",
        fields={"name": "Cy Dunne"},
        level="mentioned",
        idempotency_key="retry-key-1",
    )
    first = await service.write_observation(AGENT, write)
    again = await service.write_observation(AGENT, write)
    assert (first.status, again.status) == ("recorded", "duplicate")
    entries = list(reversed(await security.query_audit(WS, limit=10)))
    assert [(e.entity_id, e.details["status"]) for e in entries] == [
        (first.entity.entity_id, "recorded"),
        (first.entity.entity_id, "duplicate"),
    ]
