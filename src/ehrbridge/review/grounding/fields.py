"""Per field kind: find the values a turn speaks, normalised as the system stores them.

Each finder reads one turn and returns :class:`~.dialogue.Mention` s with the slot they fill
(a phone's ``mobile``/``home``/``work``, ``member_id`` or ``group_number``...). Phones become
E.164 with ``phonenumbers``; emails are assembled from their spoken parts ("maria dot santos at
example dot com"); member and group ids from spelled letters and digit groups; names only from
spelled letters (a name that sounds right is never proof).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise

import phonenumbers

from ehrbridge.review.grounding.dialogue import Mention, turn_by_number
from ehrbridge.review.grounding.spoken import (
    Run,
    Token,
    is_number_word,
    number_digits,
    runs,
    tokens,
)
from ehrbridge.review.verdicts import Turn

PHONE_SLOTS = {
    "cell": "mobile", "mobile": "mobile", "celular": "mobile", "cellphone": "mobile",
    "home": "home", "house": "home", "landline": "home", "casa": "home",
    "work": "work", "office": "work", "trabajo": "work",
}  # fmt: skip


def _slot_in(text: str, words: dict[str, str], before: int | None = None) -> str | None:
    """The slot of the last slot word in ``text[:before]`` (or the first after, if none)."""
    found = [
        (m.start(), words[m.group().lower()])
        for m in re.finditer(r"[^\W\d_]+", text)
        if m.group().lower() in words
    ]
    if not found:
        return None
    if before is None:
        return found[-1][1]
    earlier = [s for pos, s in found if pos < before]
    return earlier[-1] if earlier else found[0][1]


def slot_of(transcript: Sequence[Turn], turn: Turn, pos: int, words: dict[str, str]) -> str | None:
    """Which slot a value at ``pos`` of ``turn`` fills: a slot word in the same turn, else in the
    question before it, else the next slot word the caller says (or accepts) in the next four
    turns, else the last one the caller said earlier."""
    here = _slot_in(turn.text, words, pos)
    if here is not None:
        return here
    previous = turn_by_number(transcript, turn.turn - 1)
    if previous is not None and previous.speaker == "agent":
        asked = _slot_in(previous.text, words)
        if asked is not None:
            return asked
    for k in range(turn.turn + 1, turn.turn + 5):
        later = turn_by_number(transcript, k)
        if later is not None and later.speaker == "caller":
            said = _slot_in(later.text.split(".")[0], words, 0)
            if said is not None:
                return said
    for k in range(turn.turn - 1, -1, -1):
        earlier = turn_by_number(transcript, k)
        if earlier is not None and earlier.speaker == "caller":
            said = _slot_in(earlier.text, words)
            if said is not None:
                return said
    return None


def e164(digits: str, region: str = "US") -> str | None:
    """A national or international number as E.164, or None if it is not a valid number.

    >>> e164("6175550199"), e164("12"), e164("+1 (312) 555-0114")
    ('+16175550199', None, '+13125550114')
    """
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


_REPAIR = re.compile(r"\b(?:sorry|no|wait|i mean|actually|scratch that|let me start over)\b", re.I)


def repaired(text: str, spoken: list[Run], length: int) -> list[Run]:
    """``spoken`` with a number the caller repaired mid-way read whole: "four one five, five
    five - sorry, five six five, oh one seven three" restarts the second group, so it is
    ``4155650173``. The repair must restart a group the caller had begun (the cut falls where a
    group ended), and the result must have ``length`` characters; anything else is left as said.
    """
    out = list(spoken)
    for a, b in pairwise(spoken):
        if len(a.value) >= length or len(b.value) >= length or a.letters or b.letters:
            continue
        if not _REPAIR.search(text[a.end : b.start]) or re.search(r"[.?!]", text[a.end : b.start]):
            continue
        cut = length - len(b.value)
        if cut in a.groups:
            value = a.value[:cut] + b.value
            out.append(Run(value=value, start=a.start, end=b.end, letters=0, groups=b.groups))
    return sorted(out, key=lambda r: (r.start, r.end))


_EXTENSION = re.compile(
    r"\W*(?:and\s+)?(?:(?:my|the|his|her)\s+)?(?:extension|ext)\b\.?(?:\s+is)?", re.IGNORECASE
)


def paused(text: str, spoken: list[Run]) -> list[Run]:
    """``spoken`` with a phone number read through its pauses: "nine four nine... five five
    five... zero one two three" is ``9495550123`` when the pieces are its groups (3, 3, 4 digits,
    or 3 and 7), with nothing but "..." between them. Any other split stays as said (a pause
    before the end can be a caller trailing off)."""
    out = list(spoken)
    for i in range(len(spoken)):
        for k in (3, 2):
            chunk = spoken[i : i + k]
            if len(chunk) != k or any(r.letters for r in chunk):
                continue
            if not all(
                re.fullmatch(r"\s*\.\.\.\s*", text[a.end : b.start]) for a, b in pairwise(chunk)
            ):
                continue
            sizes = [len(r.value) for r in chunk]
            if sizes in ([3, 3, 4], [3, 7], [6, 4]):
                value = "".join(r.value for r in chunk)
                out.append(Run(value=value, start=chunk[0].start, end=chunk[-1].end, letters=0))
    return sorted(out, key=lambda r: (r.start, r.end))


def phone_mentions(transcript: Sequence[Turn], turn: Turn) -> list[Mention]:
    """The full phone numbers spoken in ``turn``, E.164, with an extension when one is said."""
    found: list[Mention] = []
    toks = tokens(turn.text)
    spoken = paused(turn.text, repaired(turn.text, runs(turn.text, toks), 10))
    for i, run in enumerate(spoken):
        if run.letters or len(run.value) not in (10, 11):
            continue
        number = e164(run.value)
        if number is None:
            continue
        end = run.end
        after = [r for r in spoken[i + 1 :] if r.start >= run.end]
        if _EXTENSION.match(turn.text, run.end) and after:
            number += f";ext={after[0].value}"
            end = after[0].end
        slot = slot_of(transcript, turn, run.start, PHONE_SLOTS)
        slots = [slot, *_same_as(turn.text, run.start, slot)]
        found.extend(
            Mention(
                value=number,
                slot=one,
                turn=turn.turn,
                start=run.start,
                end=end,
                speaker=turn.speaker,
            )
            for one in slots
        )
    return found


_SAME_AS = re.compile(
    r"\b(?P<a>cell|mobile|cellphone|home|house|landline|work|office)\b(?:\s+(?:phone|number|line))?"
    r"\s+(?:is|es)\s+(?:the\s+)?same\s+(?:as|que)\s+(?:my|the|mi)\s+"
    r"(?P<b>cell|mobile|cellphone|home|house|landline|work|office)\b[^.?!\d]*$",
    re.IGNORECASE,
)


def _same_as(text: str, pos: int, slot: str | None) -> list[str]:
    """ "My cell is the same as my home number, four one five...": the number is the other
    slot's too (the one the nearest slot word does not name)."""
    m = _SAME_AS.search(text[:pos])
    if m is None:
        return []
    other = {PHONE_SLOTS[m.group("a").lower()], PHONE_SLOTS[m.group("b").lower()]} - {slot}
    return sorted(other) if len(other) == 1 else []


