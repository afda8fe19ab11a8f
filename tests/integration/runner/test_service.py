"""The runner service in-process, with a fake poller: named loops, graceful and loud stops,
config refresh, business hours, the per-source lease and the ``/metrics`` endpoint."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ehrbridge.connectors.source import DataSourceConfig, Polled, PollOutcome, ResourceConfig
from ehrbridge.errors import InvalidInput, LoopFailed
from ehrbridge.runner.config import RunnerConfig, Timing
from ehrbridge.runner.configfile import parse_config
from ehrbridge.runner.service import RESERVED_LOOPS, Runner
from ehrbridge.runner.store import RunnerStore
from ehrbridge.storage import open_backend

FAST = Timing(
    refresh_every=timedelta(seconds=5),
    watch_every=timedelta(milliseconds=20),
    lease_ttl=timedelta(minutes=1),
)
CONFIG = """\
workspace: clinic
database: sqlite:///unused.db
data_sources:
  - id: ehr
    kind: fhir
    base_url: http://127.0.0.1:1/fhir
    resources:
      - {type: Patient, every: 1s}
"""
#: faster than the config allows (at least 1s), so the tests need not wait
FAST_POLL = timedelta(milliseconds=10)


def fast_config(text: str) -> RunnerConfig:
    """``text`` loaded, each poll's cadence then set to :data:`FAST_POLL`."""
    config = parse_config(text)
    sources = tuple(
        replace(s, resources=tuple(replace(r, every=FAST_POLL) for r in s.resources))
        for s in config.data_sources
    )
    return replace(config, data_sources=sources)


class FakePoller:
    """Records every poll; can hold a poll open, or fail."""

    def __init__(self) -> None:
        self.polls: list[tuple[str, str]] = []
        self.polled = asyncio.Event()
        #: while set to an unset event, each poll waits for it
        self.hold: asyncio.Event | None = None
        self.fail_with: BaseException | None = None
        self.finished = 0

    async def poll(
        self, source: DataSourceConfig, resource: ResourceConfig, polled: Polled
    ) -> None:
        self.polls.append((source.id, resource.type))
        self.polled.set()
        if self.fail_with is not None:
            raise self.fail_with
        if self.hold is not None:
            await self.hold.wait()
        self.finished += 1
        polled.fetched = 1

    async def aclose(self) -> None:
        """Nothing to close."""


@pytest.fixture
async def runner_store(tmp_path: Path) -> AsyncIterator[RunnerStore]:
    backend = await open_backend(f"sqlite:///{tmp_path / 'wm.db'}")
    store = backend.worldmodel
    yield backend.runner
    await store.close()


def make_runner(
    store: RunnerStore, poller: FakePoller, config: RunnerConfig, **options: object
) -> Runner:
    return Runner(
        config,
        pollers={"fhir": poller},
        outcomes=store,
        leases=store,
        timing=FAST,
        **options,  # type: ignore[arg-type]
    )


async def until(condition: object, seconds: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 (test polling)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), seconds)


async def test_named_loops_and_a_graceful_stop_that_finishes_the_poll(
    runner_store: RunnerStore,
) -> None:
    poller = FakePoller()
    runner = make_runner(runner_store, poller, fast_config(CONFIG))
    service = asyncio.create_task(runner.run())
    await until(lambda: poller.finished >= 2)
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert {"config-refresh", "poll", "poll:ehr:Patient", *RESERVED_LOOPS} <= names
    poller.hold = asyncio.Event()
    poller.polled.clear()
    await poller.polled.wait()
    in_flight = poller.finished
    runner.stop()
    await asyncio.sleep(0.05)
    assert not service.done(), "the runner waits for the poll in progress"
    poller.hold.set()
    await asyncio.wait_for(service, 5)
    assert poller.finished == in_flight + 1
    outcomes = await runner_store.recent_outcomes("clinic", "ehr", limit=100)
    assert len(outcomes) == poller.finished
    # the lease is given back on the way out
    assert await runner_store.holder("clinic", "poll:ehr") is None


