"""What can still undo a slot's final value: the checks run after the caller's last value equals
the fact, each of which sends it to a human instead of verifying it.

- another value floated after it, hedged ("or is it oh one three six?");
- a read-back of it answered with other characters ("oh one two eight" to ...0127), unless the
  reply goes on to another slot ("Yes. And the group number is ...");
- a read-back the caller only said "yes" to while their own words gave another value, or a later
  read-back of another value nobody turned down;
- a later fix or take-back ("actually, the last one is a three", "wait, that's my old number"),
  or a fix later in the value's own turn the finders could not place; for names a longer name
  after the spelling ("Smith-Jones"), for address lines a unit said later on its own;
- an email whose spelled letters around it are not in it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ehrbridge.review.grounding.address import UNIT_SAID
from ehrbridge.review.grounding.dialogue import Mention, Settlement, Stance, stance, turn_by_number
from ehrbridge.review.grounding.fields import CODE_SLOTS, PHONE_SLOTS
from ehrbridge.review.grounding.finding import Finding, unsure
from ehrbridge.review.grounding.spoken import Run, is_number_word, number_digits, runs, tokens
from ehrbridge.review.verdicts import Case


def doubt(
    case: Case,
    mentions: Sequence[Mention],
    ledger: Settlement,
    final: Mention,
    slot: str,
    want: str,
) -> Finding | None:
    """Why the final value ``final`` (equal to the fact's ``want``) must still go to a human, or
    None (module docstring)."""
    floated = [d for d in ledger.doubts.get(slot, []) if d.value != want]
    if floated:
        return unsure("another value was floated after it", [floated[0]])
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
    return None


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
