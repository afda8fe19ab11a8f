"""The storage contract (docs/design.md §4, §5.5, §5.7), proved on SQLite and PostgreSQL alike.

Every test takes the ``store`` (or ``make_store``) fixture, which is parametrised over both
backends in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from ehrbridge.errors import ConcurrencyError, IdempotencyConflict, InvalidEvent, RecordClaimed
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel import projection
from ehrbridge.worldmodel.events import Event, EventType, NewEvent, Observation, RecordKey, Source
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import START, Counts, LogPosition, Store
from tests.conftest import MakeStore

WS = "clinic"
T9 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PHONE_A = "+16175550142"
PHONE_B = "+16175550177"
VOICE = Source(kind="voice", id="agent-1")
EMPTY = Counts(entities={}, events=0, open_conflicts=0)


def say(
    data: Mapping[str, Any],
    *,
    entity_id: str = "p1",
    workspace: str = WS,
    entity_type: str = "Patient",
    confidence: float = 0.5,
    effective_at: datetime = T9,
    **extra: Any,
) -> NewEvent:
    """A voice assertion about a patient."""
    return NewEvent(
        workspace=workspace,
        entity_type=entity_type,
        entity_id=entity_id,
        data=data,
        source=VOICE,
        confidence=confidence,
        effective_at=effective_at,
        **extra,
    )


def snapshot(
    data: Mapping[str, Any],
    *,
    external_id: str = "123",
    data_source: str = "ehr",
    entity_type: str = "Patient",
    workspace: str = WS,
    effective_at: datetime = T9,
    entity_id: str | None = None,
) -> Observation:
    """An EHR's full snapshot of one record."""
    return Observation(
        workspace=workspace,
        record=RecordKey(
            data_source=data_source, resource_type=entity_type, external_id=external_id
        ),
        entity_type=entity_type,
        entity_id=entity_id,
        data=data,
        effective_at=effective_at,
    )


async def read_whole_log(store: Store, workspace: str = WS, limit: int = 1000) -> list[Event]:
    events: list[Event] = []
    position = START
    while True:
        page = await store.read_log(workspace, position, limit)
        if not page.events:
            return events
        events += page.events
        position = page.position


# --- append and read ---------------------------------------------------------------------------


async def test_append_and_read_by_entity(store: Store, clock: FakeClock) -> None:
    first = await store.append(WS, [say({"phone.mobile": PHONE_A, "name.family": "Diaz"})])
    clock.advance()
    second = await store.append(WS, [say({"language": "es"}, evidence={"span": [3, 9]})])
    await store.append(WS, [say({"phone.mobile": PHONE_B}, entity_id="p2")])

    assert [r.status for r in first + second] == ["recorded", "recorded"]
    events = await store.read_entity(WS, "Patient", "p1")
    assert [e.id for e in events] == [first[0].events[0].id, second[0].events[0].id]
    assert [e.version for e in events] == [1, 2]
    assert events[0].seq < events[1].seq
    assert events[0].data == {"phone.mobile": PHONE_A, "name.family": "Diaz"}
    assert set(events[0].fields) == {"phone.mobile", "name.family"}
    assert events[0].source == VOICE
    assert events[0].confidence == 0.5
    assert events[0].effective_at == T9
    assert events[0].recorded_at == clock.now - timedelta(minutes=1)
    assert events[1].recorded_at == clock.now
    assert events[1].evidence == {"span": [3, 9]}
    # What comes back is what the append said it wrote (tx is checked on its own below).
    assert [replace(e, tx=0) for e in events] == [
        replace(first[0].events[0], tx=0),
        replace(second[0].events[0], tx=0),
    ]

    state = await store.get_state(WS, "Patient", "p1")
    assert state is not None
    assert state.version == 2
    assert state.values == {"phone.mobile": PHONE_A, "name.family": "Diaz", "language": "es"}
    assert await store.get_state(WS, "Patient", "nobody") is None
    assert await store.read_entity(WS, "Patient", "nobody") == []
    assert await store.counts(WS) == Counts(entities={"Patient": 2}, events=3, open_conflicts=0)