async def test_a_loop_that_dies_stops_the_runner_loudly(
    runner_store: RunnerStore, caplog: pytest.LogCaptureFixture
) -> None:
    poller = FakePoller()
    poller.fail_with = RuntimeError("bug in the poller")
    runner = make_runner(runner_store, poller, fast_config(CONFIG))
    with pytest.raises(LoopFailed) as caught:
        await asyncio.wait_for(runner.run(), 5)
    assert caught.value.loop == "poll:ehr:Patient"
    assert "RuntimeError: bug in the poller" in str(caught.value)
    assert any("loop poll died" in r.getMessage() for r in caplog.records)
    leftover = {t.get_name() for t in asyncio.all_tasks()} & {"config-refresh", *RESERVED_LOOPS}
    assert not leftover


async def test_config_refresh_picks_up_changes_and_keeps_the_old_config_when_invalid(
    runner_store: RunnerStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text(CONFIG)
    poller = FakePoller()
    runner = make_runner(runner_store, poller, fast_config(CONFIG), config_path=path)
    service = asyncio.create_task(runner.run())
    try:
        await until(lambda: ("ehr", "Patient") in poller.polls)
        caplog.set_level(logging.ERROR, logger="ehrbridge.runner")
        path.write_text(CONFIG.replace("every: 1s", "every: often"))
        await until(lambda: any("not valid" in r.getMessage() for r in caplog.records))
        assert "runner.yaml:8: data_sources[0].resources[0].every" in caplog.text
        assert runner.config == fast_config(CONFIG)
        path.write_text(CONFIG + "      - {type: Encounter, every: 1s}\n")
        await until(lambda: ("ehr", "Encounter") in poller.polls)
    finally:
        runner.stop()
        await asyncio.wait_for(service, 5)


def alias_bomb() -> str:
    """Nine anchors, each aliasing the one before nine times: 9^9 values once expanded."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return CONFIG + "\n".join(lines) + "\n"


async def test_an_alias_bomb_written_over_the_config_is_refused_and_polling_goes_on(
    runner_store: RunnerStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text(CONFIG)
    poller = FakePoller()
    config = fast_config(CONFIG)
    runner = make_runner(runner_store, poller, config, config_path=path)
    service = asyncio.create_task(runner.run())
    try:
        await until(lambda: poller.finished > 0)
        caplog.set_level(logging.ERROR, logger="ehrbridge.runner")
        path.write_text(alias_bomb())
        await until(lambda: any("not valid" in r.getMessage() for r in caplog.records))
        # Refused before expanding, at a5 (line 14): the first anchor past 100,000 values.
        assert "runner.yaml:14: more than 100,000 values once its aliases are expanded" in (
            caplog.text
        )
        assert "lol" not in caplog.text
        # The refresh loop lives on, and so does polling, with the running config.
        polled = poller.finished
        await until(lambda: poller.finished >= polled + 3)
        assert runner.config == config and not service.done()
    finally:
        runner.stop()
        await asyncio.wait_for(service, 5)


async def test_no_poll_outside_business_hours(runner_store: RunnerStore) -> None:
    hours = '    business_hours: {days: sat-sun, start: "00:00", end: "23:59"}\n'
    config = fast_config(CONFIG.replace("    resources:\n", hours + "    resources:\n"))
    poller = FakePoller()
    monday = datetime(2026, 11, 23, 12, tzinfo=UTC)
    runner = make_runner(runner_store, poller, config, clock=lambda: monday)
    service = asyncio.create_task(runner.run())
    await asyncio.sleep(0.2)
    runner.stop()
    await asyncio.wait_for(service, 5)
    assert poller.polls == []


async def test_one_runner_polls_a_source_at_a_time(runner_store: RunnerStore) -> None:
    config = fast_config(CONFIG)
    pollers = [FakePoller(), FakePoller()]
    runners = [
        make_runner(runner_store, p, config, holder=f"runner-{i}") for i, p in enumerate(pollers)
    ]
    services = [asyncio.create_task(r.run()) for r in runners]
    await until(lambda: sum(p.finished for p in pollers) >= 5)
    for runner in runners:
        runner.stop()
    await asyncio.wait_for(asyncio.gather(*services), 5)
    assert sorted(p.finished > 0 for p in pollers) == [False, True]


async def test_a_long_poll_keeps_its_lease(runner_store: RunnerStore) -> None:
    config = fast_config(CONFIG)
    # Renewed every third of its time to live, so a stall of over a second on a loaded machine
    # is still no lapse.
    short = Timing(lease_ttl=timedelta(seconds=2), watch_every=timedelta(seconds=1))
    holding, waiting = FakePoller(), FakePoller()
    holding.hold = asyncio.Event()
    first = make_runner(runner_store, holding, config, holder="first")
    first.timing = short
    service = asyncio.create_task(first.run())
    await holding.polled.wait()
    second = make_runner(runner_store, waiting, config, holder="second")
    second.timing = short
    other = asyncio.create_task(second.run())
    # Well past the lease's time to live: the renewals keep it with the first runner.
    await asyncio.sleep(4.5)
    assert waiting.polls == []
    holding.hold.set()
    first.stop()
    await asyncio.wait_for(service, 5)
    # Released on the way out, so the second runner takes over.
    await until(lambda: waiting.finished > 0)
    second.stop()
    await asyncio.wait_for(other, 5)


async def test_metrics_are_served_while_the_runner_runs(runner_store: RunnerStore) -> None:
    # A poll recorded by another runner: the health gauges come from the poll log too.
    now = datetime.now(UTC)
    await runner_store.record_outcome(
        PollOutcome(
            workspace="clinic",
            source="lab",
            resource_type="Observation",
            started_at=now,
            finished_at=now,
            ok=False,
            error="FhirUnavailable: HTTP 503",
        )
    )
    config = fast_config(CONFIG + "runner: {metrics: {host: 127.0.0.1, port: 0}}\n")
    poller = FakePoller()
    runner = make_runner(runner_store, poller, config)
    service = asyncio.create_task(runner.run())
    try:
        await until(lambda: poller.finished >= 3 and runner.metrics_server is not None)
        assert runner.metrics_server is not None
        port = runner.metrics_server.port
        assert "metrics" in {t.get_name() for t in asyncio.all_tasks()}
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        found = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
        ehr = (("outcome", "ok"), ("resource_type", "Patient"), ("source", "ehr"))
        assert found["ehrbridge_polls_total", ehr] >= 3
        fetched = found["ehrbridge_resources_fetched_total", ehr[1:]]
        assert fetched == found["ehrbridge_polls_total", ehr]  # one resource a poll
        assert found["ehrbridge_source_health", (("source", "ehr"), ("state", "healthy"))] == 1
        assert found["ehrbridge_source_health", (("source", "lab"), ("state", "degraded"))] == 1
    finally:
        runner.stop()
        await asyncio.wait_for(service, 5)
    assert runner.metrics_server is None
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_metrics_with_a_token_answer_only_scrapes_that_present_it(
    runner_store: RunnerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICS_TOKEN", "scrape-me-7f3a")
    section = "runner: {metrics: {port: 0, token: {env: METRICS_TOKEN}}}\n"
    runner = make_runner(runner_store, FakePoller(), fast_config(CONFIG + section))
    service = asyncio.create_task(runner.run())
    try:
        await until(lambda: runner.metrics_server is not None)
        assert runner.metrics_server is not None
        url = f"http://127.0.0.1:{runner.metrics_server.port}/metrics"
        async with httpx.AsyncClient() as client:
            refused = [
                await client.get(url),
                await client.get(url, headers={"Authorization": "Bearer wrong"}),
                await client.get(url, headers={"Authorization": "Basic c2NyYXBlLW1lLTdmM2E="}),
                await client.get(url, headers={"Authorization": "Bearer scrape-me-7f3"}),
            ]
            allowed = await client.get(url, headers={"Authorization": "Bearer scrape-me-7f3a"})
        for response in refused:
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "ehrbridge_" not in response.text
        assert allowed.status_code == 200 and "ehrbridge_polls_total" in allowed.text
    finally:
        runner.stop()
        await asyncio.wait_for(service, 5)


async def test_a_metrics_token_that_cannot_be_read_stops_the_start(
    runner_store: RunnerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    section = "runner: {metrics: {port: 0, token: {env: METRICS_TOKEN}}}\n"
    poller = FakePoller()
    with pytest.raises(InvalidInput, match="environment variable METRICS_TOKEN is not set"):
        await make_runner(runner_store, poller, fast_config(CONFIG + section)).run()
    assert poller.polls == []


async def test_a_metrics_port_in_use_stops_the_start(runner_store: RunnerStore) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = fast_config(CONFIG + f"runner: {{metrics: {{port: {port}}}}}\n")
        poller = FakePoller()
        with pytest.raises(InvalidInput, match=f"runner.metrics: cannot serve on 127.0.0.1:{port}"):
            await make_runner(runner_store, poller, config).run()
    assert poller.polls == []
