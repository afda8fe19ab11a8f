"""The runner's supervision of its loops, with fake loops registered beside its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ehrbridge.errors import LoopFailed
from ehrbridge.runner.config import RunnerConfig
from ehrbridge.runner.loops import Loop
from ehrbridge.runner.service import RESERVED_LOOPS, Runner


class FakeLoop:
    def __init__(self, name: str, *, fail: BaseException | None = None) -> None:
        self.name = name
        self.fail = fail
        self.started = asyncio.Event()
        self.stopped = False
        self.cancelled = False

    async def run(self, stop: asyncio.Event) -> None:
        self.started.set()
        try:
            if self.fail is not None:
                raise self.fail
            await stop.wait()
            self.stopped = True
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def make_runner(*loops: Loop) -> Runner:
    # No data sources: the runner's own loops never touch the stores.
    store: Any = object()
    config = RunnerConfig(workspace="clinic", database="sqlite:///unused.db")
    return Runner(config, pollers={}, outcomes=store, leases=store, loops=loops)


def test_registered_loops_run_beside_the_runners_own() -> None:
    dispatch, other = FakeLoop("dispatch"), FakeLoop("other")
    names = [loop.name for loop in make_runner(dispatch, other).loops()]
    assert names == ["config-refresh", "poll", *RESERVED_LOOPS, "other"]
    assert dispatch in make_runner(dispatch).loops(), "a reserved name takes the slot's place"


async def test_the_stop_event_ends_every_loop() -> None:
    one, two = FakeLoop("one"), FakeLoop("two")
    runner = make_runner(one, two)
    service = asyncio.create_task(runner.run())
    await asyncio.wait_for(asyncio.gather(one.started.wait(), two.started.wait()), 5)
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert {"config-refresh", "poll", "one", "two", *RESERVED_LOOPS} <= names
    runner.stop()
    await asyncio.wait_for(service, 5)
    assert one.stopped and two.stopped


async def test_the_first_failure_stops_the_other_loops(caplog: pytest.LogCaptureFixture) -> None:
    waiting, failing = FakeLoop("waiting"), FakeLoop("failing", fail=RuntimeError("bug"))
    runner = make_runner(waiting, failing)
    with pytest.raises(LoopFailed) as caught:
        await asyncio.wait_for(runner.run(), 5)
    assert caught.value.loop == "failing"
    assert "RuntimeError: bug" in str(caught.value)
    assert any("loop failing died" in r.getMessage() for r in caplog.records)
    assert waiting.cancelled and not waiting.stopped
    leftover = {t.get_name() for t in asyncio.all_tasks()} & {"waiting", "poll", *RESERVED_LOOPS}
    assert not leftover
