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
("same as my old one, but ending in four two") are mentions like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ehrbridge.review.grounding import booking, clinical, phrases
from ehrbridge.review.grounding.across import joined
from ehrbridge.review.grounding.address import (
    UNIT_SAID,
    address_mentions,
    canonical_line,
    city_mentions,
)
from ehrbridge.review.grounding.dates import birth_dates
from ehrbridge.review.grounding.dialogue import Mention, Stance, settle, stance, turn_by_number
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
from ehrbridge.review.grounding.spoken import Run, is_number_word, number_digits, runs, tokens
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


_PHONES = {"mobile", "home", "work"}


def _across(case: Case, slot: str) -> list[Mention]:
    """Phones, ids and spelled names the caller speaks in pieces across turns (:mod:`.across`)."""
    out: list[Mention] = []
    if slot not in _PHONES and slot not in ("member_id", "group_number", "given", "family"):
        return out
    for j in joined(case.transcript):
        first_turn, first = j.pieces[0]
        value = j.value
        if slot in _PHONES:
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


_SAME = re.compile(
    r"\bsame\s+(?:number|one|as\s+(?:my|the|before)|(?:cell|phone|mobile|home|work)\b)", re.I
)
_ENDING = re.compile(
    r"\b(?:ending in|ends in|ends with|(?:only |just )?the last (?P<n>two|three|four) (?:digits? )?"
    r"(?:are|is|to|changed to|are now|is now|now))\s+",
    re.I,
)
_INSTEAD = re.compile(r"\s*,?\s*(?:instead of|not)\s+", re.I)
_DIGITS_NAMED = {"two": 2, "three": 3, "four": 4}


def _derived(case: Case, slot: str) -> list[Mention]:
    """Phones the caller derives from the number on file: "same as my old one, but ending in
    four two (instead of one seven)" is the known number with its last digits replaced. The
    digits replaced must be as many as said, and what they replace must match any "instead of"
    the caller gives; with no number on file for the slot there is nothing to derive."""
    out: list[Mention] = []
    for t in case.transcript:
        if t.speaker != "caller" or not _SAME.search(t.text):
            continue
        cue = _ENDING.search(t.text)
        if cue is None:
            continue
        after = [r for r in runs(t.text) if r.start >= cue.end() and not r.letters]
        if not after or after[0].start != cue.end():
            continue
        tail = after[0]
        named = {PHONE_SLOTS[w] for w in re.findall(r"[a-zé]+", t.text.lower()) if w in PHONE_SLOTS}
        if len(named) > 1:
            continue  # "my cell is the same as my home number, but...": which one is derived?
        phone_slot = slot_of(case.transcript, t, tail.start, PHONE_SLOTS)
        on_file = [k for k in sorted(_PHONES) if case.known.get(f"Patient.phone.{k}")]
        if phone_slot is None and len(on_file) == 1:
            # "same as my old number": the one number on file
            phone_slot = on_file[0]
        known = e164(str(case.known.get(f"Patient.phone.{phone_slot}", "")))
        if known is None or len(tail.value) > 4:
            continue
        count = cue.group("n")
        if count and _DIGITS_NAMED[count.lower()] != len(tail.value):
            continue
        digits = known[2:]
        instead = _INSTEAD.match(t.text, tail.end)
        if instead is not None:
            old = [r for r in after[1:] if r.start == instead.end()]
            if not old or not digits.endswith(old[0].value) or len(old[0].value) != len(tail.value):
                continue
        number = e164(digits[: -len(tail.value)] + tail.value)
        if number is not None:
            out.append(Mention(value=number, slot=phone_slot, turn=t.turn, start=tail.start,
                               end=tail.end, speaker="caller"))  # fmt: skip
    return out


_NO_PHONE = re.compile(
    r"\b(?:(?:i|we)\s+(?:don't|do not|never)\s+(?:have|had|got)|there's no|there is no"
    r"|(?:i|we)\s+have\s+no)\s+(?:a\s+|any\s+)?(?P<kind>cell|mobile|cellphone|home phone|landline"
    r"|work phone|work number|house phone)",
    re.I,
)


