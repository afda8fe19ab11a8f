"""The transcript-grounding judge: offline, deterministic, and unsure whenever in doubt.

For a fact of a kind it can read (phones, emails, member and group ids, ZIP codes, spelled names,
birth dates, address lines and cities, appointments, medications, allergies, languages, payers,
pharmacies, plans), it finds every mention of that kind of value in the transcript, decides what
each mention is worth (:mod:`.dialogue`) and settles the value the caller ended on:

- that value equals the fact (after normalisation) and nothing after it fixes or takes it back,
  and the caller did not only say "yes" to a read-back that differs from their own words →
  **supported**, with the spans it rests on;
- a different value is established, or the fact's value was corrected, turned down or denied →
  **contradicted**;
- anything else (never said, only the agent, someone else's, hedged, cut off) → **unsure**.

Values spoken in pieces across turns (:mod:`.across`) and phones derived from the number on file
(:mod:`.derived`) are mentions like any other; :mod:`.doubts` holds what can still undo a final
value that equals the fact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ehrbridge.review.grounding import booking, clinical, phrases
from ehrbridge.review.grounding.across import joined
from ehrbridge.review.grounding.address import (
    address_mentions,
    canonical_line,
    city_mentions,
)
from ehrbridge.review.grounding.dates import birth_dates
from ehrbridge.review.grounding.derived import PHONES, derived, no_phone
from ehrbridge.review.grounding.dialogue import Mention, Stance, settle, stance, turn_by_number
from ehrbridge.review.grounding.doubts import doubt
from ehrbridge.review.grounding.fields import (
    CODE_SLOTS,
    PHONE_SLOTS,
    code_mentions,
    e164,
    email_mentions,
    name_case,
    name_mentions,
    name_slot,
    phone_mentions,
    slot_of,
    zip_mentions,
)
from ehrbridge.review.grounding.finding import Finding, unsure
from ehrbridge.review.verdicts import Case, Evidence, Outcome, Turn, Verdict, evidence_in

Finder = Callable[[Sequence[Turn], Turn], list[Mention]]

_BIRTH_CUES = re.compile(r"date of birth|birthday|born|\bdob\b|fecha de nacimiento", re.I)


def _birth_finder(call_year: int) -> Finder:
    def find(transcript: Sequence[Turn], turn: Turn) -> list[Mention]:
        previous = turn_by_number(transcript, turn.turn - 1)
        asked = previous is not None and bool(_BIRTH_CUES.search(previous.text))
        if not asked and not _BIRTH_CUES.search(turn.text):
            return []
        day_first = bool(re.search(r"day first|día primero", turn.text, re.I))
        return [
            Mention(
                value=d.value.isoformat(),
                slot="birth_date",
                turn=turn.turn,
                start=d.start,
                end=d.end,
                speaker=turn.speaker,
            )
            for d in birth_dates(turn.text, call_year, day_first=day_first)
        ]

    return find


def _phone_value(value: object) -> str | None:
    text = str(value)
    number, _, ext = text.partition(";ext=")
    canonical = e164(number)
    return None if canonical is None else canonical + (f";ext={ext}" if ext else "")


#: (entity type, field) → (finder, the slot it fills, the fact's value normalised)
SLOTTED: dict[tuple[str, str], tuple[str, Callable[[object], str | None]]] = {
    ("Patient", "phone.mobile"): ("mobile", _phone_value),
    ("Patient", "phone.home"): ("home", _phone_value),
    ("Patient", "phone.work"): ("work", _phone_value),
    ("Patient", "email"): ("email", lambda v: str(v).strip().lower()),
    ("InsurancePlan", "member_id"): ("member_id", lambda v: re.sub(r"[\s-]", "", str(v)).upper()),
    ("InsurancePlan", "group_number"): (
        "group_number",
        lambda v: re.sub(r"[\s-]", "", str(v)).upper(),
    ),
    ("Patient", "address.postal_code"): ("postal_code", lambda v: str(v).strip()[:5]),
    ("Patient", "name.family"): ("family", lambda v: name_case(str(v))),
    ("Patient", "name.given"): ("given", lambda v: name_case(str(v))),
    ("Patient", "birth_date"): ("birth_date", lambda v: str(v).strip()[:10]),
    ("Patient", "address.line"): ("address.line", lambda v: canonical_line(str(v))),
    ("Patient", "address.city"): ("address.city", lambda v: str(v).strip().lower()),
}


def _finder(case: Case) -> Finder | None:
    field = case.fact.field
    if field.startswith("phone."):
        return phone_mentions
    return {
        "email": email_mentions,
        "member_id": code_mentions,
        "group_number": code_mentions,
        "address.postal_code": zip_mentions,
        "name.family": name_mentions,
        "name.given": name_mentions,
        "birth_date": _birth_finder(case.call_started_at.year),
        "address.line": address_mentions,
        "address.city": city_mentions,
    }.get(field)


def _inherit_slots(mentions: list[Mention]) -> list[Mention]:
    """A mention with no slot of its own (a bare read-back) takes the slot of the mention just
    before it (within two turns): the agent is reading back what was just said."""
    out: list[Mention] = []
    for m in sorted(mentions, key=lambda x: (x.turn, x.start)):
        if m.slot is None and m.speaker == "agent":
            before = [o for o in out if o.slot is not None and m.turn - 2 <= o.turn <= m.turn]
            if before:
                m = Mention(
                    value=m.value,
                    slot=before[-1].slot,
                    turn=m.turn,
                    start=m.start,
                    end=m.end,
                    speaker=m.speaker,
                )
        out.append(m)
    return out


def _across(case: Case, slot: str) -> list[Mention]:
    """Phones, ids and spelled names the caller speaks in pieces across turns (:mod:`.across`)."""
    out: list[Mention] = []
    if slot not in PHONES and slot not in ("member_id", "group_number", "given", "family"):
        return out
    for j in joined(case.transcript):
        first_turn, first = j.pieces[0]
        value = j.value
        if slot in PHONES:
            number = e164(value) if not j.letters and len(value) in (10, 11) else None
            if number is not None:
                out.append(j.mention(number, slot_of(case.transcript, first_turn, first.start,
                                                     PHONE_SLOTS)))  # fmt: skip
        elif slot in ("member_id", "group_number"):
            if len(value) >= 5 and any(c.isdigit() for c in value):
                out.append(
                    j.mention(value, slot_of(case.transcript, first_turn, first.start, CODE_SLOTS))
                )
        elif slot in ("given", "family") and j.letters == len(value) >= 3:
            out.append(j.mention(value.capitalize(), name_slot(case.transcript, first_turn, first)))
    return out


def slotted(case: Case, finder: Finder, slot: str, want: str | None) -> Finding:
    """Judge a fact whose values can be found and compared exactly (see the module docstring)."""
    if want is None:
        return unsure("the fact's value cannot be normalised for its field")
    across = _across(case, slot)
    pieces = {(m.turn, m.start) for m in across} | {(t, a) for m in across for t, a, _ in m.parts}
    mentions = [
        m
        for t in case.transcript
        for m in finder(case.transcript, t)
        if m.speaker == "agent" or (m.turn, m.start) not in pieces
    ]
    if slot in PHONES:
        across += derived(case, slot)
    mentions = _inherit_slots(mentions + across)
    ledger = settle(case.transcript, mentions)
    denial = no_phone(case, slot) if slot in PHONES else None
    if denial is not None and (final := ledger.final.get(slot)) is not None:
        if denial.turn >= final.turn:
            return unsure(
                f"the caller says there is no {slot} phone (turn {denial.turn})", [denial]
            )
    elif denial is not None:
        return Finding(
            outcome=Outcome.CONTRADICTED,
            reason=f"the caller says there is no {slot} phone (turn {denial.turn})",
            mentions=[denial],
        )
    final = ledger.final.get(slot)
    rejected = ledger.rejected.get(want)
    if final is not None and final.value == want:
        doubts = [d for d in ledger.doubts.get(slot, []) if d.value != want]
        if doubts:
            return unsure("another value was floated after it", [doubts[0]])
        undone = doubt(case, mentions, ledger, final, slot, want)
        if undone is not None:
            return undone
        support = [m for m in mentions if m.value == want and m.slot == slot]
        return Finding(
            outcome=Outcome.SUPPORTED,
            reason=f"the caller's final {slot} is this value (turn {final.turn})",
            mentions=support[-3:],
            value=want,
        )
    if final is not None:
        return Finding(
            outcome=Outcome.CONTRADICTED,
            reason=f"the caller's final {slot} is a different value (turn {final.turn})",
            mentions=[final],
            value=final.value,
        )
    if rejected is not None:
        return Finding(
            outcome=Outcome.CONTRADICTED,
            reason=f"the value was corrected or turned down (turn {rejected.turn})",
            mentions=[rejected],
            value=want,
        )
    if want in ledger.elsewhere:
        return unsure("the value is someone else's, or only hypothetical")
    return unsure(f"the transcript does not establish the {slot}")


_INTRO = re.compile(
    r"\b(?:this is|my name is|my name's|i'm|i am|it's|name is)\s+"
    r"([A-Z][a-zà-ÿ'-]+(?:\s+[A-Z][a-zà-ÿ'-]+){0,2})"
)
_NAME_TALK = re.compile(
    r"legal name|goes by|nickname|calls me|call me|put down|maiden", re.IGNORECASE
)
_SPELLING = re.compile(r"spell|spelt|spelled|[A-Z]-[A-Z]|\bas in\b", re.IGNORECASE)


def _in_email(transcript: Sequence[Turn], turn: Turn, m: Mention) -> bool:
    return any(e.start <= m.start < e.end for e in email_mentions(transcript, turn))


def said_name(case: Case, slot: str, want: str) -> Finding | None:
    """A name said, unspelled, exactly as stored when the caller introduces themself ("this is
    Maria Delgado"): the only spoken evidence for a name besides its spelling. Never a
    contradiction (a name that sounds different may be the transcript's spelling), and nothing
    at all when the call talks about nicknames and legal names, or spells a name other than the
    other half of the introduction, as introduced ("Tomasz Kowalczyk" ... "K-O-W-A-L-C-Z-Y-K")."""
    if any(_NAME_TALK.search(t.text) for t in case.transcript):
        return None
    spelled = [
        m
        for t in case.transcript
        for m in name_mentions(case.transcript, t)
        if not _in_email(case.transcript, t, m)  # "T-O-M-A-S-Z dot K at example dot org"
    ]
    other = "family" if slot == "given" else "given"
    if any(_SPELLING.search(t.text) for t in case.transcript) and (
        not spelled or any(m.slot != other for m in spelled)
    ):
        return None
    for t in case.transcript:
        if t.speaker != "caller":
            continue
        for m in _INTRO.finditer(t.text):
            words = m.group(1).split()
            if len(words) < 2:
                continue
            said_other = words[-1] if slot == "given" else words[0]
            if any(s.value != said_other for s in spelled):
                continue  # only the other name was spelled, and as introduced
            word = words[0] if slot == "given" else words[-1]
            start = m.start(1) + (0 if slot == "given" else m.group(1).rindex(word))
            probe = Mention(value=word, slot=slot, turn=t.turn, start=start,
                            end=start + len(word), speaker="caller")  # fmt: skip
            if word == want and stance(case.transcript, probe) is Stance.ASSERTED:
                reason = f"the caller gives this name exactly (turn {t.turn})"
                return Finding(
                    outcome=Outcome.SUPPORTED, reason=reason, mentions=[probe], value=want
                )
    return None


class GroundingJudge:
    """Judges a fact against its call's transcript with deterministic rules (module docstring)."""

    name = "grounding"
    version = "1.0.0"

    async def judge(self, case: Case) -> Verdict:
        """The verdict for ``case``; unsure, with the reason, for anything it cannot read."""
        return self.judge_now(case)

    def judge_now(self, case: Case) -> Verdict:
        """:meth:`judge` without the event loop (the rules never wait on anything)."""
        try:
            finding = self._find(case)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            finding = unsure(f"the judge could not read this case ({type(exc).__name__})")
        return Verdict(
            outcome=finding.outcome,
            judge=self.name,
            version=self.version,
            reason=finding.reason,
            evidence=_evidence(case.transcript, finding.mentions),
            value=finding.value,
        )

    def _find(self, case: Case) -> Finding:
        key = (case.fact.entity_type, case.fact.field)
        if key in SLOTTED:
            finder = _finder(case)
            slot, normalise = SLOTTED[key]
            if finder is None:
                return unsure("no reader for this field")
            found = slotted(case, finder, slot, normalise(case.fact.value))
            if found.outcome is Outcome.UNSURE and slot in ("given", "family"):
                return said_name(case, slot, str(case.fact.value)) or found
            return found
        if case.fact.entity_type == "Appointment":
            return booking.judge(case)
        if case.fact.entity_type in ("MedicationOrder", "AllergyIntolerance"):
            return clinical.judge(case)
        return phrases.judge(case)


def _evidence(transcript: Sequence[Turn], mentions: Sequence[Mention]) -> tuple[Evidence, ...]:
    out: list[Evidence] = []
    for m in mentions:
        for turn, start, end in (*m.parts, (m.turn, m.start, m.end)):
            try:
                out.append(evidence_in(transcript, turn, start, end))
            except (IndexError, StopIteration):
                continue
    return tuple(out)
