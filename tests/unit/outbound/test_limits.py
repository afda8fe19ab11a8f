"""The dispatcher's limits: retries, the circuit breaker, the adaptive concurrency limit and its
limiter; examples, and properties that hold for any sequence of outcomes."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ehrbridge.errors import SinkConflict, SinkError
from ehrbridge.outbound.limits import (
    AdaptiveLimiter,
    AimdLimit,
    BreakerLimits,
    Circuit,
    CircuitBreaker,
    ConcurrencyLimits,
    GiveUp,
    Outcome,
    Retry,
    RetryLimits,
    Ticket,
    backoff_ceiling,
    classify,
    next_attempt,
)
from ehrbridge.testing import FakeClock

NOW = datetime(2026, 12, 4, 9, tzinfo=UTC)
TRANSIENT = SinkError(status=503, transient=True)
SECONDS = timedelta(seconds=1)


# --- classify ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, Outcome.OK),
        (SinkError(status=422), Outcome.REFUSED),
        (SinkConflict([]), Outcome.REFUSED),
        (SinkError(status=429, transient=True, retry_after=3), Outcome.THROTTLED),
        (SinkError(status=503, transient=True), Outcome.OVERLOADED),
        (SinkError(status=504, transient=True), Outcome.OVERLOADED),
        (SinkError(transient=True, may_have_reached_sink=True), Outcome.OVERLOADED),
        (SinkError(status=502, transient=True), Outcome.FAILED),
    ],
)
def test_classify_tells_the_outcomes_apart(error: SinkError | None, outcome: Outcome) -> None:
    assert classify(error) is outcome


# --- retries -------------------------------------------------------------------------------------


def attempt(
    attempts: int = 1,
    age: timedelta = timedelta(0),
    error: SinkError = TRANSIENT,
    limits: RetryLimits | None = None,
    rand: float = 0.5,
) -> Retry | GiveUp:
    return next_attempt(
        attempts=attempts,
        age=age,
        error=error,
        limits=limits or RetryLimits(),
        now=NOW,
        rand=lambda: rand,
    )


def test_a_permanent_error_is_never_retried() -> None:
    for error in (SinkError(status=422), SinkError(status=400), SinkConflict([])):
        outcome = attempt(error=error)
        assert isinstance(outcome, GiveUp)
        assert "permanent" in outcome.reason


def test_the_backoff_is_full_jitter_under_a_doubling_ceiling() -> None:
    limits = RetryLimits(backoff_base=2 * SECONDS, backoff_max=60 * SECONDS)
    assert attempt(3, limits=limits, rand=0.0) == Retry(at=NOW, delay=timedelta(0))
    # ceiling 2 s * 2 ** 2 = 8 s; half of it
    assert attempt(3, limits=limits, rand=0.5) == Retry(at=NOW + 4 * SECONDS, delay=4 * SECONDS)
    # past backoff_max the ceiling stops growing
    assert attempt(9, limits=limits, rand=0.5) == Retry(at=NOW + 30 * SECONDS, delay=30 * SECONDS)


def test_items_that_failed_together_do_not_come_back_together() -> None:
    rng = random.Random(3)
    delays = {
        next_attempt(
            attempts=4,
            age=timedelta(0),
            error=TRANSIENT,
            limits=RetryLimits(),
            now=NOW,
            rand=rng.random,
        )
        for _ in range(50)
    }
    assert len(delays) == 50


def test_a_longer_retry_after_wins_and_a_shorter_one_does_not() -> None:
    throttled = SinkError(status=429, transient=True, retry_after=7.0)
    assert attempt(1, error=throttled, rand=0.5) == Retry(at=NOW + 7 * SECONDS, delay=7 * SECONDS)
    # the fifth attempt's backoff ceiling is 16 s: 0.75 of it is longer than 7 s
    assert attempt(5, error=throttled, rand=0.75).delay == 12 * SECONDS  # type: ignore[union-attr]


def test_retries_stop_at_max_attempts() -> None:
    limits = RetryLimits(max_attempts=3)
    assert isinstance(attempt(2, limits=limits), Retry)
    spent = attempt(3, limits=limits)
    assert spent == GiveUp(reason="3 attempts, the most allowed (max_attempts)")


def test_retries_stop_at_max_age_and_a_backoff_is_cut_to_meet_it() -> None:
    limits = RetryLimits(max_age=timedelta(hours=1), backoff_max=timedelta(minutes=30))
    too_old = attempt(2, age=timedelta(hours=1), limits=limits)
    assert isinstance(too_old, GiveUp)
    assert "max_age" in too_old.reason
    # 10 s left; the tenth attempt's backoff would be far longer
    last = attempt(9, age=timedelta(minutes=59, seconds=50), limits=limits, rand=0.99)
    assert last == Retry(at=NOW + 10 * SECONDS, delay=10 * SECONDS)
    # a Retry-After that reaches past max_age gives up: we may not come back earlier
    asked = SinkError(status=429, transient=True, retry_after=20.0)
    late = attempt(2, age=timedelta(minutes=59, seconds=50), error=asked, limits=limits)
    assert isinstance(late, GiveUp)
    assert "asked to wait" in late.reason


@given(
    attempts=st.integers(1, 40),
    age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    transient=st.booleans(),
    retry_after=st.none() | st.floats(0, 200_000, allow_nan=False),
    rand=st.floats(0, 1, exclude_max=True),
    max_attempts=st.integers(1, 30),
    base=st.integers(1, 120),
    extra=st.integers(0, 3600),
    max_age=st.integers(1, 200_000),
)
def test_every_answer_keeps_to_the_limits(
    attempts: int,
    age: timedelta,
    transient: bool,
    retry_after: float | None,
    rand: float,
    max_attempts: int,
    base: int,
    extra: int,
    max_age: int,
) -> None:
    limits = RetryLimits(
        max_attempts=max_attempts,
        max_age=max_age * SECONDS,
        backoff_base=base * SECONDS,
        backoff_max=(base + extra) * SECONDS,
    )
    error = SinkError(status=503, transient=transient, retry_after=retry_after)
    answer = next_attempt(
        attempts=attempts, age=age, error=error, limits=limits, now=NOW, rand=lambda: rand
    )
    if not isinstance(answer, Retry):
        assert (
            not transient
            or attempts >= max_attempts
            or age >= limits.max_age
            or (retry_after is not None and age + retry_after * SECONDS > limits.max_age)
        )
        return
    assert transient and attempts < max_attempts
    assert answer.at == NOW + answer.delay
    assert timedelta(0) <= answer.delay
    # never after max_age
    assert age + answer.delay <= limits.max_age
    # a Retry-After is honoured in full
    if retry_after is not None:
        assert answer.delay >= retry_after * SECONDS - timedelta(microseconds=1)
    else:
        assert answer.delay <= backoff_ceiling(attempts, limits) <= limits.backoff_max


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_age": timedelta(0)}, "max_age"),
        ({"backoff_base": -SECONDS}, "backoff_base"),
        ({"backoff_base": 10 * SECONDS, "backoff_max": SECONDS}, "backoff_max"),
    ],
)
def test_bad_retry_limits_are_refused_by_name(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        RetryLimits(**changes)  # type: ignore[arg-type]


def test_attempts_count_the_failed_one() -> None:
    with pytest.raises(ValueError, match="attempts"):
        attempt(0)


# --- the circuit breaker -------------------------------------------------------------------------


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


# --- the concurrency limit -----------------------------------------------------------------------


def aimd(**changes: object) -> AimdLimit:
    return AimdLimit(ConcurrencyLimits(**{"max": 20, "initial": 10, **changes}))  # type: ignore[arg-type]


def test_a_limits_worth_of_successes_adds_about_one() -> None:
    limit = aimd()
    for i in range(10):
        limit.update(sent=float(i), latency=1.0, outcome=Outcome.OK, in_flight=10)
    assert limit.limit == 10  # ten steps of 1/10.x fall just short
    limit.update(sent=10.0, latency=1.0, outcome=Outcome.OK, in_flight=10)
    assert limit.limit == 11


def test_an_idle_limit_does_not_grow() -> None:
    limit = aimd()
    for i in range(100):
        limit.update(sent=float(i), latency=1.0, outcome=Outcome.OK, in_flight=4)
    assert limit.limit == 10


@pytest.mark.parametrize("outcome", [Outcome.THROTTLED, Outcome.OVERLOADED])
def test_a_burst_of_failures_is_one_cut(outcome: Outcome) -> None:
    limit = aimd()
    # ten requests sent together all fail; the first answer cuts, the others were sent before
    for i in range(10):
        limit.update(sent=0.0, latency=0.1 + i / 100, outcome=outcome, in_flight=10)
    assert limit.limit == 9
    # a request sent after the cut fails too: that is news, and cuts again
    limit.update(sent=0.2, latency=0.1, outcome=outcome, in_flight=9)
    assert limit.limit == 8


def test_the_cut_is_by_the_backoff_ratio_or_at_least_one() -> None:
    limit = aimd(max=100, initial=100, backoff_ratio=0.5)
    limit.update(sent=0.0, latency=0.1, outcome=Outcome.OVERLOADED, in_flight=100)
    assert limit.limit == 50
    small = aimd(initial=3)
    small.update(sent=0.0, latency=0.1, outcome=Outcome.OVERLOADED, in_flight=3)
    assert small.limit == 2


def test_other_transient_failures_leave_the_limit() -> None:
    limit = aimd()
    for i in range(50):
        limit.update(sent=float(i), latency=0.1, outcome=Outcome.FAILED, in_flight=10)
    assert limit.limit == 10
    assert limit.baseline is None


def test_a_sink_that_turns_slow_is_cut_and_the_baseline_follows_if_it_stays_slow() -> None:
    limit, now = aimd(), 0.0

    def answers(count: int, latency: float, outcome: Outcome = Outcome.OK) -> list[int]:
        nonlocal now
        limits = []
        for _ in range(count):
            limit.update(sent=now, latency=latency, outcome=outcome, in_flight=limit.limit)
            now += latency / limit.limit  # a limit's worth of answers per round trip
            limits.append(limit.limit)
        return limits

    answers(50, 1.0)
    assert limit.baseline == pytest.approx(1.0)
    before = limit.limit
    answers(1, 3.0)  # one slow answer is noise
    assert limit.limit >= before
    # the sink turns four times slower: the recent latency passes twice the baseline: cuts
    slow = answers(100, 4.0)
    assert min(slow) < before
    # it stays slow: the baseline follows, and the limit grows back
    answers(2000, 4.0)
    assert limit.baseline is not None and limit.baseline > 3.0
    assert limit.limit >= 18
    # fast 503s never drag the baseline down
    baseline = limit.baseline
    answers(1, 0.01, Outcome.OVERLOADED)
    assert limit.baseline == baseline


@pytest.mark.parametrize("sigma", [0.2, 0.5])
def test_noisy_latency_alone_does_not_pull_the_limit_down(sigma: float) -> None:
    # a sink with room for all, answering in a log-normal spread of latencies (at sigma 0.5 its
    # slowest in a hundred takes over three times its median)
    rng, limit, now = random.Random(5), aimd(initial=20), 0.0
    for _ in range(3000):
        latency = math.exp(rng.gauss(0, sigma))
        limit.update(sent=now, latency=latency, outcome=Outcome.OK, in_flight=limit.limit)
        now += latency / limit.limit
    assert limit.limit >= 18


def test_probing_is_patient_where_the_sink_failed_before() -> None:
    def successes_to_regrow(limit: AimdLimit, now: float) -> tuple[int, float]:
        count = 0
        while limit.limit < 5:
            limit.update(sent=now, latency=1.0, outcome=Outcome.OK, in_flight=limit.limit)
            count, now = count + 1, now + 1
        return count, now

    limit, now, counts = aimd(initial=5, max_patience=8), 0.0, []
    for _ in range(5):
        limit.update(sent=now, latency=0.1, outcome=Outcome.OVERLOADED, in_flight=5)
        count, now = successes_to_regrow(limit, now + 1)
        counts.append(count)
    # the same level failing again doubles the patience, up to max_patience
    assert counts[1] > counts[0] * 1.5
    assert counts[3] == counts[4]
    # a success with as many in flight as where it failed forgets the level
    limit.update(sent=now, latency=1.0, outcome=Outcome.OK, in_flight=5)
    limit.update(sent=now + 1, latency=0.1, outcome=Outcome.OVERLOADED, in_flight=5)
    assert successes_to_regrow(limit, now + 2)[0] <= counts[0]


@given(
    samples=st.lists(
        st.tuples(
            st.floats(0, 10, allow_nan=False),
            st.sampled_from(Outcome),
            st.integers(0, 30),
        ),
        max_size=200,
    ),
    low=st.integers(1, 5),
    span=st.integers(0, 20),
)
def test_the_limit_stays_between_its_floor_and_the_configured_concurrency(
    samples: list[tuple[float, Outcome, int]], low: int, span: int
) -> None:
    limit = AimdLimit(ConcurrencyLimits(min=low, max=low + span))
    now = 0.0
    for latency, outcome, in_flight in samples:
        limit.update(sent=now, latency=latency, outcome=outcome, in_flight=in_flight)
        assert low <= limit.limit <= low + span
        now += 0.5


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"max": 0}, "max"),
        ({"min": 3, "max": 2}, "min"),
        ({"initial": 9, "max": 4}, "initial"),
        ({"backoff_ratio": 1.0}, "backoff_ratio"),
        ({"tolerance": 1.0}, "tolerance"),
        ({"baseline_decay": 0.0}, "baseline_decay"),
        ({"smoothing": 1.5}, "smoothing"),
        ({"max_patience": 0}, "max_patience"),
    ],
)
def test_bad_concurrency_limits_are_refused_by_name(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        ConcurrencyLimits(**changes)  # type: ignore[arg-type]


# --- the limiter ---------------------------------------------------------------------------------


class Gate:
    """Requests held open until the test lets each go."""

    def __init__(self, limiter: AdaptiveLimiter) -> None:
        self.limiter = limiter
        self.release: dict[int, asyncio.Event] = {}
        self.started: list[int] = []

    async def request(self, n: int, outcome: Outcome | SinkError | None = None) -> None:
        self.release[n] = asyncio.Event()
        async with self.limiter.slot() as slot:
            self.started.append(n)
            await self.release[n].wait()
            if isinstance(outcome, SinkError):
                raise outcome
            slot.done(outcome)


async def passes(count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_the_limiter_admits_up_to_the_limit_first_come_first_served() -> None:
    limiter = AdaptiveLimiter(ConcurrencyLimits(max=3), clock=lambda: 0.0)
    gate = Gate(limiter)
    tasks = [asyncio.create_task(gate.request(n)) for n in range(6)]
    await passes()
    assert gate.started == [0, 1, 2]
    assert limiter.state().in_flight == 3
    assert limiter.state().waiting == 3
    gate.release[1].set()
    await passes()
    assert gate.started == [0, 1, 2, 3]
    for n in (0, 2, 3, 4, 5):
        gate.release[n].set()
        await passes()
    await asyncio.gather(*tasks)
    assert gate.started == list(range(6))
    assert limiter.state().in_flight == 0


async def test_the_limit_drops_below_the_in_flight_and_no_new_request_goes_until_below() -> None:
    limiter = AdaptiveLimiter(ConcurrencyLimits(max=4), clock=lambda: 0.0)
    gate = Gate(limiter)
    overloaded = SinkError(status=503, transient=True)
    first = [asyncio.create_task(gate.request(0, overloaded))]
    rest = [asyncio.create_task(gate.request(n)) for n in (1, 2, 3)]
    await passes()
    waiting = [asyncio.create_task(gate.request(n)) for n in (4, 5)]
    await passes()
    gate.release[0].set()  # the 503: the limit is cut from 4 to 3, with 3 still in flight
    await passes()
    assert limiter.state().limit == 3
    assert limiter.state().in_flight == 3
    assert gate.started == [0, 1, 2, 3]  # nobody took the freed place
    gate.release[1].set()
    await passes()
    assert gate.started == [0, 1, 2, 3, 4]  # one finished: one goes
    for n in (2, 3, 4, 5):
        gate.release[n].set()
        await passes()
    with pytest.raises(SinkError):
        await first[0]
    await asyncio.gather(*rest, *waiting)


async def test_a_sink_error_leaving_the_block_is_learnt_and_a_cancellation_is_not() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(ConcurrencyLimits(max=5), clock=lambda: now[0])
    with pytest.raises(SinkError):
        async with limiter.slot():
            raise SinkError(status=429, transient=True)
    assert limiter.state().limit == 4
    started = asyncio.Event()

    async def hung() -> None:
        async with limiter.slot():
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hung())
    await started.wait()
    now[0] = 100.0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    state = limiter.state()
    assert (state.limit, state.in_flight, state.recent, state.baseline) == (4, 0, None, None)


async def test_a_slot_that_sent_nothing_teaches_the_limit_nothing() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(ConcurrencyLimits(max=5, initial=2), clock=lambda: now[0])
    async with limiter.slot():
        now[0] = 1.0
    for _ in range(50):
        async with limiter.slot() as slot:
            now[0] += 0.001  # the gate refused the item: the sink was never asked
            slot.unsent()
    state = limiter.state()
    assert (state.limit, state.baseline, state.in_flight) == (2, 1.0, 0)


async def test_a_cancelled_waiter_gives_no_place_away() -> None:
    limiter = AdaptiveLimiter(ConcurrencyLimits(max=1), clock=lambda: 0.0)
    gate = Gate(limiter)
    holder = asyncio.create_task(gate.request(0))
    await passes()
    quitter = asyncio.create_task(gate.request(1))
    after = asyncio.create_task(gate.request(2))
    await passes()
    quitter.cancel()
    await passes()
    gate.release[0].set()
    await passes()
    assert gate.started == [0, 2]
    gate.release[2].set()
    await asyncio.gather(holder, after)
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert limiter.state().in_flight == 0
    assert limiter.state().waiting == 0


async def test_the_limiter_state_for_operators() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(ConcurrencyLimits(max=6, initial=2), clock=lambda: now[0])
    async with limiter.slot():
        assert limiter.state().in_flight == 1
        now[0] = 0.25
    assert limiter.state().as_json() == {
        "limit": 2,
        "max": 6,
        "in_flight": 0,
        "waiting": 0,
        "recent": 0.25,
        "baseline": 0.25,
    }


@given(
    script=st.lists(
        st.tuples(
            st.sampled_from(["send", "answer", "cancel", "answer and cancel the next"]),
            st.integers(0, 1000),
            st.sampled_from(Outcome),
        ),
        max_size=80,
    ),
    limit=st.integers(1, 6),
)
@settings(max_examples=150, deadline=None)
def test_the_limiter_never_holds_a_place_idle_nor_gives_one_twice(
    script: list[tuple[str, int, Outcome]], limit: int
) -> None:
    asyncio.run(run_script(script, limit))


async def run_script(script: list[tuple[str, int, Outcome]], limit: int) -> None:
    clock = [0.0]
    limiter = AdaptiveLimiter(ConcurrencyLimits(max=limit), clock=lambda: clock[0])
    answers: dict[int, asyncio.Future[Outcome]] = {}
    inside: set[int] = set()
    tasks: dict[int, asyncio.Task[None]] = {}

    async def request(n: int) -> None:
        async with limiter.slot() as slot:
            inside.add(n)
            try:
                answers[n] = asyncio.get_running_loop().create_future()
                slot.done(await answers[n])
            finally:
                inside.discard(n)

    def check() -> None:
        state = limiter.state()
        assert state.in_flight == len(inside) <= limit
        waiting = [n for n, t in tasks.items() if not t.done() and n not in inside]
        assert state.waiting == len(waiting)
        # nobody waits while there is room
        assert not waiting or state.in_flight >= state.limit

    for action, which, outcome in script:
        clock[0] += 0.1
        if action == "send":
            n = len(tasks)
            tasks[n] = asyncio.create_task(request(n))
        elif action == "answer" and inside:
            n = sorted(inside)[which % len(inside)]
            answers[n].set_result(outcome)
        elif action == "cancel" and tasks:
            live = [n for n, t in tasks.items() if not t.done()]
            if live:
                tasks[live[which % len(live)]].cancel()
        elif action == "answer and cancel the next" and inside:
            # the answered request hands its place to the first waiter; that waiter is cancelled
            # before it runs, and must pass the place on
            answers[min(inside)].set_result(outcome)
            await asyncio.sleep(0)
            waiting = [n for n, t in tasks.items() if not t.done() and n not in inside]
            if waiting:
                tasks[waiting[0]].cancel()
        await passes()
        check()
    # answer everything still asked: every request ends, every place comes back
    for _ in range(len(tasks) + 1):
        for n in list(inside):
            if not answers[n].done():
                answers[n].set_result(Outcome.OK)
        await passes()
        check()
    assert all(t.done() for t in tasks.values())
    assert (limiter.state().in_flight, limiter.state().waiting) == (0, 0)