async def test_append_returns_the_events_as_stored(store: Store) -> None:
    """The events an append returns are the stored ones, log position (tx, seq) included, so a
    caller can hand them on without re-reading."""
    results = await store.append(WS, [say({"language": "es"}), say({"language": "fr"})])
    returned = [e for r in results for e in r.events]
    stored = await store.read_entity(WS, "Patient", "p1")
    assert [(e.id, e.seq) for e in returned] == [(e.id, e.seq) for e in stored]
    assert [e.tx for e in returned] == [e.tx for e in stored], (
        "append returned events with another tx than the stored ones"
    )
    assert returned == stored


async def test_an_event_is_read_by_its_id_in_its_own_workspace_only(store: Store) -> None:
    (result,) = await store.append(WS, [say({"language": "es"}, evidence={"turn": 3})])
    (written,) = result.events
    assert await store.get_event(WS, written.id) == written
    assert await store.get_event("other", written.id) is None
    assert await store.get_event(WS, "no-such-event") is None


async def test_log_is_read_in_order_with_paging(store: Store, clock: FakeClock) -> None:
    written: list[str] = []
    for i in range(7):
        clock.advance()
        results = await store.append(WS, [say({"language": f"l{i}"}, entity_id=f"p{i % 3}")])
        written += [e.id for e in results[0].events]

    pages: list[list[Event]] = []
    position = START
    while True:
        page = await store.read_log(WS, position, limit=3)
        if not page.events:
            assert page.position == position  # an empty page leaves the reader where it was
            break
        pages.append(page.events)
        assert page.position == LogPosition(tx=page.events[-1].tx, seq=page.events[-1].seq)
        assert page.position > position
        position = page.position

    assert [len(p) for p in pages] == [3, 3, 1]
    read = [e for p in pages for e in p]
    assert [e.id for e in read] == written
    assert [e.seq for e in read] == sorted(e.seq for e in read)
    assert len({e.seq for e in read}) == 7
    # Reading on from the end finds nothing until something new is written.
    assert (await store.read_log(WS, position)).events == []
    more = await store.append(WS, [say({"language": "xx"})])
    page = await store.read_log(WS, position)
    assert [e.id for e in page.events] == [more[0].events[0].id]


async def test_a_log_read_of_some_entity_types(store: Store) -> None:
    """Only events of the types asked for, in log order; a page that is not full moves past the
    other types' events, so they are never looked at again."""
    written: dict[str, list[str]] = {"Patient": [], "Slot": [], "Schedule": []}
    for i in range(9):
        entity_type = ("Patient", "Slot", "Patient", "Schedule")[i % 4]
        (result,) = await store.append(WS, [say({"n": i}, entity_type=entity_type)])
        written[entity_type] += [e.id for e in result.events]
    wanted = {"Slot", "Schedule"}
    pages, position = [], START
    while True:
        page = await store.read_log(WS, position, limit=2, entity_types=wanted)
        assert page.position >= position
        position = page.position
        if not page.events:
            break
        pages.append([(e.entity_type, e.id) for e in page.events])
    read = [event for page in pages for event in page]
    assert {t for t, _ in read} == wanted
    assert sorted(i for _, i in read) == sorted(written["Slot"] + written["Schedule"])
    assert [len(p) for p in pages] == [2, 2]
    # The reader stands after the newest event, a Patient's, and reads on from there.
    newest = (await read_whole_log(store))[-1]
    assert newest.entity_type == "Patient"
    assert position == LogPosition(tx=newest.tx, seq=newest.seq)
    await store.append(WS, [say({"n": 10})])
    (slot,) = await store.append(WS, [say({"n": 11}, entity_type="Slot")])
    page = await store.read_log(WS, position, entity_types=wanted)
    assert [e.id for e in page.events] == [e.id for e in slot.events]
    assert (await store.read_log("nobody", START, entity_types=wanted)).events == []
    assert (await store.read_log(WS, START, entity_types=set())).events == []


