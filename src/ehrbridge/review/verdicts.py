"""What a judge is asked and what it answers (docs/design.md §8).

A judge reads one voice fact against its call's transcript and answers a :class:`Verdict`:
*supported* (the transcript establishes this value as the patient's own), *contradicted* (it
establishes another value, a correction or a denial) or *unsure* (neither, or the judge could not
tell). A verdict names the judge and its version and carries its reasoning and the evidence it
rests on (turn numbers and character spans), so the event that records it says who decided what
and why. Where a verdict sends the fact is :func:`route`'s business, not the judge's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

Speaker = Literal["agent", "caller"]


class Outcome(StrEnum):
    """A judge's answer for one fact."""

    SUPPORTED = "supported"
    CONTRADICTED = "contradicted"
    UNSURE = "unsure"


class Route(StrEnum):
    """Where a judged fact goes next."""

    #: re-graded to VERIFIED (0.8): the confidence gate lets it through
    VERIFIED = "verified"
    #: to the human review queue
    HUMAN = "human"
    #: re-graded to REJECTED (0.0): out of every projection, never synced
    REJECTED = "rejected"


@dataclass(frozen=True, kw_only=True)
class Turn:
    """One speech-to-text turn of a call, numbered from 0."""

    turn: int
    speaker: Speaker
    text: str


@dataclass(frozen=True, kw_only=True)
class Fact:
    """The fact under review: one field of one entity, with the value as the system stores it
    (E.164 phones, ``YYYY-MM-DD`` dates, ISO 8601 instants, lower-case emails, ...)."""

    entity_type: str
    #: the field path, e.g. ``phone.mobile``
    field: str
    value: Any
    #: the extraction's own claim (``confirmed``, ``mentioned``, ``inferred``): not evidence
    level: str = "mentioned"
    #: the turns the extraction cites: a hint only, possibly wrong or empty
    evidence_turns: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Case:
    """Everything a judge reads for one fact."""

    fact: Fact
    transcript: Sequence[Turn]
    #: when the call started (aware); relative dates resolve from it in ``clinic_timezone``
    call_started_at: datetime
    #: the clinic's IANA zone, e.g. ``America/New_York``
    clinic_timezone: str
    #: what the EHR already holds, as ``EntityType.field`` keys: context, never evidence
    known: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """A quoted span of one turn: ``text == transcript[turn].text[start:end]``."""

    turn: int
    start: int
    end: int
    text: str


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """A judge's answer for one :class:`Case`."""

    outcome: Outcome
    #: the judge, e.g. ``grounding`` or ``llm``
    judge: str
    #: its version: a verdict is reproducible from (judge, version, case)
    version: str
    #: a short reason a reviewer can read (names fields and turns, never more patient data than
    #: the transcript quotes in ``evidence``)
    reason: str
    evidence: tuple[Evidence, ...] = ()
    #: the value as the transcript gives it, normalised like the fact's, when the judge found one
    value: Any = None

    def as_json(self) -> dict[str, Any]:
        """The verdict as an event's evidence (JSON)."""
        return {
            "outcome": self.outcome.value,
            "judge": self.judge,
            "version": self.version,
            "reason": self.reason,
            "evidence": [
                {"turn": e.turn, "start": e.start, "end": e.end, "text": e.text}
                for e in self.evidence
            ],
            "value": self.value,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, judge: str, version: str) -> Verdict:
        """The verdict :meth:`as_json` stored; ``judge`` and ``version`` where it names none. An
        outcome it does not know is unsure, and evidence that is not spans is dropped.

        >>> v = Verdict(outcome=Outcome.SUPPORTED, judge="g", version="1", reason="turn 3",
        ...             evidence=(Evidence(turn=3, start=0, end=2, text="ok"),))
        >>> Verdict.from_json(v.as_json(), judge="x", version="0") == v
        True
        >>> Verdict.from_json({"outcome": "maybe"}, judge="x", version="0").outcome
        <Outcome.UNSURE: 'unsure'>
        """
        try:
            outcome = Outcome(str(raw.get("outcome", "")))
        except ValueError:
            outcome = Outcome.UNSURE
        spans = raw.get("evidence")
        evidence = tuple(
            Evidence(turn=e["turn"], start=e["start"], end=e["end"], text=e["text"])
            for e in (spans if isinstance(spans, list) else [])
            if isinstance(e, dict) and {"turn", "start", "end", "text"} <= e.keys()
        )
        return cls(
            outcome=outcome,
            judge=str(raw.get("judge", judge)),
            version=str(raw.get("version", version)),
            reason=str(raw.get("reason", "")),
            evidence=evidence,
            value=raw.get("value"),
        )


class Judge(Protocol):
    """Reads a :class:`Case` and answers a :class:`Verdict`; never raises for a case it cannot
    decide (that is :attr:`Outcome.UNSURE` with the reason)."""

    #: e.g. ``grounding``
    name: str
    #: bumped whenever the same case could be judged differently
    version: str

    async def judge(self, case: Case) -> Verdict: ...


def route(verdict: Verdict, *, contradicted: Route = Route.REJECTED) -> Route:
    """Where a verdict sends its fact: supported → verified; unsure → a human; contradicted →
    ``contradicted`` (the policy's choice: rejected, or a human).

    >>> v = Verdict(outcome=Outcome.UNSURE, judge="j", version="1", reason="no transcript")
    >>> route(v)
    <Route.HUMAN: 'human'>
    """
    if verdict.outcome is Outcome.SUPPORTED:
        return Route.VERIFIED
    if verdict.outcome is Outcome.CONTRADICTED:
        return contradicted
    return Route.HUMAN


def evidence_in(transcript: Sequence[Turn], turn: int, start: int, end: int) -> Evidence:
    """The :class:`Evidence` of ``transcript[turn].text[start:end]`` (IndexError outside it)."""
    spoken = next(t for t in transcript if t.turn == turn).text
    if not 0 <= start <= end <= len(spoken):
        raise IndexError(f"span {start}:{end} is outside turn {turn}")
    return Evidence(turn=turn, start=start, end=end, text=spoken[start:end])


__all__ = [
    "Case",
    "Evidence",
    "Fact",
    "Judge",
    "Outcome",
    "Route",
    "Turn",
    "Verdict",
    "evidence_in",
    "route",
]
