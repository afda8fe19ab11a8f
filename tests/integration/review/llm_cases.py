"""Cases in the call-facts format (``shared/data/call-facts/README.md``) for the LLM judge's tests.

All fictional: 555-01xx numbers, made-up people.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ehrbridge.review.verdicts import Case, Fact, Speaker, Turn

STARTED = datetime.fromisoformat("2026-11-16T09:12:00-05:00")


def _call(*turns: tuple[Speaker, str]) -> tuple[Turn, ...]:
    return tuple(Turn(turn=n, speaker=who, text=text) for n, (who, text) in enumerate(turns))


#: a new cell number, given by the caller and confirmed on read-back
PHONE_CALL = _call(
    ("agent", "Northfield Clinic, this is the virtual assistant. Who am I speaking with?"),
    ("caller", "Hi, this is Rosa Lindqvist."),
    ("agent", "Hi Rosa. What can I do for you?"),
    ("caller", "I have a new cell, it's six one seven, five five five, oh one three eight."),
    (
        "agent",
        "Let me read that back: six one seven, five five five, zero one three eight. Correct?",
    ),
    ("caller", "Yes, that's right."),
    ("agent", "Thanks, I've noted your new mobile number. Anything else?"),
    ("caller", "No, that's all. Bye."),
)

#: a birth date read back wrong and corrected
BIRTH_CALL = _call(
    ("agent", "Can you tell me your date of birth?"),
    ("caller", "April ninth, nineteen eighty-two."),
    ("agent", "I have April nineteenth, nineteen eighty-two."),
    ("caller", "No, the ninth. Nine."),
    ("agent", "Got it, April ninth, nineteen eighty-two."),
)


def case(
    transcript: tuple[Turn, ...] = PHONE_CALL,
    *,
    field: str = "phone.mobile",
    value: Any = "+16175550138",
    entity_type: str = "Patient",
    evidence_turns: tuple[int, ...] = (3, 4, 5),
) -> Case:
    """A case on ``transcript``; by default the confirmed new mobile number."""
    return Case(
        fact=Fact(
            entity_type=entity_type,
            field=field,
            value=value,
            level="confirmed",
            evidence_turns=evidence_turns,
        ),
        transcript=transcript,
        call_started_at=STARTED,
        clinic_timezone="America/New_York",
        known={"Patient.name.given": "Rosa", "Patient.phone.mobile": "+16175550199"},
    )