_EMAIL_SYMBOLS = {"dot": ".", "period": ".", "punto": ".", "underscore": "_", "dash": "-",
                  "hyphen": "-", "guion": "-", "arroba": "@", "at": "@"}  # fmt: skip
_TLDS = {"com", "org", "net", "edu", "gov", "us", "io", "co", "info", "biz", "me"}
_EMAIL_STOP = {
    "is", "it's", "its", "email", "e", "mail", "address", "my", "use", "personal", "work", "the",
    "to", "be", "should", "it", "that's", "so", "that", "okay", "yes", "me", "new", "and",
    "your", "now", "was", "say", "es", "mi", "correo", "like",
}  # fmt: skip


#: what callers say about an address that is not part of it
_TRANSPARENT = (("all", "one", "word"), ("one", "word"), ("all", "lowercase"),
                ("all", "lower", "case"), ("no", "spaces"))  # fmt: skip


_ONE_AFTER = {"personal", "work", "new", "old", "other", "home", "school", "main", "the", "that",
              "this", "private", "current", "best"}  # fmt: skip


def _email_stop(toks: list[Token], i: int) -> bool:
    """A word that cannot be in a spoken address's local part ("my email is"); "e" only in
    "e-mail", since it is also a spelled letter."""
    if toks[i].low == "e":
        after = [t.low for t in toks[i + 1 : i + 3]]
        return "mail" in after
    if toks[i].low in ("one", "ones") and i > 0 and toks[i - 1].low in _ONE_AFTER:
        return True  # "my personal one, tam dot nguyen at ..."
    return toks[i].low in _EMAIL_STOP