# --- optimistic concurrency --------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2])
async def test_two_writers_same_expected_version_one_wins(
    make_store: MakeStore, version: int
) -> None:
    one = await make_store()
    two = await make_store()
    for i in range(version):
        await one.append(WS, [say({"language": f"l{i}"})])
    seen = [await s.get_state(WS, "Patient", "p1") for s in (one, two)]
    assert [s.version if s else 0 for s in seen] == [version, version]

    outcomes = await asyncio.gather(
        one.append(WS, [say({"phone.mobile": PHONE_A}, expected_version=version)]),
        two.append(WS, [say({"phone.mobile": PHONE_B}, expected_version=version)]),
        return_exceptions=True,
    )

    won = [o for o in outcomes if isinstance(o, list)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1, outcomes
    assert len(lost) == 1, outcomes
    error = lost[0]
    assert isinstance(error, ConcurrencyError), repr(error)
    assert error.entity == "Patient/p1", f"the error must name the entity, not {error.entity!r}"
    assert error.expected == version
    state = await one.get_state(WS, "Patient", "p1")
    assert state is not None
    assert state.version == version + 1
    winner = won[0]
    assert state.fields["phone.mobile"].event_id == winner[0].events[0].id
    assert (await one.counts(WS)).events == version + 1


async def test_stale_expected_version_is_refused(store: Store) -> None:
    await store.append(WS, [say({"language": "es"})])
    await store.append(WS, [say({"language": "en"})])
    with pytest.raises(ConcurrencyError) as caught:
        await store.append(WS, [say({"language": "fr"}, expected_version=1)])
    assert (caught.value.entity, caught.value.expected, caught.value.actual) == ("Patient/p1", 1, 2)
    ok = await store.append(WS, [say({"language": "fr"}, expected_version=2)])
    assert ok[0].events[0].version == 3


async def test_concurrent_unconditional_writers_lose_nothing(make_store: MakeStore) -> None:
    stores = [await make_store() for _ in range(3)]
    await stores[0].append(WS, [say({"language": "es"})])

    await asyncio.gather(
        *(s.append(WS, [say({"note": f"{i}-{j}"})]) for i, s in enumerate(stores) for j in range(4))
    )

    events = await stores[1].read_entity(WS, "Patient", "p1")
    assert [e.version for e in events] == list(range(1, 14))
    state = await stores[2].get_state(WS, "Patient", "p1")
    assert state is not None
    assert state.version == 13


async def test_concurrent_first_observations_of_a_record_make_one_entity(
    make_store: MakeStore,
) -> None:
    """Same source + same external id -> same entity, always (docs/design.md §5.5), even when two
    runners see a new record at the same moment."""
    one = await make_store()
    two = await make_store()
    for n in range(10):
        obs = snapshot({"name.family": "Diaz", "language": "es"}, external_id=f"r{n}")
        outcomes = await asyncio.gather(
            one.append(WS, [obs]), two.append(WS, [obs]), return_exceptions=True
        )
        ids = set()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, ConcurrencyError), repr(outcome)
            else:
                ids.add(outcome[0].entity_id)
        assert len(ids) == 1, f"record r{n} became {len(ids)} entities: {outcomes}"
        record = await one.get_record(WS, obs.record)
        assert record is not None
        assert record.entity_id in ids
    assert (await one.counts(WS)).entities == {"Patient": 10}


# --- idempotency -------------------------------------------------------------------------------


async def test_same_idempotency_key_twice_records_one_event(store: Store, clock: FakeClock) -> None:
    event = say({"phone.mobile": PHONE_B}, idempotency_key="call-7:turn-3")
    first = await store.append(WS, [event])
    clock.advance()
    second = await store.append(WS, [event])

    assert first[0].status == "recorded"
    assert second[0].status == "duplicate"
    assert [e.id for e in second[0].events] == [e.id for e in first[0].events]
    assert (await store.counts(WS)).events == 1
    assert len(await store.read_entity(WS, "Patient", "p1")) == 1


async def test_same_idempotency_key_in_one_batch_records_one_event(store: Store) -> None:
    event = say({"phone.mobile": PHONE_B}, idempotency_key="k1")
    results = await store.append(WS, [event, event])
    assert [r.status for r in results] == ["recorded", "duplicate"]
    assert (await store.counts(WS)).events == 1


async def test_same_idempotency_key_with_other_content_is_refused(store: Store) -> None:
    await store.append(WS, [say({"phone.mobile": PHONE_B}, idempotency_key="k1")])
    with pytest.raises(IdempotencyConflict) as caught:
        await store.append(WS, [say({"phone.mobile": PHONE_A}, idempotency_key="k1")])
    assert caught.value.key == "k1"
    assert (await store.counts(WS)).events == 1
    state = await store.get_state(WS, "Patient", "p1")
    assert state is not None
    assert state.values["phone.mobile"] == PHONE_B


