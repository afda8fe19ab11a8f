"""The adaptive limit against a sink whose capacity changes mid-run: a discrete-event simulation
on a virtual clock (no sleeps; time is the simulation's, never the machine's)."""

from __future__ import annotations

import asyncio
import heapq
import random
from dataclasses import dataclass, field

import pytest

from ehrbridge.outbound.limits import AdaptiveLimiter, ConcurrencyLimits, Outcome

#: workers sending to the sink, more than the limit ever allows, so the limiter is the bound
WORKERS = 24
#: the configured concurrency
MAX = 16
#: a success's latency in virtual seconds (a little jitter on top); an overloaded sink's 503 is fast
LATENCY, REJECT_LATENCY = 1.0, 0.05


@dataclass
class CapacitySink:
    """A fake sink that serves ``capacity`` requests at once and answers 503 to any beyond."""

    capacity: int
    rng: random.Random
    now: float = 0.0
    in_flight: int = 0
    #: (when it answers, order, the waiting request, its outcome)
    answers: list[tuple[float, int, asyncio.Future[Outcome], Outcome]] = field(default_factory=list)
    sent: int = 0

    async def send(self) -> Outcome:
        self.in_flight += 1
        self.sent += 1
        if self.in_flight > self.capacity:
            outcome, latency = Outcome.OVERLOADED, REJECT_LATENCY
        else:
            outcome, latency = Outcome.OK, LATENCY * (1 + 0.1 * self.rng.random())
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        heapq.heappush(self.answers, (self.now + latency, self.sent, answer, outcome))
        return await answer

    def answer_next(self) -> None:
        when, _, answer, outcome = heapq.heappop(self.answers)
        self.now = when
        self.in_flight -= 1
        answer.set_result(outcome)


@dataclass
class Sample:
    capacity: int
    outcome: Outcome
    limit: int  #: the limit once the sample was learnt
    runner: int = 0  #: whose limiter learnt it
    #: every runner's limit then
    limits: tuple[int, ...] = ()


async def simulate(
    capacities: list[int], per_phase: int, seed: int = 7, runners: int = 1
) -> list[Sample]:
    """Run the sink at each capacity in turn for ``per_phase`` answers; one sample per answer.
    Each runner has its own limiter and ``WORKERS`` workers; the sink is shared."""
    sink = CapacitySink(capacity=capacities[0], rng=random.Random(seed))
    limiters = [
        AdaptiveLimiter(ConcurrencyLimits(max=MAX), clock=lambda: sink.now) for _ in range(runners)
    ]
    samples: list[Sample] = []

    async def worker(runner: int) -> None:
        limiter = limiters[runner]
        while True:
            async with limiter.slot() as slot:
                outcome = await sink.send()
                slot.done(outcome)
            limits = tuple(each.state().limit for each in limiters)
            samples.append(Sample(sink.capacity, outcome, limits[runner], runner, limits))

    def waiting() -> int:
        return sum(limiter.state().waiting for limiter in limiters)

    async def settled() -> None:
        # every worker is either waiting for its answer or for a place in its limiter; each
        # sleep(0) is one pass of the event loop, not a wait for time
        while len(sink.answers) + waiting() < WORKERS * runners:  # noqa: ASYNC110
            await asyncio.sleep(0)

    workers = [
        asyncio.create_task(worker(runner)) for runner in range(runners) for _ in range(WORKERS)
    ]
    try:
        for capacity in capacities:
            sink.capacity = capacity
            for _ in range(per_phase):
                await settled()
                sink.answer_next()
            await settled()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return samples


def converged_after(samples: list[Sample], low: int, high: int) -> int:
    """How many samples of a phase came before the limit stayed within [low, high] to its end."""
    outside = [i for i, s in enumerate(samples) if not low <= s.limit <= high]
    return outside[-1] + 1 if outside else 0


@pytest.mark.parametrize("seed", [1, 7, 12])
async def test_the_limit_follows_the_sink_capacity_as_it_changes(seed: int) -> None:
    capacities, per_phase = [8, 3, 12], 600
    samples = await simulate(capacities, per_phase, seed)

    assert len(samples) >= per_phase * len(capacities)
    for capacity in capacities:
        phase = [s for s in samples if s.capacity == capacity]
        # near C: at most one above it (that is how AIMD probes), and not far below
        settle = converged_after(phase, low=max(1, int(capacity * 0.7)), high=capacity + 1)
        assert settle <= 150, (capacity, settle, [s.limit for s in phase[:200]])
        steady = phase[settle:]
        mean = sum(s.limit for s in steady) / len(steady)
        assert capacity - 1 <= mean <= capacity + 0.5, (capacity, mean)
        # in the phase's second half a request over the capacity is rare: the limit probes
        # patiently where the sink failed before
        late = rejected(phase[len(phase) // 2 :])
        assert late < 0.04, (capacity, late)
    # all told, the changes of capacity included
    assert rejected(samples) < 0.06, rejected(samples)


def rejected(samples: list[Sample]) -> float:
    return sum(s.outcome is Outcome.OVERLOADED for s in samples) / len(samples)


@pytest.mark.parametrize("capacity", [6, 20])
async def test_two_runners_together_settle_near_the_shared_capacity(capacity: int) -> None:
    samples = await simulate([capacity], 1500, runners=2)
    late = samples[len(samples) // 2 :]
    together = [sum(s.limits) for s in late]
    assert capacity - 0.5 <= sum(together) / len(together) <= capacity + 0.5
    assert capacity - 2 <= min(together) and max(together) <= capacity + 1
    assert rejected(late) < 0.04
