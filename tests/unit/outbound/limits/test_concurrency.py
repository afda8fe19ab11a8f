"""The AIMD limit and the limiter: examples, and properties for any sequence of samples or of
sends, answers and cancellations."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrbridge.errors import SinkError
from ehrbridge.outbound.limits import (
    AdaptiveLimiter,
    AimdLimit,
    ConcurrencyLimits,
    Outcome,
)


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
            limit.update(sent=now, latency=1.0, outcome=Outcome.OK, in_flight=4)
            count, now = count + 1, now + 1
        return count, now

    limit, now, counts = aimd(initial=5, max_patience=8), 0.0, []
    for _ in range(5):
        limit.update(sent=now, latency=0.1, outcome=Outcome.OVERLOADED, in_flight=5)
        count, now = successes_to_regrow(limit, now + 1)
        counts.append(count)
    # the same level failing again doubles the patience, up to max_patience
    assert counts[1] > counts[0] * 1.5
    assert counts[3] == counts[4] > counts[2]
    # a success with as many in flight as where it failed is no proof of room (the requests
    # in flight at the sink may have been fewer): it takes one off the patience...
    limit.update(sent=now, latency=0.1, outcome=Outcome.OVERLOADED, in_flight=5)
    limit.update(sent=now + 1, latency=1.0, outcome=Outcome.OK, in_flight=5)
    count, now = successes_to_regrow(limit, now + 2)
    assert count > counts[0] * 2
    # ...so many of them bring it down to one
    limit.update(sent=now, latency=0.1, outcome=Outcome.OVERLOADED, in_flight=5)
    for _ in range(8):
        limit.update(sent=now + 1, latency=1.0, outcome=Outcome.OK, in_flight=5)
    count, now = successes_to_regrow(limit, now + 2)
    assert count <= counts[0]
    # ...and one with more in flight forgets the level: the sink has room beyond it
    limit.update(sent=now + 50, latency=0.1, outcome=Outcome.OVERLOADED, in_flight=5)
    limit.update(sent=now + 51, latency=1.0, outcome=Outcome.OK, in_flight=6)
    _, now = successes_to_regrow(limit, now + 52)
    limit.update(sent=now, latency=0.1, outcome=Outcome.OVERLOADED, in_flight=5)
    assert successes_to_regrow(limit, now + 1)[0] <= counts[0]


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
