"""Appointment facts: what the agent actually booked or cancelled, and whether the caller took it.

An appointment is established by the agent's booking statement ("You're booked for...", "I've
booked you...", "is now Monday...") for a slot the caller accepted (a "yes" to the offer, the
caller naming the time, or a clear "yes"/"great, ten thirty" right after). The last booking or
cancellation of the call is the one that stands: a booking cancelled later is not booked, a slot
only offered is nothing. The start is compared as an instant in the clinic's zone, the
practitioner by family name, the type by the visit words the booking uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from ehrbridge.review.grounding.dates import (
    WEEKDAYS,
    Spoken,
    clock_times,
    instant,
    local_day,
    named_days,
)
from ehrbridge.review.grounding.dialogue import Mention, accepts
from ehrbridge.review.grounding.finding import Finding, unsure
from ehrbridge.review.verdicts import Case, Outcome, Turn

_BOOKED = re.compile(
    r"\b(?:you're (?:all |now )?(?:booked|scheduled|set)|you are (?:all |now )?(?:booked|scheduled)"
    r"|i've (?:booked|scheduled|moved|put you)"
    r"|i (?:booked|scheduled)|(?:is|are) now (?:on|at|booked|scheduled|set)?|has been booked"
    r"|te (?:agendé|reservé))",
    re.IGNORECASE,
)
_CANCELLED = re.compile(
    r"\b(?:i've cancell?ed|cancell?ed your|has been cancell?ed|cancell?ed the)", re.I
)
_NOT_DONE = re.compile(r"\b(?:not able|can't|cannot|unable|won't|don't)\b", re.IGNORECASE)
_CALLER_CANCEL = re.compile(r"\bcancel", re.IGNORECASE)
_CALLER_REFUSES = re.compile(r"\b(?:don't book|do not book|not yet|no\b|hold off)", re.I)
_TAKES = re.compile(
    r"\b(?:yes|yeah|yep|sure|works|good|perfect|let's do|fine|great|sounds good|sí|ok|okay)"
    r"\b",
    re.IGNORECASE,
)

#: the agent correcting itself while it states the booking: "at three p.m. - sorry, three thirty"
_SELF_FIX = re.compile(r"\b(?:sorry|i mean|correction|rather|no wait|oops|let me correct)\b", re.I)
_CHANGE = re.compile(
    r"\b(?:actually|instead|change|move|reschedule|cancel|different|wait|earlier|later)\b", re.I
)

TYPES = {
    "sick-visit": r"sick visit|sick-visit",
    "follow-up": r"follow-up|follow up|followup",
    "annual-physical": r"physical|annual exam|check-up|checkup|check up|annual wellness",
    "vaccination": r"vaccin|flu shot|immuniz|booster|vacuna",
    "lab-work": r"\blabs?\b|blood ?work|lab work|blood draw|blood test",
    "telehealth": r"telehealth|telemedicine|video (?:visit|call|appointment)"
    r"|phone (?:visit|appointment)|virtual (?:visit|appointment)",
    "new-patient": r"new[- ]patient",
    "well-child": r"well[- ]child",
    "procedure": r"procedure",
}


@dataclass(frozen=True, kw_only=True)
class Booking:
    """The agent's last booking or cancellation statement of the call."""

    turn: Turn
    cancelled: bool
    taken: bool


def _last_action(case: Case) -> Booking | None:
    action: Booking | None = None
    turns = list(case.transcript)
    for i, t in enumerate(turns):
        if t.speaker != "agent" or _NOT_DONE.search(t.text.split(".")[0]):
            continue
        if _CANCELLED.search(t.text):
            asked = any(
                p.speaker == "caller"
                and _CALLER_CANCEL.search(p.text)
                and not re.search(r"don't cancel|do not cancel", p.text, re.I)
                for p in turns[:i]
            )
            action = Booking(turn=t, cancelled=True, taken=asked)
        elif _BOOKED.search(t.text):
            action = Booking(turn=t, cancelled=False, taken=_taken(turns, i))
    return action