def _email_piece(toks: list[Token], i: int) -> tuple[str, int] | None:
    """One spoken piece of an email address at ``toks[i]``: a symbol word, a number, a spelled
    letter group or a word; and the index after it."""
    t = toks[i]
    low = t.low
    for phrase in _TRANSPARENT:
        if [x.low for x in toks[i : i + len(phrase)]] == list(phrase):
            return "", i + len(phrase)
    as_in = i + 3 < len(toks) and toks[i + 1].low == "as" and toks[i + 2].low == "in"
    if len(t.text) == 1 and t.text.isalpha() and as_in:
        # "T as in Tom": the letter; the word and a hyphenated tail are skipped
        j = i + 4
        while j + 1 < len(toks) and toks[j].text == "-" and toks[j + 1].text.isalpha():
            j += 2
        return low, j
    if low in _EMAIL_SYMBOLS and low != "at":
        return _EMAIL_SYMBOLS[low], i + 1
    if t.text in (",", "-"):
        return "", i + 1
    if t.text == ".":
        return None
    words: list[str] = []
    j = i
    while j < len(toks) and is_number_word(toks[j].text) and toks[j].low not in ("o",):
        words.append(toks[j].low)
        j += 1
        while j < len(toks) and toks[j].text == "-":
            j += 1
    if words:
        digits = number_digits(words)
        return (digits, j) if digits is not None else None
    if t.text.isalpha():
        return low, i + 1
    return None


def email_mentions(transcript: Sequence[Turn], turn: Turn) -> list[Mention]:
    """The email addresses spoken in ``turn``, lower-case: ``priya dot raman eighty-two at
    example dot com`` → ``priya.raman82@example.com``."""
    del transcript
    toks = tokens(turn.text)
    found: list[Mention] = [
        Mention(
            value=m.group().lower().rstrip("."),
            slot="email",
            turn=turn.turn,
            start=m.start(),
            end=m.end(),
            speaker=turn.speaker,
        )
        for m in _WRITTEN_EMAIL.finditer(turn.text)
    ]
    for k, t in enumerate(toks):
        if t.low not in ("at", "arroba"):
            continue
        # the local part: pieces back to a stop word or a sentence break
        i = k - 1
        while i >= 0 and not _email_stop(toks, i) and toks[i].text not in (".", ":", "?"):
            i -= 1
        local = ""
        j = i + 1
        while j < k:
            piece = _email_piece(toks, j)
            if piece is None:
                local = ""
                break
            local += piece[0]
            j = piece[1]
        # the domain: pieces up to a known top-level domain
        domain = ""
        j = k + 1
        end = -1
        while j < len(toks) and j < k + 12:
            piece = _email_piece(toks, j)
            if piece is None:
                break
            domain += piece[0]
            j = piece[1]
            if piece[0] in _TLDS and domain.endswith("." + piece[0]):
                end = toks[j - 1].end
                break
        local = local.strip(".-_")
        if local and end > 0 and re.fullmatch(r"[a-z0-9._%+-]+", local):
            start = toks[i + 1].start
            found.append(
                Mention(
                    value=f"{local}@{domain}",
                    slot=_email_slot(turn.text, start),
                    turn=turn.turn,
                    start=start,
                    end=end,
                    speaker=turn.speaker,
                )
            )
            fixed = _DOMAIN_FIX.match(turn.text, end)
            if fixed is not None:
                # "... at example dot com - no, sorry, example dot org": the domain corrected
                new = ".".join(re.split(r"\s+(?:dot|punto)\s+", fixed.group("domain").lower()))
                if new.rsplit(".", 1)[-1] in _TLDS:
                    found.append(
                        Mention(
                            value=f"{local}@{new}",
                            slot="email",
                            turn=turn.turn,
                            start=fixed.start("domain"),
                            end=fixed.end("domain"),
                            speaker=turn.speaker,
                        )
                    )
    return found


