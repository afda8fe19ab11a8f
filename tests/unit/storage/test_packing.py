"""The packed stored forms of ledgers and states: they load back equal to what was packed, and the
plain forms written before them still load (and keep working once appended to)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrbridge.storage.packing import pack_ledger, pack_state, unpack_ledger, unpack_state
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.events import Event, EventType, Observation, RecordKey, Source
from ehrbridge.worldmodel.projection import Ledger, project, replay

WS = "clinic"
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ZONES = (UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=2)))
SOURCES = (
    Source(kind="ehr", id="ehr-a", ref="Patient/1"),
    Source(kind="ehr", id="ehr-b", ref="Patient/2"),
    Source(kind="voice", id="agent"),
)


def _through_json(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    """A random log of one entity: assertions (with removals), re-grades and corrections, at
    times in several UTC offsets (two events may share an instant in different offsets)."""
    out: list[Event] = []
    for seq in range(1, draw(st.integers(1, 8)) + 1):
        minutes = draw(st.integers(0, 30))
        zone = draw(st.sampled_from(ZONES))
        kinds = [EventType.RECORDED] + ([EventType.REGRADED, EventType.CORRECTED] if out else [])
        kind = draw(st.sampled_from(kinds))
        data: dict[str, Any]
        if kind is EventType.REGRADED:
            data = {"target": draw(st.sampled_from(out)).id}
            fields: tuple[str, ...] = ()
        else:
            data = draw(
                st.dictionaries(
                    st.sampled_from(("phone", "name.family", "mrn")),
                    st.one_of(st.none(), st.sampled_from(["a", "b"]), st.integers(0, 3)),
                    min_size=1,
                )
            )
            fields = tuple(data)
        out.append(
            Event(
                id=f"e{seq:03d}",
                seq=seq,
                tx=0,
                version=seq,
                workspace=WS,
                entity_type="Patient",
                entity_id="p1",
                event_type=kind,
                data=data,
                fields=fields,
                source=draw(st.sampled_from(SOURCES)),
                confidence=draw(st.sampled_from([0.0, 0.3, 0.8, 1.0])),
                effective_at=(START + timedelta(minutes=minutes)).astimezone(zone),
                recorded_at=(START + timedelta(minutes=seq)).astimezone(zone),
                content_hash="",
                supersedes=out[-1].id if kind is EventType.CORRECTED else None,
            )
        )
    return out


def _ledger(log: list[Event]) -> Ledger:
    ledger = replay("Patient", "p1", log)
    # An absorbed member's assertions keep their own origin.
    member = replay("Patient", "m1", [e for e in log if e.seq % 2])
    ledger.absorb(member)
    return ledger


@settings(max_examples=150, deadline=None)
@given(log=events())
def test_packed_forms_load_back_equal(log: list[Event]) -> None:
    ledger = _ledger(log)
    again = unpack_ledger(_through_json(pack_ledger(ledger)))
    assert again == ledger
    for a, b in zip(
        (a for items in again.assertions.values() for a in items),
        (a for items in ledger.assertions.values() for a in items),
        strict=True,
    ):
        assert a.effective_at.utcoffset() == b.effective_at.utcoffset()
    state = ledger.state(WS)
    assert unpack_state(WS, _through_json(pack_state(state))) == state
    assert again.state(WS) == state


@settings(max_examples=50, deadline=None)
@given(log=events())
def test_plain_forms_still_load(log: list[Event]) -> None:
    ledger = _ledger(log)
    assert unpack_ledger(_through_json(ledger.as_json())) == ledger
    state = ledger.state(WS)
    assert unpack_state(WS, _through_json(state.as_json())) == state


async def test_rows_in_the_plain_form_keep_working(tmp_path: Path) -> None:
    """A database written before the packed forms: its rows load, and are packed when the
    entity next changes."""
    path = tmp_path / "old.db"
    record = RecordKey(data_source="ehr", resource_type="Patient", external_id="1")

    def observation(phone: str, minute: int) -> Observation:
        return Observation(
            workspace=WS,
            record=record,
            entity_type="Patient",
            entity_id="p1",
            data={"phone": phone, "name.family": "Doe"},
            effective_at=START + timedelta(minutes=minute),
        )

    store = await SQLiteStore.open(path)
    await store.append(WS, [observation("+16175550101", 0)])
    before = await store.get_state(WS, "Patient", "p1")
    (raw,) = await store.read_entity(WS, "Patient", "p1")
    await store.close()
    assert before is not None

    plain = replay("Patient", "p1", [raw])
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "UPDATE entities SET ledger = ?, state = ? WHERE entity_id = 'p1'",
            (orjson.dumps(plain.as_json()), orjson.dumps(before.as_json()).decode()),
        )
    store = await SQLiteStore.open(path)
    try:
        assert await store.get_state(WS, "Patient", "p1") == before
        await store.append(WS, [observation("+16175550102", 5)])
        after = await store.get_state(WS, "Patient", "p1")
        assert after is not None and after.values["phone"] == "+16175550102"
        assert after.fields["name.family"] == before.fields["name.family"]
        await store.rebuild(WS)
        assert await store.get_state(WS, "Patient", "p1") == after
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:
        (ledger_raw,) = conn.execute("SELECT ledger FROM entities").fetchone()
    assert orjson.loads(ledger_raw)["v"] == 2


@settings(max_examples=150, deadline=None)
@given(log=events())
def test_ledger_state_equals_the_specification(log: list[Event]) -> None:
    """The ledger's shortcut for fields asserted once agrees with :func:`project` (the logs
    here mix fields asserted once with fields asserted again, removed, re-graded, corrected)."""
    state = replay("Patient", "p1", log).state(WS)
    spec = project(log, WS)
    assert spec is not None
    assert (state.fields, state.pending) == (spec.fields, spec.pending)