def _no_phone(case: Case, slot: str) -> Mention | None:
    """The caller's last "I don't have a cell" (for this slot), as their own words."""
    found: Mention | None = None
    for t in case.transcript:
        if t.speaker != "caller":
            continue
        for m in _NO_PHONE.finditer(t.text):
            if PHONE_SLOTS.get(m.group("kind").lower().split()[0]) != slot:
                continue
            probe = Mention(value="", slot=slot, turn=t.turn, start=m.start(), end=m.end(),
                            speaker="caller")  # fmt: skip
            if stance(case.transcript, probe) is Stance.ASSERTED:
                found = probe
    return found


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
    if slot in _PHONES:
        across += _derived(case, slot)
    mentions = _inherit_slots(mentions + across)
    ledger = settle(case.transcript, mentions)
    denial = _no_phone(case, slot) if slot in _PHONES else None
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
        fixed = _read_back_fixed(case, mentions, want) if slot in _CHARACTERS else None
        if fixed is not None:
            return unsure(
                f"the caller answers a read-back with other characters (turn {fixed.turn})", [fixed]
            )
        conflict = _differs_from_caller(case, mentions, ledger.rejected, final) or _read_back_open(
            case, mentions, ledger.rejected, final
        )
        if conflict is not None:
            return unsure(
                f"the caller accepts a read-back that differs from what they said (turn "
                f"{conflict.turn})",
                [conflict, final],
            )
        late = _late_correction(case, final.turn, final) or _fixed_after(case, final)
        if late is None and slot in ("given", "family"):
            late = _longer_name(case, final)
        if late is None and slot == "address.line":
            late = _unit_after(case, final)
        if late is not None:
            return unsure(f"the caller corrects something after turn {final.turn}", [late])
        if slot == "email" and not _spelling_agrees(case, final):
            return unsure("the caller's spelling does not match the address")
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


_LATE_FIX = re.compile(
    r"\b(?:actually|wait|sorry|correction|i mean|scratch that|i said)\b|^\W*no\b", re.I
)


#: a later turn taking back what was said: "wait, that's my old number", "not my email"
_TAKEN_BACK = re.compile(
    r"\b(?:that's|that is|that was|it's|it is|it was|those are)\s+(?:my\s+)?(?:old|previous"
    r"|former|wrong|not (?:mine|my|right|correct|it|current)|(?:my\s+)?(?:husband|wife|son"
    r"|daughter|mom|mother|dad|father|sister|brother|partner)'s)\b"
    r"|\bnot my (?:number|email|address|cell|phone)\b|\bwrong (?:number|one|address|email)\b"
    r"|\b(?:don't|do not) use (?:that|it|this)\b",
    re.I,
)
_OTHER = re.compile(r"\b(?:other|different|another|instead|don't use|change)\b", re.I)
#: number words that are mostly not numbers ("the old one", "oh, ...")
_PRONOUNS = {"one", "oh", "o", "once", "una", "won", "ate"}


_RESTATE_WORDS = {
    "no", "nope", "sorry", "wait", "actually", "it's", "its", "it", "is", "that's", "i", "said",
    "the", "last", "four", "digits", "are", "end", "ends", "in", "with", "ending", "no,",
}  # fmt: skip


def _read_back_open(
    case: Case, mentions: Sequence[Mention], rejected: dict[str, Mention], final: Mention
) -> Mention | None:
    """After the caller's final value the agent reads back another one for the slot and the
    caller does not turn it down ("Five twenty Lake Street, apartment two?" - "Sí, apartment
    two"): the two were never reconciled."""
    if final.speaker != "caller":
        return None
    for m in mentions:
        if m.speaker != "agent" or m.slot != final.slot or m.turn <= final.turn:
            continue
        if m.value == final.value or m.value in rejected:
            continue
        turn = turn_by_number(case.transcript, m.turn)
        if turn is not None and _REPLACED.search(turn.text):
            continue  # "I'll replace your old number X with Y": X is not a read-back
        if stance(case.transcript, m) is not Stance.ELSEWHERE:
            return m
    return None


_REPLACED = re.compile(r"\b(?:old|previous|former|replac\w*|instead of|on file|used to)\b", re.I)