def _taken(turns: list[Turn], i: int) -> bool:
    """The caller took the booked slot: the caller turn before the booking accepts the offer or
    names the time, or the turn after it accepts it; and nobody refused it in between."""
    before = turns[i - 1] if i > 0 else None
    after = turns[i + 1] if i + 1 < len(turns) else None
    for reply in (before, after):
        if reply is None or reply.speaker != "caller":
            continue
        if _CALLER_REFUSES.search(reply.text) or _CALLER_CANCEL.search(reply.text):
            return False
    ok_before = (
        before is not None
        and before.speaker == "caller"
        and (
            bool(_TAKES.search(before.text))
            or bool(clock_times(before.text, need_marker=False))
            # "can we do Tuesday instead?" answered by a booking for Tuesday
            or bool(_days_named(before.text) & _days_named(turns[i].text))
        )
    )
    ok_after = after is not None and accepts(after)
    ok_after = ok_after or (
        after is not None
        and after.speaker == "caller"
        and bool(clock_times(after.text, need_marker=False))
    )
    return ok_before or ok_after


def _weekday(case: Case, b: Booking, today: date) -> list[Spoken]:
    """A booking that names only a weekday ("booked for Tuesday at two p.m."): the date the call
    gave that weekday earlier ("Tuesday, December first"), else the coming one within six days;
    on that weekday itself it is ambiguous (today or in a week) and stays unread."""
    found = [
        (WEEKDAYS[m.group(1).lower()], m)
        for m in re.finditer(r"\b([A-Za-zé]+day|lunes|martes|jueves|viernes)\b", b.turn.text)
        if m.group(1).lower() in WEEKDAYS
    ]
    if len({wd for wd, _ in found}) != 1 or re.search(
        r"\b(?:next|last|this)\s+\w+day", b.turn.text, re.I
    ):
        return []
    wd, m = found[0]
    earlier = {
        d.value
        for t in case.transcript
        if t.turn < b.turn.turn
        for d in named_days(t.text, today)
        if isinstance(d.value, date) and d.value.weekday() == wd and d.value > today
    }
    if len(earlier) == 1:
        return [Spoken(value=earlier.pop(), start=m.start(), end=m.end())]
    if earlier:
        return []
    ahead = (wd - today.weekday()) % 7
    if ahead == 0:
        return []
    return [Spoken(value=today + timedelta(days=ahead), start=m.start(), end=m.end())]


def _days_named(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-zé]+", text.lower()) if w in WEEKDAYS}


def _span(turn: Turn, start: int, end: int) -> Mention:
    return Mention(value="", slot=None, turn=turn.turn, start=start, end=end, speaker=turn.speaker)


_ZONE_WORDS = re.compile(
    r"\b(?:eastern|central|mountain|pacific|alaska|hawaii|atlantic|hora del (?:este|centro|"
    r"pac[íi]fico)|(?:your|my|our) time)\b",
    re.IGNORECASE,
)
_ZONE_ABBREVIATIONS = re.compile(r"\b(?:[ECMPAH][SD]?T|GMT|UTC)\b")


def _start(case: Case, b: Booking) -> Finding:
    if _ZONE_WORDS.search(b.turn.text) or _ZONE_ABBREVIATIONS.search(b.turn.text):
        # "two p.m. Eastern" to a clinic in Chicago: a zone the reader does not convert
        return unsure("the booking names a time zone")
    want = datetime.fromisoformat(str(case.fact.value))
    today = local_day(case.call_started_at, case.clinic_timezone)
    days = named_days(b.turn.text, today) or _weekday(case, b, today)
    times = clock_times(b.turn.text)
    if len({d.value for d in days}) != 1 or len({t.value for t in times}) != 1:
        return unsure("the booking does not name one day and one time")
    at = times[0].value
    assert isinstance(at, time)
    day = days[0].value
    booked = instant(day, at, case.clinic_timezone)  # type: ignore[arg-type]
    spans = [_span(b.turn, days[0].start, days[0].end), _span(b.turn, times[0].start, times[0].end)]
    if booked == want:
        return Finding(
            outcome=Outcome.SUPPORTED,
            reason=f"the agent booked this instant in turn {b.turn.turn} and the caller took it",
            mentions=spans,
            value=booked.isoformat(),
        )
    return Finding(
        outcome=Outcome.CONTRADICTED,
        reason=f"the booking in turn {b.turn.turn} is for another instant",
        mentions=spans,
        value=booked.isoformat(),
    )


_TITLES = {"dr", "np", "md", "pa", "do", "rn", "nurse", "practitioner", "doctor"}


def _surname(name: str) -> str:
    words = [w for w in re.findall(r"[A-Za-zÀ-ÿ'-]+", name) if w.lower().rstrip(".") not in _TITLES]
    return words[-1].lower() if words else ""


