"""The circuit breaker: examples, and a state machine that holds its promises for any sequence of
requests, outcomes and waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ehrbridge.outbound.limits import (
    BreakerLimits,
    Circuit,
    CircuitBreaker,
    Outcome,
    Ticket,
)
from ehrbridge.testing import FakeClock

NOW = datetime(2026, 12, 4, 9, tzinfo=UTC)
SECONDS = timedelta(seconds=1)


def breaker(**changes: object) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock(NOW)
    return CircuitBreaker(BreakerLimits(**changes), clock=clock), clock  # type: ignore[arg-type]


def send(circuit: CircuitBreaker, outcome: Outcome) -> Ticket:
    ticket = circuit.allow()
    assert ticket is not None
    circuit.record(ticket, outcome)
    return ticket


def test_consecutive_failures_open_the_circuit_and_a_success_resets_the_count() -> None:
    circuit, _ = breaker(failures=3)
    for outcome in (Outcome.OVERLOADED, Outcome.FAILED, Outcome.OK, Outcome.FAILED):
        send(circuit, outcome)
    assert circuit.state().circuit is Circuit.CLOSED
    assert circuit.state().consecutive_failures == 1
    send(circuit, Outcome.FAILED)
    send(circuit, Outcome.OVERLOADED)
    state = circuit.state()
    assert state.circuit is Circuit.OPEN
    assert state.open_until == NOW + BreakerLimits().cooldown
    assert circuit.allow() is None


def test_a_failure_rate_over_the_window_opens_the_circuit() -> None:
    circuit, clock = breaker(failures=100, min_samples=10, failure_rate=0.5)
    # nine successes, then they fall out of the window
    for _ in range(9):
        send(circuit, Outcome.OK)
    clock.advance(timedelta(seconds=61))
    for _ in range(5):
        send(circuit, Outcome.FAILED)
        send(circuit, Outcome.OK)
    # half of ten failed, but a success never opens the circuit
    assert circuit.state().circuit is Circuit.CLOSED
    send(circuit, Outcome.FAILED)
    assert circuit.state().circuit is Circuit.OPEN


def test_throttling_and_refusals_never_open_the_circuit() -> None:
    circuit, _ = breaker(failures=2, min_samples=2)
    for _ in range(50):
        send(circuit, Outcome.THROTTLED)
        send(circuit, Outcome.REFUSED)
    assert circuit.state().circuit is Circuit.CLOSED
    assert circuit.state().consecutive_failures == 0


def test_the_half_open_circuit_lets_one_probe_go_and_its_success_closes_it() -> None:
    circuit, clock = breaker(failures=1, cooldown=5 * SECONDS)
    send(circuit, Outcome.FAILED)
    clock.advance(4 * SECONDS)
    assert circuit.allow() is None
    clock.advance(SECONDS)
    probe = circuit.allow()
    assert probe is not None and probe.probe
    assert circuit.state().circuit is Circuit.HALF_OPEN
    assert circuit.allow() is None  # one probe at a time
    circuit.record(probe, Outcome.OK)
    assert circuit.state().circuit is Circuit.CLOSED
    assert circuit.state().trips == 0
    assert circuit.allow() is not None


def test_a_failed_probe_opens_the_circuit_again_for_longer_up_to_the_cap() -> None:
    circuit, clock = breaker(failures=1, cooldown=5 * SECONDS, max_cooldown=30 * SECONDS)
    send(circuit, Outcome.OVERLOADED)
    cooldowns = []
    for _ in range(5):
        state = circuit.state()
        assert state.open_until is not None
        cooldowns.append((state.open_until - clock()).total_seconds())
        clock.advance(state.open_until - clock())
        send(circuit, Outcome.OVERLOADED)  # the probe fails
    assert cooldowns == [5, 10, 20, 30, 30]
    clock.advance(30 * SECONDS)
    send(circuit, Outcome.OK)
    # closed by a probe, the next trip starts from the first cool-down again
    send(circuit, Outcome.OVERLOADED)
    assert circuit.state().open_until == clock() + 5 * SECONDS


def test_a_throttled_probe_leaves_the_circuit_half_open_for_the_next() -> None:
    circuit, clock = breaker(failures=1)
    send(circuit, Outcome.FAILED)
    clock.advance(timedelta(minutes=1))
    send(circuit, Outcome.THROTTLED)
    assert circuit.state().circuit is Circuit.HALF_OPEN
    send(circuit, Outcome.OK)
    assert circuit.state().circuit is Circuit.CLOSED


def test_outcomes_of_requests_let_go_before_the_circuit_changed_count_for_nothing() -> None:
    circuit, clock = breaker(failures=2)
    early = [circuit.allow() for _ in range(5)]
    send(circuit, Outcome.FAILED)
    send(circuit, Outcome.FAILED)
    assert circuit.state().circuit is Circuit.OPEN
    # the rest of the burst, in flight when it opened, does not open it again for longer
    for ticket in early:
        assert ticket is not None
        circuit.record(ticket, Outcome.FAILED)
    assert circuit.state().trips == 1
    clock.advance(timedelta(minutes=1))
    probe = circuit.allow()
    assert probe is not None
    # nor does a late success from before close the half-open circuit
    assert early[0] is not None
    circuit.record(early[0], Outcome.OK)
    assert circuit.state().circuit is Circuit.HALF_OPEN


def test_a_lost_probe_lets_another_go_after_the_probe_timeout() -> None:
    circuit, clock = breaker(failures=1, probe_timeout=30 * SECONDS)
    send(circuit, Outcome.FAILED)
    clock.advance(timedelta(minutes=1))
    lost = circuit.allow()
    assert lost is not None
    clock.advance(29 * SECONDS)
    assert circuit.allow() is None
    clock.advance(SECONDS)
    second = circuit.allow()
    assert second is not None and second.probe
    circuit.record(lost, Outcome.OK)  # too late: it counts for nothing
    assert circuit.state().circuit is Circuit.HALF_OPEN
    circuit.record(second, Outcome.OK)
    assert circuit.state().circuit is Circuit.CLOSED


def test_a_cancelled_probe_frees_its_place() -> None:
    circuit, clock = breaker(failures=1)
    send(circuit, Outcome.FAILED)
    clock.advance(timedelta(minutes=1))
    probe = circuit.allow()
    assert probe is not None
    circuit.cancel(probe)
    assert circuit.allow() is not None


def test_the_breaker_state_for_operators() -> None:
    circuit, _ = breaker(failures=1)
    assert circuit.state().as_json() == {
        "circuit": "closed",
        "open_until": None,
        "trips": 0,
        "consecutive_failures": 0,
    }
    send(circuit, Outcome.FAILED)
    assert circuit.state().as_json() == {
        "circuit": "open",
        "open_until": "2026-12-04T09:00:05+00:00",
        "trips": 1,
        "consecutive_failures": 0,
    }


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"failures": 0}, "failures"),
        ({"failure_rate": 0.0}, "failure_rate"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"window": timedelta(0)}, "window"),
        ({"cooldown": 10 * SECONDS, "max_cooldown": SECONDS}, "max_cooldown"),
    ],
)
def test_bad_breaker_limits_are_refused_by_name(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        BreakerLimits(**changes)  # type: ignore[arg-type]


class BreakerMachine(RuleBasedStateMachine):
    """Any sequence of requests, outcomes and waits keeps the breaker's promises."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(NOW)
        self.limits = BreakerLimits(
            failures=3,
            min_samples=6,
            cooldown=5 * SECONDS,
            max_cooldown=60 * SECONDS,
            probe_timeout=20 * SECONDS,
        )
        self.circuit = CircuitBreaker(self.limits, clock=self.clock)
        self.out: list[tuple[Ticket, datetime]] = []

    @rule()
    def ask(self) -> None:
        before = self.circuit.state()
        ticket = self.circuit.allow()
        if before.circuit is Circuit.OPEN:
            assert before.open_until is not None
            assert (ticket is None) == (self.clock() < before.open_until)
        if before.circuit is Circuit.CLOSED:
            assert ticket is not None and not ticket.probe
        if ticket is not None:
            self.out.append((ticket, self.clock()))

    @precondition(lambda self: self.out)
    @rule(which=st.integers(0, 1000), outcome=st.sampled_from(Outcome))
    def answer(self, which: int, outcome: Outcome) -> None:
        ticket, _ = self.out.pop(which % len(self.out))
        before = self.circuit.state()
        self.circuit.record(ticket, outcome)
        after = self.circuit.state()
        if outcome in (Outcome.THROTTLED, Outcome.OK, Outcome.REFUSED):
            assert after.circuit is not Circuit.OPEN or before.circuit is Circuit.OPEN
        if outcome is Outcome.THROTTLED:
            assert after.circuit is before.circuit
            assert after.consecutive_failures == before.consecutive_failures

    @rule(seconds=st.integers(0, 90))
    def wait(self, seconds: int) -> None:
        self.clock.advance(seconds * SECONDS)

    @invariant()
    def one_probe_at_a_time(self) -> None:
        if self.circuit.state().circuit is Circuit.HALF_OPEN:
            live = [
                sent
                for ticket, sent in self.out
                if ticket.probe and self.clock() - sent < self.limits.probe_timeout
            ]
            assert len(live) <= 1

    @invariant()
    def the_cooldown_stays_within_bounds(self) -> None:
        state = self.circuit.state()
        assert (state.open_until is not None) == (state.circuit is Circuit.OPEN)
        if state.open_until is not None:
            assert state.open_until - self.clock() <= self.limits.max_cooldown


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=200, stateful_step_count=60)
