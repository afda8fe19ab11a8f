"""How an attempt ended, as the limits read it: :func:`classify`."""

from __future__ import annotations

import pytest

from ehrbridge.errors import SinkConflict, SinkError
from ehrbridge.outbound.limits import Outcome, classify


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