def _practitioner(case: Case, b: Booking) -> Finding:
    m = re.search(
        r"\bwith\s+(?:Dr\.?\s+|Doctor\s+|Nurse Practitioner\s+)?((?:[A-Z][a-z'-]+\s?){1,3})",
        b.turn.text,
    )
    if m is None:
        return unsure("the booking does not say with whom")
    booked = _surname(m.group(1))
    span = [_span(b.turn, m.start(1), m.end(1))]
    want = _surname(str(case.fact.value))
    given = [w.lower() for w in str(case.fact.value).replace(",", " ").split()]
    if booked == want and all(
        w in b.turn.text.lower() for w in given if w.rstrip(".") not in ("dr", "np")
    ):
        return Finding(
            outcome=Outcome.SUPPORTED,
            reason="booked with this practitioner",
            mentions=span,
            value=m.group(1).strip(),
        )
    if booked and booked != want:
        return Finding(
            outcome=Outcome.CONTRADICTED,
            reason="booked with someone else",
            mentions=span,
            value=m.group(1).strip(),
        )
    return unsure("the booking names the practitioner only in part")


def _type(case: Case, b: Booking) -> Finding:
    said = [(k, m) for k, p in TYPES.items() for m in [re.search(p, b.turn.text, re.I)] if m]
    if len(said) != 1:
        return unsure("the booking does not name one visit type")
    kind, m = said[0]
    span = [_span(b.turn, m.start(), m.end())]
    if kind == case.fact.value:
        return Finding(
            outcome=Outcome.SUPPORTED, reason=f"booked as a {kind}", mentions=span, value=kind
        )
    return Finding(
        outcome=Outcome.CONTRADICTED, reason=f"booked as a {kind}", mentions=span, value=kind
    )


_REQUESTED = re.compile(
    r"\b(?:i've (?:sent|submitted|passed along|forwarded) (?:a|the|your) (?:\w+ )?request"
    r"|i've sent (?:a|the|your) referral|they(?:'ll| will) call you to (?:schedule|book|confirm))",
    re.IGNORECASE,
)


def judge(case: Case) -> Finding:
    """An ``Appointment`` fact against the call's last booking or cancellation; with neither,
    a request passed on to another office ("I've sent a referral request, they'll call you") is
    not booked."""
    b = _last_action(case)
    if b is None:
        asked = next(
            (t for t in case.transcript if t.speaker == "agent" and _REQUESTED.search(t.text)),
            None,
        )
        if asked is not None and case.fact.field == "status" and case.fact.value == "booked":
            m = _REQUESTED.search(asked.text)
            assert m is not None
            return Finding(
                outcome=Outcome.CONTRADICTED,
                reason=f"only a request was passed on (turn {asked.turn}), nothing was booked",
                mentions=[_span(asked, m.start(), m.end())],
                value="pending",
            )
        return unsure("nothing was booked or cancelled in the call")
    field = case.fact.field
    if field == "status":
        status = "cancelled" if b.cancelled else "booked"
        span = [_span(b.turn, 0, len(b.turn.text))]
        if not b.taken:
            return unsure("the caller did not clearly take what the agent did")
        if status == case.fact.value:
            return Finding(
                outcome=Outcome.SUPPORTED,
                reason=f"the agent {status} it",
                mentions=span,
                value=status,
            )
        return Finding(
            outcome=Outcome.CONTRADICTED,
            reason=f"the call ends with it {status}",
            mentions=span,
            value=status,
        )
    if b.cancelled:
        return unsure("the call's last action was a cancellation")
    booked = _BOOKED.search(b.turn.text)
    if booked is not None and _SELF_FIX.search(b.turn.text, booked.end()):
        return unsure(f"the agent corrects itself in the booking (turn {b.turn.turn})")
    later = [t for t in case.transcript if t.turn > b.turn.turn and t.speaker == "caller"]
    if any(_CHANGE.search(t.text) for t in later):
        return unsure("the caller asks for a change after the booking")
    if not b.taken:
        return unsure("the caller did not clearly take the booked slot")
    if field == "start":
        return _start(case, b)
    if field == "practitioner":
        return _practitioner(case, b)
    if field == "appointment_type":
        return _type(case, b)
    return unsure("no reader for this appointment field")