async def test_idempotency_keys_are_per_workspace(store: Store) -> None:
    await store.append(WS, [say({"language": "es"}, idempotency_key="k1")])
    other = await store.append(
        "other", [say({"language": "es"}, workspace="other", idempotency_key="k1")]
    )
    assert other[0].status == "recorded"


# --- workspaces --------------------------------------------------------------------------------


async def test_workspaces_are_isolated(store: Store) -> None:
    await store.append(
        "a",
        [
            snapshot({"phone.mobile": PHONE_A}, workspace="a", data_source="ehr-1", entity_id="p1"),
            snapshot(
                {"phone.mobile": PHONE_B},
                workspace="a",
                data_source="ehr-2",
                entity_id="p1",
                effective_at=T9 + timedelta(minutes=5),
            ),
            say({"language": "es"}, workspace="a", entity_id="p2"),
        ],
    )
    a_counts = await store.counts("a")
    assert a_counts.entities == {"Patient": 2}
    assert a_counts.open_conflicts == 1  # two EHRs disagree within the window
    assert len(await store.conflicts("a")) == 1
    assert len(await store.find("a", f"phone:{PHONE_B}")) == 1

    assert await store.counts("b") == EMPTY
    assert await store.read_entity("b", "Patient", "p1") == []
    assert await store.get_state("b", "Patient", "p1") is None
    assert await store.find("b", f"phone:{PHONE_B}") == []
    assert await store.conflicts("b") == []
    assert await store.conflicts("b", "Patient", "p1") == []
    assert (await store.read_log("b", START)).events == []
    assert (
        await store.get_record(
            "b", RecordKey(data_source="ehr-1", resource_type="Patient", external_id="123")
        )
        is None
    )

    # The same entity id in "b" is another entity.
    await store.append("b", [say({"language": "fr"}, workspace="b", entity_id="p2")])
    b_state = await store.get_state("b", "Patient", "p2")
    a_state = await store.get_state("a", "Patient", "p2")
    assert b_state is not None
    assert a_state is not None
    assert (b_state.values, b_state.version) == ({"language": "fr"}, 1)
    assert (a_state.values, a_state.version) == ({"language": "es"}, 1)
    assert sorted(await store.workspaces()) == ["a", "b"]


@pytest.mark.parametrize("kind", ["event", "observation"])
async def test_event_of_another_workspace_is_refused(store: Store, kind: str) -> None:
    item = (
        say({"language": "es"}, workspace="a")
        if kind == "event"
        else snapshot({"language": "es"}, workspace="a")
    )
    with pytest.raises(InvalidEvent) as caught:
        await store.append("b", [item])
    assert caught.value.field == "workspace"
    assert await store.counts("a") == EMPTY
    assert await store.counts("b") == EMPTY


# --- atomicity and validation ------------------------------------------------------------------


async def test_a_batch_with_an_invalid_item_writes_nothing(store: Store) -> None:
    await store.append(WS, [say({"language": "es"}, entity_id="p0")])
    before = await store.counts(WS)
    obs = snapshot({"name.family": "Diaz"}, external_id="new")
    batch: list[NewEvent | Observation] = [
        say({"language": "fr"}, entity_id="p0"),
        obs,
        say({"language": "en"}, entity_id="p9", confidence=1.5),
    ]
    with pytest.raises(InvalidEvent) as caught:
        await store.append(WS, batch)
    assert caught.value.field == "confidence"
    assert await store.counts(WS) == before
    assert await store.get_record(WS, obs.record) is None
    assert await store.get_state(WS, "Patient", "p9") is None
    state = await store.get_state(WS, "Patient", "p0")
    assert state is not None
    assert (state.version, state.values) == (1, {"language": "es"})
    assert len(await read_whole_log(store)) == 1


MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("missing entity_type", {"entity_type": ""}, "entity_type"),
    ("entity_type None", {"entity_type": cast(Any, None)}, "entity_type"),
    ("confidence 1.5", {"confidence": 1.5}, "confidence"),
    ("confidence -0.1", {"confidence": -0.1}, "confidence"),
    ("confidence NaN", {"confidence": math.nan}, "confidence"),
    ("confidence True", {"confidence": True}, "confidence"),
    ("data with a set", {"data": {"note": {"a", "b"}}}, "data.note"),
    ("data with a datetime", {"data": {"note": T9}}, "data.note"),
    ("data with NaN", {"data": {"note": math.nan}}, "data.note"),
    ("naive effective_at", {"effective_at": datetime(2026, 11, 20, 9, 0)}, "effective_at"),
]


