"""policy.combine: the LLM is asked only after an unsure, and never overturns a contradicted."""

from __future__ import annotations

import pytest

from ehrbridge.review.policy import combine, needs_llm
from ehrbridge.review.verdicts import Outcome, Verdict


def verdict(outcome: Outcome, judge: str) -> Verdict:
    return Verdict(outcome=outcome, judge=judge, version="1", reason=f"{judge} says {outcome}")


@pytest.mark.parametrize("llm", list(Outcome))
def test_a_deterministic_contradicted_stands(llm: Outcome) -> None:
    deterministic = verdict(Outcome.CONTRADICTED, "grounding")
    assert combine(deterministic, verdict(llm, "llm")) is deterministic


@pytest.mark.parametrize("llm", list(Outcome))
def test_a_deterministic_supported_stands(llm: Outcome) -> None:
    deterministic = verdict(Outcome.SUPPORTED, "grounding")
    assert combine(deterministic, verdict(llm, "llm")) is deterministic


@pytest.mark.parametrize("llm", list(Outcome))
def test_after_a_deterministic_unsure_the_llm_decides(llm: Outcome) -> None:
    answer = verdict(llm, "llm")
    assert combine(verdict(Outcome.UNSURE, "grounding"), answer) is answer


def test_the_llm_is_asked_only_after_an_unsure() -> None:
    assert [o for o in Outcome if needs_llm(verdict(o, "grounding"))] == [Outcome.UNSURE]
