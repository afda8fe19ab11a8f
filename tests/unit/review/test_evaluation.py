"""The evaluation harness (review/evaluation.py) and ``ehrbridge review eval``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from ehrbridge.cli.main import app
from ehrbridge.review.evaluation import CaseFileError, evaluate, parse_cases, summarise
from ehrbridge.review.verdicts import Case, Outcome, Verdict


def _line(case_id: str, label: str, value: str, reply: str = "Yes, that's right.") -> str:
    return orjson.dumps(
        {
            "id": case_id,
            "call": {"id": "call-x", "started_at": "2026-11-16T15:00:00Z",
                     "clinic_timezone": "America/Chicago"},
            "transcript": [
                {"turn": 0, "speaker": "agent",
                 "text": "Your cell is three one two, five five five, oh one seven seven?"},
                {"turn": 1, "speaker": "caller", "text": reply},
            ],
            "known": {},
            "fact": {"entity_type": "Patient", "field": "phone.mobile", "value": value,
                     "level": "confirmed", "evidence_turns": [0, 1]},
            "label": label,
            "why": "test",
        }
    ).decode()  # fmt: skip


class Fixed:
    """A judge that answers the same outcome for every case."""

    name = "fixed"
    version = "1"

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    async def judge(self, case: Case) -> Verdict:
        del case
        return Verdict(outcome=self.outcome, judge=self.name, version=self.version, reason="")


LINES = [
    _line("s1", "supported", "+13125550177"),
    _line("c1", "contradicted", "+13125550171"),
    _line("u1", "unsupported", "+13125550177", reply="Can I call you back?"),
    "",
]


def test_parse_cases_reads_the_call_facts_format() -> None:
    cases = parse_cases(LINES)
    assert [c.id for c in cases] == ["s1", "c1", "u1"]
    first = cases[0].case
    assert first.call_started_at.utcoffset() is not None
    assert first.transcript[1].speaker == "caller"
    assert first.fact.evidence_turns == (0, 1)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not JSON"),
        ('{"id": "x"}', "missing 'call'"),
        (_line("x", "maybe", "+13125550177"), "'label' must be one of"),
        (_line("s1", "supported", "+13125550177"), "duplicate id 's1'"),
    ],
)
def test_a_bad_line_names_its_line_and_problem(line: str, problem: str) -> None:
    with pytest.raises(CaseFileError) as caught:
        parse_cases([LINES[0], "", line], path="cases.jsonl")
    assert caught.value.line == 3
    assert str(caught.value).startswith("cases.jsonl:3: ")
    assert problem in str(caught.value)


def test_summary_math() -> None:
    cases = parse_cases(LINES)
    everything = summarise(asyncio.run(evaluate(Fixed(Outcome.SUPPORTED), cases)))
    assert everything.unsafe_passes == ["c1", "u1"]
    assert everything.supported_verified == 1.0
    assert everything.confusion["contradicted"] == {"verified": 1, "human": 0, "rejected": 0}
    nothing = summarise(asyncio.run(evaluate(Fixed(Outcome.CONTRADICTED), cases)))
    assert nothing.unsafe_passes == []
    assert nothing.supported_verified == 0.0
    assert nothing.confusion["supported"]["rejected"] == 1
    assert summarise([]).supported_verified is None


def test_review_eval_prints_a_line_per_case_and_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(LINES))
    result = CliRunner().invoke(app, ["review", "eval", str(path)])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(x) for x in result.stdout.splitlines()]
    assert lines[:3] == [
        {"id": "s1", "verdict": "supported", "route": "verified"},
        {"id": "c1", "verdict": "contradicted", "route": "rejected"},
        {"id": "u1", "verdict": "unsure", "route": "human"},
    ]
    assert lines[3]["unsafe_passes"] == 0
    assert lines[3]["supported_verified"] == 1.0


def test_review_eval_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 7}\n')
    result = CliRunner().invoke(app, ["review", "eval", str(bad)])
    assert result.exit_code == 2
    assert "bad.jsonl:1: 'id' has the wrong type" in " ".join(result.output.split())
    llm = CliRunner().invoke(app, ["review", "eval", str(bad), "--judge", "llm"])
    assert llm.exit_code == 2
    assert "needs --base-url and --model" in llm.output