@pytest.mark.parametrize(
    ("changes", "field"), [pytest.param(c, f, id=name) for name, c, f in MALFORMED]
)
async def test_malformed_event_is_refused_naming_the_field(
    store: Store, changes: dict[str, Any], field: str
) -> None:
    base: dict[str, Any] = {
        "workspace": WS,
        "entity_type": "Patient",
        "entity_id": "p1",
        "data": {"language": "es"},
        "source": VOICE,
        "confidence": 0.5,
        "effective_at": T9,
    }
    with pytest.raises(InvalidEvent) as caught:
        await store.append(WS, [NewEvent(**(base | changes))])
    assert caught.value.field == field
    assert await store.counts(WS) == EMPTY


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"entity_type": ""}, "entity_type", id="missing entity_type"),
        pytest.param({"confidence": 1.5}, "confidence", id="confidence 1.5"),
        pytest.param({"data": {"note": {"a"}}}, "data.note", id="data with a set"),
        pytest.param({"data": {"note": math.inf}}, "data.note", id="data with infinity"),
        pytest.param(
            {"effective_at": datetime(2026, 11, 20, 9, 0)}, "effective_at", id="naive time"
        ),
    ],
)
async def test_malformed_observation_is_refused_naming_the_field(
    store: Store, changes: dict[str, Any], field: str
) -> None:
    base: dict[str, Any] = {
        "workspace": WS,
        "record": RecordKey(data_source="ehr", resource_type="Patient", external_id="1"),
        "entity_type": "Patient",
        "data": {"language": "es"},
        "effective_at": T9,
    }
    obs = Observation(**(base | changes))
    with pytest.raises(InvalidEvent) as caught:
        await store.append(WS, [obs])
    assert caught.value.field == field
    assert await store.counts(WS) == EMPTY
    assert await store.get_record(WS, obs.record) is None


# --- observations ------------------------------------------------------------------------------


async def test_same_snapshot_twice_is_unchanged(store: Store, clock: FakeClock) -> None:
    data = {"name.family": "Diaz", "phone.mobile": PHONE_A}
    first = await store.append(WS, [snapshot(data)])
    clock.advance()
    again = await store.append(WS, [snapshot(dict(data), effective_at=T9 + timedelta(hours=1))])

    assert first[0].status == "created"
    assert len(first[0].events) == 1
    assert again[0].status == "unchanged"
    assert again[0].events == ()
    assert again[0].entity_id == first[0].entity_id
    assert (await store.counts(WS)).events == 1


async def test_changed_snapshot_asserts_only_what_changed(store: Store, clock: FakeClock) -> None:
    first = await store.append(
        WS, [snapshot({"name.family": "Diaz", "phone.mobile": PHONE_A, "language": "es"})]
    )
    clock.advance()
    later = T9 + timedelta(minutes=30)
    second = await store.append(
        WS,
        [
            snapshot(
                {"name.family": "Diaz", "phone.mobile": PHONE_B, "language": "es"},
                effective_at=later,
            )
        ],
    )

    assert second[0].status == "updated"
    assert second[0].entity_id == first[0].entity_id
    (event,) = second[0].events
    assert event.fields == ("phone.mobile",)
    assert event.data == {"phone.mobile": PHONE_B}
    assert event.supersedes == first[0].events[0].id
    assert event.source == Source(kind="ehr", id="ehr", ref="Patient/123")
    state = await store.get_state(WS, "Patient", first[0].entity_id)
    assert state is not None
    assert state.values == {"name.family": "Diaz", "phone.mobile": PHONE_B, "language": "es"}
    # The unchanged fields keep the time they became true.
    assert state.fields["name.family"].effective_at == T9
    assert state.fields["phone.mobile"].effective_at == later
    record = await store.get_record(
        WS, RecordKey(data_source="ehr", resource_type="Patient", external_id="123")
    )
    assert record is not None
    assert record.last_event_id == event.id


