"""Retries: full-jitter backoff, ``Retry-After``, attempts and age; examples, and a property that
holds for any input."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehrbridge.errors import SinkConflict, SinkError
from ehrbridge.outbound.limits import (
    GiveUp,
    Retry,
    RetryLimits,
    backoff_ceiling,
    next_attempt,
)

NOW = datetime(2026, 12, 4, 9, tzinfo=UTC)
TRANSIENT = SinkError(status=503, transient=True)
SECONDS = timedelta(seconds=1)


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
    # even one for longer than a timedelta holds
    forever = SinkError(status=429, transient=True, retry_after=1e300)
    assert isinstance(attempt(1, error=forever), GiveUp)


@given(
    attempts=st.integers(1, 40),
    age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    transient=st.booleans(),
    retry_after=st.none() | st.floats(0, 1e300, allow_nan=False) | st.floats(0, 200_000),
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
            or (retry_after is not None and retry_after > (limits.max_age - age).total_seconds())
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
