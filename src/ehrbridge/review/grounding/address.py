"""Spoken street addresses and cities, in the USPS forms the system stores.

"Thirty-three hundred North Lake Shore Drive, unit twelve-oh-four" → ``3300 N Lake Shore Dr Unit
1204``; "two eighteen Beacon Street, apartment three B" → ``218 Beacon St Apt 3B``. The house
number is read as spoken digit groups ("two eighteen" is 218, not 20), the street words are kept
as said, and the suffix, direction and unit words take their USPS abbreviations. A unit that was
never said makes a different value, so the comparison is on the whole line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ehrbridge.review.grounding.dialogue import Mention
from ehrbridge.review.grounding.spoken import Token, is_number_word, number_digits, tokens
from ehrbridge.review.verdicts import Turn

SUFFIXES = {
    "street": "St", "st": "St", "avenue": "Ave", "ave": "Ave", "road": "Rd", "rd": "Rd",
    "drive": "Dr", "dr": "Dr", "lane": "Ln", "ln": "Ln", "boulevard": "Blvd", "blvd": "Blvd",
    "court": "Ct", "ct": "Ct", "place": "Pl", "pl": "Pl", "way": "Way", "terrace": "Ter",
    "circle": "Cir", "parkway": "Pkwy", "highway": "Hwy", "square": "Sq", "trail": "Trl",
}  # fmt: skip
DIRECTIONS = {"north": "N", "south": "S", "east": "E", "west": "W", "n": "N", "s": "S",
              "e": "E", "w": "W", "northeast": "NE", "northwest": "NW", "southeast": "SE",
              "southwest": "SW"}  # fmt: skip
UNITS = {"apartment": "Apt", "apt": "Apt", "unit": "Unit", "suite": "Ste", "ste": "Ste",
         "number": "#", "#": "#", "apartamento": "Apt", "apto": "Apt", "departamento": "Apt",
         "depto": "Apt", "unidad": "Unit"}  # fmt: skip
#: a unit said on its own, after the address: "apartment two", "unit 4B"
UNIT_SAID = re.compile(
    r"\b(?:apartment|apt|unit|suite|ste|apartamento|apto|departamento|depto|unidad)\b\.?\s+"
    r"(?:number\s+)?(?P<value>[\w-]+(?:\s+[A-Z]\b)?)",
    re.IGNORECASE,
)
STATES = {"massachusetts", "illinois", "texas", "california", "florida", "new york", "ohio",
          "georgia", "washington", "oregon", "arizona", "colorado", "michigan", "ma", "il",
          "ny", "tx", "ca"}  # fmt: skip


def canonical_line(value: str) -> str:
    """A stored address line in one comparable form (case and abbreviations).

    >>> canonical_line("3300 North Lake Shore Drive Unit 1204")
    '3300 n lake shore dr unit 1204'
    """
    words = re.findall(r"[A-Za-z]+|\d+[A-Za-z]?|#", value)
    out: list[str] = []
    for i, w in enumerate(words):
        low = w.lower()
        if low in SUFFIXES and i > 1:
            out.append(SUFFIXES[low].lower())
        elif low in DIRECTIONS and i == 1:
            out.append(DIRECTIONS[low].lower())
        elif low in UNITS:
            out.append(UNITS[low].lower())
        else:
            out.append(low)
    return " ".join(out)


def _unit_value(toks: list[Token], i: int) -> tuple[str, int] | None:
    """A unit's value at ``toks[i]`` ("three B", "3B", "twelve-oh-four") and the index after."""
    words: list[str] = []
    j = i
    while j < len(toks) and (is_number_word(toks[j].text) or toks[j].text == "-"):
        if toks[j].text != "-":
            words.append(toks[j].low)
        j += 1
    digits = number_digits(words) if words else ""
    if digits is None:
        return None
    if j < len(toks) and len(toks[j].text) == 1 and toks[j].text.isupper():
        digits += toks[j].text
        j += 1
    return (digits, j) if digits else None


def address_mentions(transcript: Sequence[Turn], turn: Turn) -> list[Mention]:
    """Street addresses spoken in ``turn``: a number, the street's words, a suffix, a unit."""
    del transcript
    toks = tokens(turn.text)
    found: list[Mention] = []
    for k, t in enumerate(toks):
        if t.low not in SUFFIXES or k < 2:
            continue
        # street words back to the house number
        i = k - 1
        names: list[str] = []
        while i >= 0 and toks[i].text[:1].isupper() and not is_number_word(toks[i].text):
            names.insert(0, toks[i].text)
            i -= 1
        if not names or len(names) > 4:
            continue
        j = i
        while j >= 0 and (is_number_word(toks[j].text) or toks[j].text == "-"):
            j -= 1
        number_words = [x.low for x in toks[j + 1 : i + 1] if x.text != "-"]
        number = number_digits(number_words) if number_words else None
        if not number:
            continue
        parts = [number]
        if names[0].lower() in DIRECTIONS and len(names) > 1:
            parts.append(DIRECTIONS[names[0].lower()])
            names = names[1:]
        parts += [*names, SUFFIXES[t.low]]
        end = t.end
        after = k + 1
        if after < len(toks) and toks[after].text == ",":
            after += 1
        if after < len(toks) and toks[after].low in UNITS:
            unit = _unit_value(toks, after + 1)
            if unit is not None:
                parts += [UNITS[toks[after].low], unit[0]]
                end = toks[unit[1] - 1].end
        found.append(
            Mention(
                value=canonical_line(" ".join(parts)),
                slot="address.line",
                turn=turn.turn,
                start=toks[j + 1].start,
                end=end,
                speaker=turn.speaker,
            )
        )
    return found


def city_mentions(transcript: Sequence[Turn], turn: Turn) -> list[Mention]:
    """The city named right after a spoken street address ("..., apartment three B, in
    Brookline"; "..., Chicago, six oh six five seven")."""
    found: list[Mention] = []
    for address in address_mentions(transcript, turn):
        rest = turn.text[address.end :]
        m = re.match(r"\s*,?\s*(?:in\s+)?((?:[A-Z][a-z]+)(?:\s+[A-Z][a-z]+){0,2})", rest)
        if m is None or m.group(1).lower() in STATES:
            continue
        name = m.group(1)
        start = address.end + m.start(1)
        found.append(
            Mention(
                value=name.lower(),
                slot="address.city",
                turn=turn.turn,
                start=start,
                end=start + len(name),
                speaker=turn.speaker,
            )
        )
    return found