async def test_field_absent_from_a_later_snapshot_is_removed(store: Store) -> None:
    first = await store.append(WS, [snapshot({"name.family": "Diaz", "email": "d@example.org"})])
    entity_id = first[0].entity_id
    assert await store.find(WS, "email:d@example.org") != []

    second = await store.append(
        WS, [snapshot({"name.family": "Diaz"}, effective_at=T9 + timedelta(hours=1))]
    )

    (event,) = second[0].events
    assert event.fields == ("email",)
    assert event.data == {"email": None}
    state = await store.get_state(WS, "Patient", entity_id)
    assert state is not None
    assert "email" not in state.fields
    assert state.values == {"name.family": "Diaz"}
    assert await store.find(WS, "email:d@example.org") == []


async def test_volatile_metadata_changes_are_unchanged(store: Store) -> None:
    await store.append(
        WS,
        [
            snapshot(
                {
                    "name.family": "Diaz",
                    "meta.version_id": "1",
                    "meta.last_updated": "2026-11-20T09:00:00Z",
                }
            )
        ],
    )
    again = await store.append(
        WS,
        [
            snapshot(
                {
                    "name.family": "Diaz",
                    "meta.version_id": "2",
                    "meta.last_updated": "2026-11-20T10:00:00Z",
                },
                effective_at=T9 + timedelta(hours=1),
            )
        ],
    )
    assert again[0].status == "unchanged"
    assert (await store.counts(WS)).events == 1
    events = await store.read_entity(WS, "Patient", again[0].entity_id)
    assert all(not f.startswith("meta.") for e in events for f in e.fields)


async def test_a_record_missing_from_a_poll_is_not_deleted(store: Store) -> None:
    first = await store.append(WS, [snapshot({"name.family": "Diaz"}, external_id="1")])
    await store.append(WS, [snapshot({"name.family": "Okafor"}, external_id="2")])
    state = await store.get_state(WS, "Patient", first[0].entity_id)
    assert state is not None
    assert state.values == {"name.family": "Diaz"}
    assert (await store.counts(WS)).entities == {"Patient": 2}


async def test_same_record_always_maps_to_the_same_entity(store: Store) -> None:
    first = await store.append(WS, [snapshot({"name.family": "Diaz"}, entity_id="p1")])
    later = T9 + timedelta(hours=1)
    # A later snapshot naming no entity, or the record's own, lands on the record's entity.
    second = await store.append(WS, [snapshot({"name.family": "Díaz"}, effective_at=later)])
    third = await store.append(WS, [snapshot({"name.family": "Dias"}, entity_id="p1")])
    assert first[0].entity_id == second[0].entity_id == third[0].entity_id == "p1"


async def test_a_snapshot_naming_another_entity_for_a_known_record_is_refused(
    store: Store,
) -> None:
    """A writer that chose an entity for a record it believed new (and translated references
    to it) learns that another writer linked the record first; nothing of its batch is kept,
    where keeping either entity silently would leave references pointing nowhere."""
    await store.append(WS, [snapshot({"name.family": "Diaz"}, entity_id="p1")])
    other = snapshot({"name.family": "Diaz"}, external_id="456", entity_id="p3")
    stale = snapshot({"name.family": "Díaz"}, entity_id="p2")
    with pytest.raises(RecordClaimed) as caught:
        await store.append(WS, [other, stale])
    assert caught.value.record == "ehr Patient/123"
    assert await store.get_state(WS, "Patient", "p2") is None
    assert await store.get_state(WS, "Patient", "p3") is None
    assert (await store.counts(WS)).events == 1


async def test_racing_writers_choosing_entities_for_one_new_record(make_store: MakeStore) -> None:
    """Two writers each link a new record to an entity of their choosing at the same moment:
    one wins, the other is told so (after the model's retry of a lost race) and writes nothing."""
    one, two = WorldModel(await make_store(), WS), WorldModel(await make_store(), WS)
    for n in range(5):
        outcomes = await asyncio.gather(
            *(
                model.ingest(
                    [snapshot({"name.family": "Diaz"}, external_id=f"r{n}", entity_id=f"{e}{n}")],
                    decisions=[None],
                )
                for model, e in ((one, "a"), (two, "b"))
            ),
            return_exceptions=True,
        )
        won = [o for o in outcomes if not isinstance(o, BaseException)]
        lost = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(won) == 1, outcomes
        assert len(lost) == 1 and isinstance(lost[0], RecordClaimed), outcomes
        key = RecordKey(data_source="ehr", resource_type="Patient", external_id=f"r{n}")
        record = await one.store.get_record(WS, key)
        assert record is not None and record.entity_id == won[0][0].result.entity_id
    assert (await one.store.counts(WS)).entities == {"Patient": 5}


