"""Phones the caller gives by reference to the number on file, and phones the caller says there
is none of.

"Same as my old one, but ending in four two (instead of one seven)" is the known number for that
slot (or the one number on file) with its last digits replaced: as many as said, and any
"instead of" must match what they replace; with no number on file, or a turn naming two phones,
nothing is derived. "I don't have a cell" is the caller's own word that there is no mobile.
"""

from __future__ import annotations

import re

from ehrbridge.review.grounding.dialogue import Mention, Stance, stance
from ehrbridge.review.grounding.fields import PHONE_SLOTS, e164, slot_of
from ehrbridge.review.grounding.spoken import runs
from ehrbridge.review.verdicts import Case

PHONES = {"mobile", "home", "work"}

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


def derived(case: Case, slot: str) -> list[Mention]:
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
        on_file = [k for k in sorted(PHONES) if case.known.get(f"Patient.phone.{k}")]
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


def no_phone(case: Case, slot: str) -> Mention | None:
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