#: an address the transcript writes out ("maria.santos@example.com")
_WRITTEN_EMAIL = re.compile(
    r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
_DOMAIN_FIX = re.compile(
    r"\W*(?:(?:no|sorry|wait|actually|i mean|make that|it's)\W+)+(?:at\s+)?"
    r"(?P<domain>[a-z]+(?:\s+(?:dot|punto)\s+[a-z]+)+)\b",
    re.IGNORECASE,
)


def _email_slot(text: str, pos: int) -> str | None:
    """Emails have one slot; a work address said to be the work one is kept apart."""
    del text, pos
    return "email"


CODE_SLOTS = {"group": "group_number", "grupo": "group_number", "member": "member_id",
              "id": "member_id", "subscriber": "member_id", "policy": "member_id"}  # fmt: skip


def code_mentions(transcript: Sequence[Turn], turn: Turn) -> list[Mention]:
    """Member and group ids: spelled letters and digit groups, at least five characters with a
    digit (``X as in x-ray, O as in Oscar, F, then four eight two`` → ``XOF482``)."""
    found: list[Mention] = []
    for run in runs(turn.text):
        if len(run.value) < 5 or not any(c.isdigit() for c in run.value):
            continue
        slot = slot_of(transcript, turn, run.start, CODE_SLOTS)
        found.append(
            Mention(
                value=run.value,
                slot=slot,
                turn=turn.turn,
                start=run.start,
                end=run.end,
                speaker=turn.speaker,
            )
        )
    return found


_ADDRESS_CONTEXT = re.compile(
    r"\b(?:zip|postal|address|street|st|avenue|ave|road|rd|drive|dr|lane|ln|boulevard|blvd|court"
    r"|way|place|unit|apartment|apt|suite|massachusetts|illinois|texas|california|new york"
    r"|florida|town)\b",
    re.IGNORECASE,
)


def zip_mentions(transcript: Sequence[Turn], turn: Turn) -> list[Mention]:
    """Five-digit runs spoken where an address or a ZIP code is being given."""
    previous = turn_by_number(transcript, turn.turn - 1)
    context = turn.text + " " + (previous.text if previous else "")
    if not _ADDRESS_CONTEXT.search(context):
        return []
    return [
        Mention(
            value=r.value,
            slot="postal_code",
            turn=turn.turn,
            start=r.start,
            end=r.end,
            speaker=turn.speaker,
        )
        for r in runs(turn.text)
        if r.letters == 0 and len(r.value) == 5
    ]


NAME_SLOTS = {"last": "family", "surname": "family", "apellido": "family", "family": "family",
              "first": "given", "given": "given", "nombre": "given"}  # fmt: skip


def name_mentions(transcript: Sequence[Turn], turn: Turn) -> list[Mention]:
    """Names spelled letter by letter (three letters or more), as ``Achterberg``; the slot from
    "last name"/"first name" nearby, else from the spoken word the spelling follows."""
    found: list[Mention] = []
    for run in runs(turn.text):
        if run.letters != len(run.value) or len(run.value) < 3:
            continue
        value = _spelled_name(turn.text, run)
        slot = name_slot(transcript, turn, run, whole=" " in value)
        found.append(
            Mention(
                value=value,
                slot=slot,
                turn=turn.turn,
                start=run.start,
                end=run.end,
                speaker=turn.speaker,
            )
        )
    return found


def name_case(name: str) -> str:
    """A name in the one form compared: each word capitalised ("Vega Rosario")."""
    return " ".join(w.capitalize() for w in name.split())


def _spelled_name(text: str, run: Run) -> str:
    """The name a spelling gives; a spelling of two or three words said just before it, group by
    group ("Vega Rosario, V-E-G-A, R-O-S-A-R-I-O"), keeps its spaces."""
    said = re.search(r"((?:[A-Z][a-zà-ÿ'-]+\s+){1,2}[A-Z][a-zà-ÿ'-]+)\W*$", text[: run.start])
    if said is not None and run.groups:
        words = said.group(1).split()
        letters = [re.sub(r"[^A-Za-z]", "", w).upper() for w in words]
        cuts = {sum(len(w) for w in letters[:k]) for k in range(1, len(letters))}
        if "".join(letters) == run.value and cuts <= set(run.groups):
            return name_case(" ".join(w.lower() for w in letters))
    return run.value.capitalize()


def name_slot(
    transcript: Sequence[Turn], turn: Turn, run: Run, *, whole: bool = False
) -> str | None:
    """Which name a spelling at ``run`` of ``turn`` is: "last name"/"first name" in the turn, else
    the spoken word it follows (not for a spelling of every word said, ``whole``), else the
    agent's question before it."""
    slot = _slot_in(turn.text, NAME_SLOTS, run.start)
    if slot is None and not whole:
        slot = _spelled_word_slot(turn.text, run)
    if slot is None:
        previous = turn_by_number(transcript, turn.turn - 1)
        if previous is not None and previous.speaker == "agent":
            slot = _slot_in(previous.text, NAME_SLOTS)
    return slot


def _spelled_word_slot(text: str, run: Run) -> str | None:
    """``Gerald Okonkwo, O-K-O-N-K-W-O``: the spelling follows the second of two capitalised
    words, the family name; ``Marcus, M-A-R-C-U-S`` after a single one says nothing."""
    before = text[: run.start]
    names = re.findall(r"\b([A-Z][a-zà-ÿ]+)\s+([A-Z][a-zà-ÿ]+)\W*$", before)
    if names and names[-1][1].lower()[:2] == run.value.lower()[:2]:
        return "family"
    if names and names[-1][0].lower()[:2] == run.value.lower()[:2]:
        return "given"
    return None
