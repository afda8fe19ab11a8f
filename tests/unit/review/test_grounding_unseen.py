"""The grounding judge on cases it was not built on (``unseen_cases.py``): never an unsafe pass,
and every supported case verified but the known gaps listed here."""

from __future__ import annotations

import asyncio

from ehrbridge.review.evaluation import evaluate, summarise
from ehrbridge.review.grounding.judge import GroundingJudge
from ehrbridge.review.verdicts import Outcome
from tests.unit.review.unseen_cases import UNSEEN

#: supported cases the judge still sends to a human (the safe direction), and why
KNOWN_GAPS = {
    "u-230": "an address derived from the one on file ('a different house number: 88')",
}


def test_no_unsafe_pass_and_every_supported_case_but_the_known_gaps_verified() -> None:
    results = asyncio.run(evaluate(GroundingJudge(), UNSEEN))
    summary = summarise(results)
    assert summary.unsafe_passes == []
    missed = {
        r.id
        for r in results
        if r.label == "supported" and r.verdict.outcome is not Outcome.SUPPORTED
    }
    assert missed == set(KNOWN_GAPS)
    # measured: 229 of 230 supported cases verified (99.5 %)
    assert summary.supported_verified is not None
    assert summary.supported_verified >= 0.95


def test_the_cases_are_many_and_varied() -> None:
    labels = [c.label for c in UNSEEN]
    assert len(UNSEEN) >= 60
    assert {"supported", "contradicted", "unsupported"} <= set(labels)
    fields = {(c.case.fact.entity_type, c.case.fact.field) for c in UNSEEN}
    assert len(fields) >= 20
    assert len({c.id for c in UNSEEN}) == len(UNSEEN)


def test_every_verdict_quotes_the_transcript() -> None:
    judge = GroundingJudge()
    for c in UNSEEN:
        verdict = judge.judge_now(c.case)
        for e in verdict.evidence:
            turn = next(t for t in c.case.transcript if t.turn == e.turn)
            assert turn.text[e.start : e.end] == e.text, c.id
        if verdict.outcome is Outcome.SUPPORTED:
            assert verdict.evidence, c.id