async def test_one_resolution_at_a_time_across_connections(make_store: MakeStore) -> None:
    one, two = await make_store(), await make_store()
    entered = asyncio.Event()
    async with one.resolving(WS):

        async def second() -> None:
            async with two.resolving(WS):
                entered.set()

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.2)
        assert not entered.is_set(), "a second writer resolved while the first held the lock"
    await asyncio.wait_for(waiting, 30)
    assert entered.is_set()
    # Released on an error too.
    with pytest.raises(RuntimeError):
        async with one.resolving(WS):
            raise RuntimeError("boom")
    async with two.resolving(WS):
        pass


async def test_record_entities_maps_known_records_and_leaves_out_the_rest(store: Store) -> None:
    results = await store.append(
        WS,
        [
            snapshot({"name.family": "Diaz"}, external_id="1"),
            snapshot({"status": "final"}, external_id="9", entity_type="LabResult"),
        ],
    )
    keys = [
        RecordKey(data_source="ehr", resource_type="Patient", external_id="1"),
        RecordKey(data_source="ehr", resource_type="LabResult", external_id="9"),
        RecordKey(data_source="ehr", resource_type="Patient", external_id="unknown"),
        RecordKey(data_source="other", resource_type="Patient", external_id="1"),
    ]
    found = await store.record_entities(WS, keys)
    assert found == {
        keys[0]: ("Patient", results[0].entity_id),
        keys[1]: ("LabResult", results[1].entity_id),
    }
    assert await store.record_entities("elsewhere", keys) == {}
    assert await store.record_entities(WS, []) == {}


async def test_unknown_entity_type_is_kept_with_its_fields(store: Store) -> None:
    data = {
        "vaccine.code": "207",
        "lot_number": "AB12",
        "dose_number": 2,
        "site": {"coding": [{"code": "LA"}]},
        "given": True,
    }
    results = await store.append(
        WS, [snapshot(data, entity_type="Immunization", external_id="im-1")]
    )
    assert results[0].status == "created"
    state = await store.get_state(WS, "Immunization", results[0].entity_id)
    assert state is not None
    assert state.values == data
    assert (await store.counts(WS)).entities == {"Immunization": 1}
    said = await store.append(
        WS, [say({"reaction": "none"}, entity_type="Immunization", entity_id="im-x")]
    )
    assert said[0].status == "recorded"


async def test_find_by_phone(store: Store) -> None:
    results = await store.append(
        WS,
        [
            snapshot({"name.family": "Diaz", "phone.mobile": PHONE_A}, external_id="1"),
            snapshot({"name.family": "Okafor", "phone.home": PHONE_B}, external_id="2"),
        ],
    )
    found = await store.find(WS, f"phone:{PHONE_A}")
    assert [(s.entity_type, s.entity_id) for s in found] == [("Patient", results[0].entity_id)]
    assert found[0].values["name.family"] == "Diaz"
    assert [s.entity_id for s in await store.find(WS, f"phone:{PHONE_A}", "Patient")] == [
        results[0].entity_id
    ]
    assert await store.find(WS, f"phone:{PHONE_A}", "Practitioner") == []
    assert await store.find(WS, "phone:+16175550100") == []

    # The index follows the projection: after the number changes, the old one finds nobody.
    await store.append(
        WS,
        [
            snapshot(
                {"name.family": "Diaz", "phone.mobile": "+16175550199"},
                external_id="1",
                effective_at=T9 + timedelta(hours=1),
            )
        ],
    )
    assert await store.find(WS, f"phone:{PHONE_A}") == []
    assert [s.entity_id for s in await store.find(WS, "phone:+16175550199")] == [
        results[0].entity_id
    ]


# --- rebuild and history -----------------------------------------------------------------------


