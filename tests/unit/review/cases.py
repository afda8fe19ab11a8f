"""Small cases for the grounding judge's tests, written from the call-facts rules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from ehrbridge.review.grounding.judge import GroundingJudge
from ehrbridge.review.verdicts import Case, Fact, Outcome, Speaker, Turn

JUDGE = GroundingJudge()


def case(
    field: str,
    value: Any,
    *lines: tuple[Speaker, str],
    entity: str = "Patient",
    started: str = "2026-11-18T14:05:00-05:00",
    zone: str = "America/New_York",
    known: Mapping[str, Any] | None = None,
) -> Case:
    """A case whose transcript alternates as given: ``("caller", "...")`` pairs."""
    return Case(
        fact=Fact(entity_type=entity, field=field, value=value),
        transcript=tuple(
            Turn(turn=i, speaker=speaker, text=text) for i, (speaker, text) in enumerate(lines)
        ),
        call_started_at=datetime.fromisoformat(started),
        clinic_timezone=zone,
        known=known or {},
    )


def outcome(c: Case) -> Outcome:
    """The grounding judge's outcome for ``c``; its evidence always quotes the transcript."""
    verdict = JUDGE.judge_now(c)
    for e in verdict.evidence:
        turn = next(t for t in c.transcript if t.turn == e.turn)
        assert turn.text[e.start : e.end] == e.text
    return verdict.outcome


A: Final[Speaker] = "agent"
C: Final[Speaker] = "caller"
