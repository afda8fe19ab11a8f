"""Writers of several processes on one SQLite file take turns on its lock file (``<file>-writer``).

The lock held here stands for another process's writer in the middle of its transaction: every
kind of write waits for it (world model, runner, keys and audit), reads do not, and each write
goes through the moment it is released.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ehrbridge.storage import Backend, open_backend
from ehrbridge.worldmodel.events import NewEvent, Source
from ehrbridge.worldmodel.store import Store

WS = "clinic"


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    opened = await open_backend(f"sqlite:///{tmp_path / 'wm.db'}")
    yield opened
    await opened.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.worldmodel


def voice(entity_id: str) -> NewEvent:
    return NewEvent(
        workspace=WS,
        entity_type="Patient",
        entity_id=entity_id,
        data={"language": "fr"},
        source=Source(kind="voice", id="agent-1"),
        confidence=0.5,
        effective_at=datetime(2026, 11, 20, 9, tzinfo=UTC),
    )


async def blocked_until_released(lock: int, write: Awaitable[Any]) -> Any:
    """Run ``write`` while ``lock`` is held by "another writer": it must wait; then release."""
    task = asyncio.ensure_future(write)
    for _ in range(20):  # it cannot finish while the lock is held, however long we give it
        await asyncio.sleep(0.01)
        assert not task.done(), "a write went ahead while another writer had its turn"
    fcntl.flock(lock, fcntl.LOCK_UN)
    return await task


async def test_every_write_waits_for_the_writer_whose_turn_it_is(
    store: Store, backend: Backend, tmp_path: Path
) -> None:
    (result,) = await store.append(WS, [voice("p1")])
    runner, security = backend.runner, backend.security
    lock = os.open(tmp_path / "wm.db-writer", os.O_RDWR)
    try:
        writes: list[Awaitable[Any]] = [
            store.append(WS, [voice("p2")]),
            runner.set_cursor(WS, "ehr", "Patient", "2026-11-20T09:00:00+00:00"),
            security.create_key(WS, "agent"),
        ]
        for write in writes:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # reads go on meanwhile (WAL)
            assert await store.get_state(WS, "Patient", result.entity_id) is not None
            await blocked_until_released(lock, write)
    finally:
        os.close(lock)
    assert (await store.counts(WS)).entities == {"Patient": 2}
    assert await runner.get_cursor(WS, "ehr", "Patient") == "2026-11-20T09:00:00+00:00"
    assert len(await security.list_keys(WS)) == 1
