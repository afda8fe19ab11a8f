"""A log reader never skips an event whose transaction commits after a later one
(docs/design.md §4).

On PostgreSQL a sequence value is taken when a transaction asks for it, not when it commits, so
"everything after seq N" can miss a row that commits late. Here transaction A takes a sequence
value and holds its insert open while the store appends (and commits) B with a larger one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import psycopg
import pytest

from ehrbridge.storage.postgres.worldmodel import PostgresStore
from ehrbridge.storage.rows import EVENT_COLUMNS, event_row
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.events import Event, EventType, NewEvent, Source, event_hash, new_id
from ehrbridge.worldmodel.store import START, LogPosition
from tests.conftest import POSTGRES_DSN, new_schema

pytestmark = pytest.mark.postgres

WS = "clinic"
T9 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
async def pg(clock: FakeClock) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.open(POSTGRES_DSN, schema=new_schema(), clock=clock)
    yield store
    await store.drop_schema()
    await store.close()


class Reader:
    """A log follower: remembers its position and everything it was handed."""

    def __init__(self, store: PostgresStore, types: frozenset[str] | None) -> None:
        self.store = store
        self.types = types
        self.position = START
        self.seen: list[Event] = []

    async def catch_up(self) -> None:
        while True:
            page = await self.store.read_log(WS, self.position, limit=1, entity_types=self.types)
            if not page.events:
                return
            self.seen += page.events
            self.position = page.position


def raw_event(seq: int, entity_id: str) -> Event:
    said = NewEvent(
        workspace=WS,
        entity_type="Patient",
        entity_id=entity_id,
        data={"language": "es"},
        source=Source(kind="voice", id="agent-1"),
        confidence=0.5,
        effective_at=T9,
    )
    return Event(
        id=new_id(),
        seq=seq,
        tx=0,  # the column's default fills in the writing transaction's id
        version=1,
        workspace=WS,
        entity_type="Patient",
        entity_id=entity_id,
        event_type=EventType.RECORDED,
        data=dict(said.data),
        fields=said.asserted,
        source=said.source,
        confidence=said.confidence,
        effective_at=T9,
        recorded_at=T9,
        content_hash=event_hash(said),
    )


async def connect(schema: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
    return await psycopg.AsyncConnection.connect(
        POSTGRES_DSN, autocommit=True, options=f"-c search_path={schema}"
    )


@pytest.mark.parametrize("types", [None, frozenset({"Patient"})], ids=["all", "filtered"])
async def test_reader_does_not_skip_an_event_that_commits_late(
    pg: PostgresStore, types: frozenset[str] | None
) -> None:
    """Whether it reads the whole log or the events of some types only."""
    assert pg.schema is not None
    reader = Reader(pg, types)
    a_conn = await connect(pg.schema)
    spy = await connect(pg.schema)
    try:
        # Transaction A: take a sequence value and insert with it, but do not commit yet.
        await a_conn.execute("BEGIN")
        cur = await a_conn.execute("SELECT nextval('events_seq')")
        row = await cur.fetchone()
        assert row is not None
        a_event = raw_event(int(str(row[0])), "late")
        await a_conn.execute(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({','.join(['%s'] * 20)})",
            event_row(a_event),
        )

        # B goes through the store: a larger sequence value, committed first.
        (result,) = await pg.append(
            WS,
            [
                NewEvent(
                    workspace=WS,
                    entity_type="Patient",
                    entity_id="early",
                    data={"language": "fr"},
                    source=Source(kind="voice", id="agent-1"),
                    confidence=0.5,
                    effective_at=T9,
                )
            ],
        )
        (b_event,) = result.events

        # The commit order really is the "wrong" one: A's seq is smaller, B is committed, A not.
        assert a_event.seq < b_event.seq
        cur = await spy.execute("SELECT id FROM events ORDER BY seq")
        assert [r[0] for r in await cur.fetchall()] == [b_event.id]

        for _ in range(3):
            await reader.catch_up()
        assert a_event.id not in {e.id for e in reader.seen}

        await a_conn.execute("COMMIT")
        for _ in range(2):
            await reader.catch_up()
    finally:
        await a_conn.close()
        await spy.close()

    ids = [e.id for e in reader.seen]
    assert sorted(ids) == sorted([a_event.id, b_event.id]), (
        f"the reader was handed {ids}: it skipped the late-committing event"
        if a_event.id not in ids
        else f"the reader was handed {ids}"
    )
    assert len(ids) == len(set(ids)), f"the reader was handed an event twice: {ids}"
    # The reader's position never moved backwards.
    positions = [LogPosition(tx=e.tx, seq=e.seq) for e in reader.seen]
    assert positions == sorted(positions)


async def store_append(pg: PostgresStore, entity_id: str) -> Event:
    (result,) = await pg.append(
        WS,
        [
            NewEvent(
                workspace=WS,
                entity_type="Patient",
                entity_id=entity_id,
                data={"language": "fr"},
                source=Source(kind="voice", id="agent-1"),
                confidence=0.5,
                effective_at=T9,
            )
        ],
    )
    (event,) = result.events
    return event


@pytest.mark.parametrize("types", [None, frozenset({"Patient"})], ids=["all", "filtered"])
async def test_a_long_transaction_that_writes_no_events_does_not_hold_the_reader_back(
    pg: PostgresStore, types: frozenset[str] | None
) -> None:
    """A transaction elsewhere on the server (another table, an older transaction id) stays
    open while events are appended: the reader still reads them."""
    assert pg.schema is not None
    reader = Reader(pg, types)
    other = await connect(pg.schema)
    try:
        await other.execute("BEGIN")
        await other.execute("CREATE TEMP TABLE busy (n int)")
        await other.execute("INSERT INTO busy VALUES (1)")  # it has a transaction id now
        first = await store_append(pg, "p1")
        second = await store_append(pg, "p2")
        await reader.catch_up()
        assert [e.id for e in reader.seen] == [first.id, second.id]
    finally:
        await other.execute("ROLLBACK")
        await other.close()


async def test_a_writer_that_has_the_lock_but_no_transaction_id_yet_is_not_skipped(
    pg: PostgresStore,
) -> None:
    """A writer takes the events table's lock before its transaction id: while it holds the lock
    the reader reads what committed, and the writer's event, committed later, comes next."""
    assert pg.schema is not None
    reader = Reader(pg, None)
    writer = await connect(pg.schema)
    try:
        await writer.execute("BEGIN")
        await writer.execute("LOCK TABLE events IN ROW EXCLUSIVE MODE")
        committed = await store_append(pg, "p1")
        await reader.catch_up()
        assert [e.id for e in reader.seen] == [committed.id]
        cur = await writer.execute("SELECT nextval('events_seq')")
        row = await cur.fetchone()
        assert row is not None
        late = raw_event(int(str(row[0])), "late")
        await writer.execute(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({','.join(['%s'] * 20)})",
            event_row(late),
        )
        after = await store_append(pg, "p2")  # commits before the writer does
        await reader.catch_up()
        assert late.id not in {e.id for e in reader.seen}
        await writer.execute("COMMIT")
        await reader.catch_up()
    finally:
        await writer.close()
    assert [e.id for e in reader.seen] == [committed.id, late.id, after.id]
