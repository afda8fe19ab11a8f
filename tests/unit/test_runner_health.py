"""Health per data source from poll outcomes: a pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ehrbridge.runner.health import HealthPolicy, source_health
from ehrbridge.runner.storage import PollOutcome

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def outcome(
    minute: int, ok: bool = True, source: str = "ehr", kind: str = "Patient"
) -> PollOutcome:
    at = T0 + timedelta(minutes=minute)
    return PollOutcome(
        workspace="ws",
        source=source,
        resource_type=kind,
        started_at=at - timedelta(seconds=1),
        finished_at=at,
        ok=ok,
        error=None if ok else f"FhirUnavailable: HTTP 503 (minute {minute})",
    )


def test_recent_success_is_healthy_with_its_lag() -> None:
    (health,) = source_health([outcome(0), outcome(1)], T0 + timedelta(minutes=3))
    assert health.status == "healthy" and health.consecutive_errors == 0
    assert health.last_poll == T0 + timedelta(minutes=1)
    assert health.lag == timedelta(minutes=2) and health.last_error is None


def test_errors_in_a_row_degrade_then_take_it_down_and_a_success_heals() -> None:
    now = T0 + timedelta(minutes=10)
    history = [outcome(0), outcome(1, ok=False)]
    assert source_health(history, now)[0].status == "degraded"
    history += [outcome(2, ok=False), outcome(3, ok=False)]
    (down,) = source_health(history, now)
    assert down.status == "down" and down.consecutive_errors == 3
    assert down.last_error == "FhirUnavailable: HTTP 503 (minute 3)"
    assert down.lag == timedelta(minutes=10)
    (healed,) = source_health([*history, outcome(4)], now)
    assert healed.status == "healthy" and healed.consecutive_errors == 0


def test_no_success_for_too_long_is_degraded() -> None:
    policy = HealthPolicy(degraded_after=timedelta(minutes=5))
    assert source_health([outcome(0)], T0 + timedelta(minutes=4), policy)[0].status == "healthy"
    assert source_health([outcome(0)], T0 + timedelta(minutes=6), policy)[0].status == "degraded"


def test_a_source_is_as_bad_as_its_worst_resource_type() -> None:
    history = [
        outcome(0, kind="Patient"),
        *(outcome(m, ok=False, kind="Encounter") for m in range(3)),
        outcome(0, source="lab", kind="Observation"),
    ]
    ehr, lab = source_health(reversed(history), T0 + timedelta(minutes=5))
    assert (ehr.source, ehr.status, ehr.consecutive_errors, ehr.lag) == ("ehr", "down", 3, None)
    assert (lab.source, lab.status) == ("lab", "healthy")
