"""How the deterministic judge's verdict and the LLM judge's combine (docs/llm-judge.md).

The deterministic judge speaks first. Its *supported* and *contradicted* stand: the LLM is asked
only about what it left *unsure* (:func:`needs_llm`), and can never overturn a *contradicted*.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ehrbridge.review.verdicts import Case, Judge, Outcome, Verdict


def needs_llm(deterministic: Verdict) -> bool:
    """Whether the LLM judge is asked: only when the deterministic judge is unsure.

    >>> from ehrbridge.review.verdicts import Verdict
    >>> needs_llm(Verdict(outcome=Outcome.CONTRADICTED, judge="grounding", version="1", reason="r"))
    False
    """
    return deterministic.outcome is Outcome.UNSURE


def combine(deterministic: Verdict, llm: Verdict) -> Verdict:
    """The verdict that decides the fact's route.

    A deterministic *supported* or *contradicted* stands whatever the LLM says (it should not have
    been asked); after a deterministic *unsure* the LLM's verdict decides, its own *unsure*
    included (a human reads it). The result is one of the two verdicts, unchanged, so the event
    names the judge that decided.
    """
    if not needs_llm(deterministic):
        return deterministic
    return llm


def always_human(
    entity_type: str,
    fields: Iterable[str],
    *,
    types: Collection[str],
    named: Collection[str],
) -> str | None:
    """Why a fact of ``entity_type`` asserting ``fields`` always needs a human review, whatever
    a judge says: its type is one of ``types``, or a field is one of ``named`` (as
    ``EntityType.field``); None when neither. The review loop and the outbound gate both ask.

    >>> always_human("MedicationOrder", ["dosage.text"], types={"MedicationOrder"}, named=())
    'MedicationOrder facts always need a human review'
    >>> always_human("Patient", ["phone.mobile", "name.family"], types=(),
    ...              named={"Patient.name.family"})
    'Patient.name.family always needs a human review'
    """
    if entity_type in types:
        return f"{entity_type} facts always need a human review"
    listed = sorted(f for f in fields if f"{entity_type}.{f}" in named)
    return f"{entity_type}.{listed[0]} always needs a human review" if listed else None


class PolicyJudge:
    """The ``policy`` judge: the deterministic judge first, the LLM judge for what it leaves
    unsure (:func:`combine`)."""

    name = "policy"

    def __init__(self, deterministic: Judge, llm: Judge) -> None:
        self.deterministic, self.llm = deterministic, llm
        self.version = f"{deterministic.name}/{deterministic.version}+{llm.name}/{llm.version}"

    async def judge(self, case: Case) -> Verdict:
        first = await self.deterministic.judge(case)
        if not needs_llm(first):
            return first
        return combine(first, await self.llm.judge(case))


__all__ = ["PolicyJudge", "always_human", "combine", "needs_llm"]