def _chars(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", value).upper()


def _unit_after(case: Case, final: Mention) -> Mention | None:
    """A unit the caller says after the final address line, outside any address ("Sí,
    apartment two"), that the line does not hold: part of the address the finder did not join."""
    for t in case.transcript:
        if t.speaker != "caller" or t.turn < final.turn:
            continue
        for m in UNIT_SAID.finditer(t.text):
            if t.turn == final.turn and final.start <= m.start() < final.end:
                continue
            said = m.group("value").replace("-", " ").split()
            digits = number_digits([w.lower() for w in said if not w.isupper() or w.isdigit()])
            letter = "".join(w for w in said if w.isupper() and len(w) == 1)
            unit = (digits or "") + letter.lower() if digits else m.group("value").lower()
            if not re.search(rf"\b{re.escape(unit)}\b", final.value):
                return Mention(value=unit, slot=None, turn=t.turn, start=m.start(), end=m.end(),
                               speaker="caller")  # fmt: skip
    return None


def _longer_name(case: Case, final: Mention) -> Mention | None:
    """The spelled name's own turn goes on to a longer name that holds it ("Smith, S-M-I-T-H,
    but it's hyphenated, Smith-Jones"): the spelling was only part of it."""
    turn = turn_by_number(case.transcript, final.turn)
    if turn is None:
        return None
    name = re.escape(final.value.split()[-1])
    pattern = rf"\b(?:{name}[-\s]+[A-Z][a-zà-ÿ']+|[A-Z][a-zà-ÿ']+[-\s]+{name})\b"
    for m in re.finditer(pattern, turn.text[final.end :], re.IGNORECASE):
        said = m.group()
        if said[0].isupper() and all(w[:1].isupper() for w in re.split(r"[-\s]+", said)):
            start = final.end + m.start()
            return Mention(value=said, slot=None, turn=turn.turn, start=start,
                           end=start + len(said), speaker=turn.speaker)  # fmt: skip
    return None


def _differs_from_caller(
    case: Case, mentions: Sequence[Mention], rejected: dict[str, Mention], final: Mention
) -> Mention | None:
    """A final value the caller only accepted ("Yes." to the agent's read-back) while the
    caller's own words gave another value for the slot, never taken back: the "yes" may be to a
    misheard read-back, and which value stands is for a human."""
    if final.speaker != "agent":
        return None
    for m in mentions:
        if m.speaker != "caller" or m.slot != final.slot or m.turn >= final.turn:
            continue
        if m.value == final.value or m.value in rejected:
            continue
        if _chars(m.value) in _chars(final.value):
            continue  # "... B-E-R-G at the end": part of it, said again
        if stance(case.transcript, m) is Stance.ASSERTED:
            return m
    return None


_FIX_CUE = re.compile(
    r"\b(?:no|sorry|wait|actually|i mean|make that|scratch that|correction)\b", re.I
)


def _fixed_after(case: Case, final: Mention) -> Mention | None:
    """The final value's own turn goes on to correct something with digits, letters or an
    address's "dot" after it ("... nineteen sixty - no, sorry, nineteen seventy" where only the
    first was read): a fix the finders could not place."""
    turn = turn_by_number(case.transcript, final.turn)
    if turn is None:
        return None
    tail = turn.text[final.end :]
    cue = _FIX_CUE.search(tail)
    if cue is None:
        return None
    rest = tail[cue.end() :]
    words = [
        w for w in re.findall(r"[\w']+", rest) if is_number_word(w) and w.lower() not in _PRONOUNS
    ]
    if runs(rest) or words or re.search(r"\b(?:dot|at|underscore|dash)\b", rest, re.I):
        start = final.end + cue.start()
        return Mention(value="", slot=None, turn=turn.turn, start=start,
                       end=final.end + cue.end(), speaker=turn.speaker)  # fmt: skip
    return None


def _restates(text: str, final: Mention, said: Sequence[Run]) -> bool:
    """A later "No, oh one one nine." says nothing but the end of the final value: the caller
    repeats the digits a wrong read-back missed, and the value stands."""
    chars = re.sub(r"[^A-Za-z0-9]", "", final.value).upper()
    if not all(len(r.value) >= 3 and chars.endswith(r.value.upper()) for r in said):
        return False
    rest = text
    for r in reversed(said):
        rest = rest[: r.start] + " " + rest[r.end :]
    return all(w.lower() in _RESTATE_WORDS for w in re.findall(r"[\w']+", rest))


def _late_correction(case: Case, after: int, final: Mention | None = None) -> Mention | None:
    """A caller turn after the final value that corrects something and speaks digits or letters:
    a partial fix ("actually, the last digit is eight") the finders cannot place; one that only
    repeats the end of ``final`` (:func:`_restates`) is not a fix."""
    for t in case.transcript:
        if t.turn <= after or t.speaker != "caller":
            continue
        back = _TAKEN_BACK.search(t.text)
        if back is not None:
            return Mention(value="", slot=None, turn=t.turn, start=back.start(), end=back.end(),
                           speaker="caller")  # fmt: skip
        fix = _LATE_FIX.search(t.text)
        if fix is None:
            continue
        if _OTHER.search(t.text):
            return Mention(
                value="",
                slot=None,
                turn=t.turn,
                start=fix.start(),
                end=fix.end(),
                speaker="caller",
            )
        numbers = [k for k in tokens(t.text) if is_number_word(k.text) and k.low not in _PRONOUNS]
        said = runs(t.text)
        if said and final is not None and _restates(t.text, final, said):
            continue
        if said or numbers:
            return Mention(
                value="",
                slot=None,
                turn=t.turn,
                start=fix.start(),
                end=fix.end(),
                speaker="caller",
            )
    return None


#: slots whose values are strings of characters a caller may fix one by one
_CHARACTERS = {"mobile", "home", "work", "member_id", "group_number", "email", "postal_code"}


_SLOT_WORDS = {**PHONE_SLOTS, **CODE_SLOTS}


def _other_slot(text: str, r: Run, slot: str | None) -> bool:
    """The sentence of ``r`` names another slot before it ("and the group number is ...")."""
    sentence = text[: r.start].rsplit(".", 1)[-1]
    named = [_SLOT_WORDS[w] for w in re.findall(r"[a-z]+", sentence.lower()) if w in _SLOT_WORDS]
    return bool(named) and named[-1] != slot


def _read_back_fixed(case: Case, mentions: Sequence[Mention], want: str) -> Mention | None:
    """The caller answers the agent's read-back of this value with digits or letters that are
    not in it ("oh one two eight", to a read-back ending 0127): a fix the finders cannot place."""
    chars = re.sub(r"[^A-Za-z0-9]", "", want).upper()
    for m in mentions:
        if m.speaker != "agent" or m.value != want:
            continue
        reply = turn_by_number(case.transcript, m.turn + 1)
        if reply is None or reply.speaker != "caller":
            continue
        for r in runs(reply.text):
            if len(r.value) >= 2 and r.value.upper() not in chars:
                if _other_slot(reply.text, r, m.slot):
                    continue  # "Yes. And the group number is G, R, P, ...": another value
                return Mention(
                    value=r.value,
                    slot=None,
                    turn=reply.turn,
                    start=r.start,
                    end=r.end,
                    speaker="caller",
                )
    return None


def _spelling_agrees(case: Case, final: Mention) -> bool:
    """Letters and digits the caller spells around an email must be in it ("R, A, M as in Mike,
    A, N" in ``priya.raman82@...``); a spelling that disagrees is a correction we cannot read."""
    local = re.sub(r"[^a-z0-9]", "", final.value.split("@")[0])
    for t in case.transcript:
        if t.speaker != "caller" or not final.turn - 3 <= t.turn <= final.turn + 3:
            continue
        for r in runs(t.text):
            if r.letters and r.value.lower() not in local:
                return False
    return True


_INTRO = re.compile(
    r"\b(?:this is|my name is|my name's|i'm|i am|it's|name is)\s+"
    r"([A-Z][a-zà-ÿ'-]+(?:\s+[A-Z][a-zà-ÿ'-]+){0,2})"
)
_NAME_DOUBT = re.compile(
    r"legal name|goes by|nickname|calls me|call me|put down|spell|spelt|spelled|maiden|"
    r"[A-Z]-[A-Z]|\bas in\b",
    re.IGNORECASE,
)


def said_name(case: Case, slot: str, want: str) -> Finding | None:
    """A name said, unspelled, exactly as stored when the caller introduces themself ("this is
    Maria Delgado"): the only spoken evidence for a name besides its spelling. Never a
    contradiction (a name that sounds different may be the transcript's spelling), and nothing
    at all when the call spells a name or talks about nicknames and legal names."""
    if any(_NAME_DOUBT.search(t.text) for t in case.transcript):
        return None
    for t in case.transcript:
        if t.speaker != "caller":
            continue
        for m in _INTRO.finditer(t.text):
            words = m.group(1).split()
            if len(words) < 2:
                continue
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
