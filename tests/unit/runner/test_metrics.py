"""The runner's metrics: counters, a duration histogram and health gauges on their own registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ehrbridge.connectors.source import PollOutcome
from ehrbridge.runner.metrics import RunnerMetrics

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def outcome(
    minute: int,
    ok: bool = True,
    source: str = "ehr",
    kind: str = "Patient",
    fetched: int = 0,
    events: int = 0,
) -> PollOutcome:
    at = T0 + timedelta(minutes=minute)
    return PollOutcome(
        workspace="ws",
        source=source,
        resource_type=kind,
        started_at=at - timedelta(seconds=2),
        finished_at=at,
        ok=ok,
        error=None if ok else "FhirUnavailable: HTTP 503",
        fetched=fetched,
        events=events,
    )


def samples(metrics: RunnerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the registry, keyed by name and labels."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def test_poll_outcomes_are_counted_by_source_type_and_outcome() -> None:
    metrics = RunnerMetrics(clock=lambda: T0 + timedelta(minutes=10))
    metrics.record(outcome(0, fetched=10, events=4))
    metrics.record(outcome(1, fetched=5, events=1))
    metrics.record(outcome(2, ok=False))
    metrics.record(outcome(3, source="lab", kind="Observation", fetched=7, events=7))
    got = samples(metrics)
    ehr = labels(source="ehr", resource_type="Patient")
    lab = labels(source="lab", resource_type="Observation")
    assert got["ehrbridge_polls_total", ehr | {("outcome", "ok")}] == 2
    assert got["ehrbridge_polls_total", ehr | {("outcome", "failed")}] == 1
    assert got["ehrbridge_polls_total", lab | {("outcome", "ok")}] == 1
    assert ("ehrbridge_polls_total", lab | {("outcome", "failed")}) not in got
    assert got["ehrbridge_resources_fetched_total", ehr] == 15
    assert got["ehrbridge_events_written_total", ehr] == 5
    assert got["ehrbridge_events_written_total", lab] == 7
    assert got["ehrbridge_poll_duration_seconds_count", ehr] == 3
    assert got["ehrbridge_poll_duration_seconds_sum", ehr] == 6.0
    assert got["ehrbridge_poll_duration_seconds_bucket", ehr | {("le", "1.0")}] == 0
    assert got["ehrbridge_poll_duration_seconds_bucket", ehr | {("le", "2.5")}] == 3


def test_health_gauges_are_derived_at_scrape_time() -> None:
    now = [T0 + timedelta(minutes=5)]
    metrics = RunnerMetrics(clock=lambda: now[0])
    for minute in (0, 1, 2, 3):
        metrics.record(outcome(minute, ok=minute == 0))
    metrics.record(outcome(4, source="lab", kind="Observation"))
    got = samples(metrics)
    assert got["ehrbridge_source_health", labels(source="ehr", state="down")] == 1
    assert got["ehrbridge_source_health", labels(source="ehr", state="healthy")] == 0
    assert got["ehrbridge_source_health", labels(source="lab", state="healthy")] == 1
    assert got["ehrbridge_source_consecutive_errors", labels(source="ehr")] == 3
    assert got["ehrbridge_source_lag_seconds", labels(source="ehr")] == 300
    assert got["ehrbridge_source_lag_seconds", labels(source="lab")] == 60
    last = (T0 + timedelta(minutes=3)).timestamp()
    assert got["ehrbridge_source_last_poll_timestamp_seconds", labels(source="ehr")] == last
    now[0] += timedelta(minutes=1)
    assert samples(metrics)["ehrbridge_source_lag_seconds", labels(source="lab")] == 120


def test_health_per_resource_type_names_the_failing_type() -> None:
    metrics = RunnerMetrics(clock=lambda: T0 + timedelta(minutes=5))
    for minute in (0, 1, 2):
        metrics.record(outcome(minute, kind="Patient"))
        metrics.record(outcome(minute, ok=False, kind="Encounter"))
    got = samples(metrics)
    # One type down among good ones: the source is degraded, not down.
    assert got["ehrbridge_source_health", labels(source="ehr", state="degraded")] == 1
    assert got["ehrbridge_source_health", labels(source="ehr", state="down")] == 0
    encounter = labels(source="ehr", resource_type="Encounter")
    patient = labels(source="ehr", resource_type="Patient")
    assert got["ehrbridge_resource_type_health", encounter | {("state", "down")}] == 1
    assert got["ehrbridge_resource_type_health", patient | {("state", "healthy")}] == 1
    assert got["ehrbridge_resource_type_consecutive_errors", encounter] == 3
    assert got["ehrbridge_resource_type_consecutive_errors", patient] == 0
    assert got["ehrbridge_resource_type_lag_seconds", patient] == 180
    assert ("ehrbridge_resource_type_lag_seconds", encounter) not in got


def test_seeding_replaces_the_outcomes_health_is_derived_from() -> None:
    metrics = RunnerMetrics(clock=lambda: T0 + timedelta(minutes=5))
    metrics.record(outcome(0, ok=False))
    metrics.seed([outcome(4), outcome(3, source="lab", ok=False)])
    got = samples(metrics)
    assert got["ehrbridge_source_health", labels(source="ehr", state="healthy")] == 1
    assert got["ehrbridge_source_health", labels(source="lab", state="degraded")] == 1
    # the counters count what this runner did, not the seed
    assert (
        got[
            "ehrbridge_polls_total", labels(source="ehr", resource_type="Patient", outcome="failed")
        ]
        == 1
    )


def test_each_runner_has_its_own_registry() -> None:
    first, second = RunnerMetrics(), RunnerMetrics()
    first.record(outcome(0, fetched=3))
    key = ("ehrbridge_resources_fetched_total", labels(source="ehr", resource_type="Patient"))
    assert samples(first)[key] == 3
    assert key not in samples(second)
    assert b"ehrbridge_" not in generate_latest(REGISTRY)
