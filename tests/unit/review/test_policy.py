"""policy.combine: the LLM is asked only after an unsure, and never overturns a contradicted."""

from __future__ import annotations

import pytest

from ehrbridge.review.policy import PolicyJudge, combine, needs_llm
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


class Fixed:
    """A judge that answers one outcome and counts its cases."""

    def __init__(self, name: str, outcome: Outcome) -> None:
        self.name, self.version, self.outcome, self.asked = name, "1", outcome, 0

    async def judge(self, case: object) -> Verdict:
        self.asked += 1
        return verdict(self.outcome, self.name)


@pytest.mark.parametrize("first", list(Outcome))
async def test_the_policy_judge_asks_the_llm_only_after_an_unsure(first: Outcome) -> None:
    grounding, llm = Fixed("grounding", first), Fixed("llm", Outcome.SUPPORTED)
    judge = PolicyJudge(grounding, llm)
    answer = await judge.judge(object())  # type: ignore[arg-type]
    assert judge.name == "policy" and judge.version == "grounding/1+llm/1"
    assert llm.asked == (1 if first is Outcome.UNSURE else 0)
    assert answer.judge == ("llm" if first is Outcome.UNSURE else "grounding")