async def test_rebuild_gives_the_same_states(store: Store, clock: FakeClock) -> None:
    for n in range(3):
        await store.append(
            WS,
            [
                snapshot(
                    {"name.family": f"F{n}", "phone.mobile": f"+1617555010{n}"},
                    external_id=str(n),
                    entity_id=f"p{n}",
                )
            ],
        )
    clock.advance()
    voice = await store.append(
        WS, [say({"phone.mobile": PHONE_B}, effective_at=T9 + timedelta(hours=1))]
    )
    clock.advance()
    await store.append(
        WS,
        [
            NewEvent(
                workspace=WS,
                entity_type="Patient",
                entity_id="p1",
                event_type=EventType.REGRADED,
                data={"target": voice[0].events[0].id},
                source=Source(kind="review", id="judge"),
                confidence=0.8,
                effective_at=T9 + timedelta(hours=1),
            ),
            snapshot({"name.family": "F0b"}, external_id="0", effective_at=T9 + timedelta(hours=2)),
            snapshot(
                {"phone.mobile": PHONE_A},
                data_source="ehr-2",
                external_id="x",
                entity_id="p2",
                effective_at=T9 + timedelta(minutes=3),
            ),
            say({"status": "ok"}, entity_type="Immunization", entity_id="i1"),
        ],
    )
    keys = [("Patient", "p0"), ("Patient", "p1"), ("Patient", "p2"), ("Immunization", "i1")]
    before = {k: await store.get_state(WS, *k) for k in keys}
    counts = await store.counts(WS)
    conflicts = await store.conflicts(WS)
    assert counts.open_conflicts == 1  # p2: two EHRs disagree within minutes
    phone = await store.find(WS, f"phone:{PHONE_B}")

    assert await store.rebuild(WS) == len(keys)

    after = {k: await store.get_state(WS, *k) for k in keys}
    for key in keys:
        assert before[key] is not None
        assert after[key] == before[key], key
        events = await store.read_entity(WS, *key)
        assert _same_projection(events, after[key]), key
    assert await store.counts(WS) == counts
    assert await store.conflicts(WS) == conflicts
    assert await store.find(WS, f"phone:{PHONE_B}") == phone


def _same_projection(events: list[Event], state: projection.EntityState | None) -> bool:
    spec = projection.project(events, WS)
    assert spec is not None
    assert state is not None
    return (spec.fields, spec.pending, spec.version, spec.conflicts) == (
        state.fields,
        state.pending,
        state.version,
        state.conflicts,
    )


async def test_state_as_of_a_past_time(store: Store, clock: FakeClock) -> None:
    clock.now = T9
    await store.append(WS, [snapshot({"phone.mobile": PHONE_A}, entity_id="p1")])
    clock.now = T9 + timedelta(hours=1)
    voice = await store.append(WS, [say({"phone.mobile": PHONE_B}, effective_at=clock.now)])
    clock.now = T9 + timedelta(hours=1, minutes=30)
    await store.append(
        WS,
        [
            NewEvent(
                workspace=WS,
                entity_type="Patient",
                entity_id="p1",
                event_type=EventType.REGRADED,
                data={"target": voice[0].events[0].id},
                source=Source(kind="review", id="judge"),
                confidence=0.8,
                effective_at=clock.now,
            )
        ],
    )

    async def as_of(moment: datetime) -> projection.EntityState | None:
        return projection.project(await store.read_entity(WS, "Patient", "p1", until=moment), WS)

    assert await as_of(T9 - timedelta(minutes=1)) is None
    at_915 = await as_of(T9 + timedelta(minutes=15))
    assert at_915 is not None
    assert (at_915.version, at_915.values, at_915.pending) == (1, {"phone.mobile": PHONE_A}, {})
    at_1015 = await as_of(T9 + timedelta(hours=1, minutes=15))
    assert at_1015 is not None
    assert at_1015.values == {"phone.mobile": PHONE_A}
    assert [p.value for p in at_1015.pending["phone.mobile"]] == [PHONE_B]
    # The boundary is inclusive: an event recorded exactly then is in.
    exactly = await as_of(T9 + timedelta(hours=1, minutes=30))
    assert exactly is not None
    assert exactly.values == {"phone.mobile": PHONE_B}
    now = await store.get_state(WS, "Patient", "p1")
    assert now is not None
    assert now.values == {"phone.mobile": PHONE_B}
    assert now.version == 3
