"""Checking an LLM's answer against the case before it becomes a verdict (docs/llm-judge.md).

The model's answer is a claim, like the extraction's: :func:`check` parses it against the schema,
finds every quote verbatim in the turn it names (the :class:`Evidence` spans come from that
search, never from the model) and, for *supported*, requires the stated value to equal the fact's
after :func:`~ehrbridge.review.values.normalise`. Anything that does not hold is
:class:`Failure`, which the judge turns into *unsure*: a human reads the case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ehrbridge.review.prompt import MAX_QUOTES
from ehrbridge.review.values import same_value
from ehrbridge.review.verdicts import Case, Evidence, Outcome

#: the answer's verdicts: the data set's ``unsupported`` (and a plain ``unsure``) mean unsure
_OUTCOMES = {
    "supported": Outcome.SUPPORTED,
    "contradicted": Outcome.CONTRADICTED,
    "unsupported": Outcome.UNSURE,
    "unsure": Outcome.UNSURE,
}


class Quote(BaseModel):
    """One quoted span of the answer."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    turn: int
    quote: str


class Answer(BaseModel):
    """The answer's JSON (``prompt.ANSWER_SCHEMA``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    verdict: Literal["supported", "contradicted", "unsupported", "unsure"]
    evidence: list[Quote]
    value: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Checked:
    """An answer that passed every check."""

    outcome: Outcome
    evidence: tuple[Evidence, ...]
    #: for *supported* the fact's own value (the stated one normalised to it); otherwise the
    #: stated value, or None when the answer gives none
    value: Any
    #: the model's own reason
    reason: str


@dataclass(frozen=True, kw_only=True)
class Failure:
    """Why an answer cannot be used: names the check, never the transcript's text."""

    reason: str


def parse(content: str) -> Answer | Failure:
    """The answer in a message's content, or what is wrong with it."""
    try:
        raw = json.loads(content)
    except ValueError:
        return Failure(reason="the answer is not valid JSON")
    try:
        answer = Answer.model_validate(raw)
    except ValidationError as exc:
        where = sorted({".".join(str(p) for p in e["loc"]) or "answer" for e in exc.errors()})
        return Failure(reason=f"the answer does not match the schema (at {', '.join(where)})")
    if len(answer.evidence) > MAX_QUOTES:
        return Failure(reason=f"the answer has more than {MAX_QUOTES} quotes")
    return answer


def _spans(case: Case, answer: Answer) -> tuple[Evidence, ...] | Failure:
    turns = {t.turn: t.text for t in case.transcript}
    found: list[Evidence] = []
    for n, quote in enumerate(answer.evidence, start=1):
        spoken = turns.get(quote.turn)
        if spoken is None:
            return Failure(reason=f"quote {n} names turn {quote.turn}, which is not in the call")
        start = spoken.find(quote.quote) if quote.quote else -1
        if start < 0:
            return Failure(reason=f"quote {n} is not verbatim in turn {quote.turn}")
        end = start + len(quote.quote)
        found.append(Evidence(turn=quote.turn, start=start, end=end, text=spoken[start:end]))
    return tuple(found)


def check(case: Case, answer: Answer) -> Checked | Failure:
    """The answer's verdict if its quotes and value hold up against ``case``."""
    outcome = _OUTCOMES[answer.verdict]
    evidence = _spans(case, answer)
    if isinstance(evidence, Failure):
        return evidence
    if outcome is not Outcome.UNSURE and not evidence:
        return Failure(reason=f"the answer says {outcome.value} but quotes no turn")
    key = f"{case.fact.entity_type}.{case.fact.field}"
    if outcome is Outcome.SUPPORTED and not same_value(key, answer.value, case.fact.value):
        return Failure(reason=f"the stated value differs from the fact's {key}")
    value = case.fact.value if outcome is Outcome.SUPPORTED else answer.value or None
    return Checked(outcome=outcome, evidence=evidence, value=value, reason=answer.reason)


__all__ = ["Answer", "Checked", "Failure", "Quote", "check", "parse"]
