"""Health per data source from poll outcomes: a pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ehrbridge.connectors.source import PollOutcome
from ehrbridge.runner.health import HealthPolicy, source_health, type_health

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
    assert down.last_error == "Patient: FhirUnavailable: HTTP 503 (minute 3)"
    assert down.failing == ("Patient",)
    assert down.lag == timedelta(minutes=10)
    (healed,) = source_health([*history, outcome(4)], now)
    assert healed.status == "healthy" and healed.consecutive_errors == 0


def test_no_success_for_too_long_is_degraded() -> None:
    policy = HealthPolicy(degraded_after=timedelta(minutes=5))
    assert source_health([outcome(0)], T0 + timedelta(minutes=4), policy)[0].status == "healthy"
    assert source_health([outcome(0)], T0 + timedelta(minutes=6), policy)[0].status == "degraded"


def test_one_failing_type_degrades_its_source_and_is_named_not_down() -> None:
    # Issue 10: Encounters whose Patients are not polled failed every poll, and the source showed
    # as down while its 15 other types were fine.
    good = [f"Type{n:02d}" for n in range(15)]
    history = [
        *(outcome(m, kind=kind) for kind in good for m in range(3)),
        *(outcome(m, ok=False, kind="Encounter") for m in range(3)),
        outcome(0, source="lab", kind="Observation"),
    ]
    ehr, lab = source_health(reversed(history), T0 + timedelta(minutes=5))
    assert (ehr.source, ehr.status, ehr.failing) == ("ehr", "degraded", ("Encounter",))
    assert ehr.consecutive_errors == 3 and ehr.lag is None
    assert ehr.last_error == "Encounter: FhirUnavailable: HTTP 503 (minute 2)"
    by_type = {t.resource_type: t for t in ehr.types}
    assert by_type["Encounter"].status == "down" and by_type["Encounter"].lag is None
    assert all(by_type[kind].status == "healthy" for kind in good)
    assert (lab.source, lab.status, lab.failing) == ("lab", "healthy", ())


def test_a_source_is_down_when_every_type_is_down() -> None:
    history = [
        outcome(m, ok=False, kind=kind) for kind in ("Patient", "Encounter") for m in (0, 1, 2)
    ]
    (ehr,) = source_health(history, T0 + timedelta(minutes=5))
    assert ehr.status == "down" and ehr.failing == ("Encounter", "Patient")


def test_failing_types_are_named_worst_first() -> None:
    history = [
        outcome(0, kind="Patient"),
        outcome(0, ok=False, kind="Appointment"),
        *(outcome(m, ok=False, kind="Encounter") for m in range(4)),
    ]
    (ehr,) = source_health(history, T0 + timedelta(minutes=5))
    assert ehr.status == "degraded" and ehr.failing == ("Encounter", "Appointment")


_TYPES = st.sampled_from(["Patient", "Encounter", "Observation", "Coverage"])
_OUTCOMES = st.lists(
    st.builds(
        outcome,
        minute=st.integers(0, 60),
        ok=st.booleans(),
        source=st.sampled_from(["ehr", "lab"]),
        kind=_TYPES,
    ),
    max_size=40,
)


@given(history=_OUTCOMES, policy_errors=st.integers(1, 5))
def test_a_source_summarises_its_types(history: list[PollOutcome], policy_errors: int) -> None:
    policy = HealthPolicy(down_after_errors=policy_errors)
    now = T0 + timedelta(minutes=61)
    summaries = source_health(history, now, policy)
    per_type = type_health(history, now, policy)
    assert {s.source for s in summaries} == {o.source for o in history}
    assert sum(len(s.types) for s in summaries) == len(per_type)
    for summary in summaries:
        statuses = {t.status for t in summary.types}
        assert set(summary.failing) == {
            t.resource_type for t in summary.types if t.status != "healthy"
        }
        if statuses == {"down"}:
            assert summary.status == "down"
        elif statuses == {"healthy"}:
            assert summary.status == "healthy" and summary.last_error is None
        else:
            assert summary.status == "degraded"
            # It names what is wrong: the worst type's error starts with that type.
            assert summary.last_error is None or summary.last_error.startswith(summary.failing[0])
        worst = max(t.consecutive_errors for t in summary.types)
        assert summary.consecutive_errors == worst
