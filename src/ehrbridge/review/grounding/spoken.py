"""How people say numbers, digits and letters on the phone, turned into characters with spans.

A turn is cut into :class:`Token` s (words, digit groups, punctuation) that keep their character
offsets, so everything found in it can be quoted back as evidence. :func:`runs` then reads the
spoken sequences of digits and spelled letters: ``six one seven, five five five, oh one nine
nine`` → ``6175550199``; ``double five`` → ``55``; ``thirty-three hundred`` → ``3300``;
``twelve-oh-four`` → ``1204``; ``X as in x-ray, O as in Oscar`` → ``XO``; ``T-H-P`` → ``THP``.
Compound number words (``forty-five``, ``thirty three hundred``, ``veinte``) are read by
``text2num``; what it leaves to us (``oh`` for zero, ``double``/``triple``, runs of single
digits, homophones such as ``fife`` and ``won``) is handled here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from text_to_num import text2num

#: Spanish tens joined to their unit by "y" ("treinta y dos", 32): one token, one number
_ES_Y = (
    r"(?:treinta|cuarenta|cincuenta|sesenta|setenta|ochenta|noventa)\s+y\s+"
    r"(?:uno|una|un|dos|tres|cuatro|cinco|seis|siete|ocho|nueve)\b"
)
_TOKEN = re.compile(
    rf"(?i:\b{_ES_Y})|\[[a-z ]+\]|[^\W\d_]+(?:'[^\W\d_]+)?|\d+|\.\.\.|[^\s\w]", re.UNICODE
)
_ES_Y_WORD = re.compile(_ES_Y, re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class Token:
    """One word, digit group or punctuation mark of a turn, with its span."""

    text: str
    start: int
    end: int
    #: ``text`` in lower case (read on every comparison, so kept)
    low: str


def tokens(text: str) -> list[Token]:
    """The tokens of ``text``.

    >>> [t.text for t in tokens("It's oh-one, [inaudible]...")]
    ["It's", 'oh', '-', 'one', ',', '[inaudible]', '...']
    """
    return list(_tokens(text))


@lru_cache(maxsize=4096)
def _tokens(text: str) -> tuple[Token, ...]:
    return tuple(
        Token(text=m.group(), start=m.start(), end=m.end(), low=m.group().lower())
        for m in _TOKEN.finditer(text)
    )


#: single digits, with the speech-to-text homophones the transcripts keep ("fife", "won", "ate")
DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "cero": "0",
    "one": "1", "won": "1", "uno": "1", "una": "1",
    "two": "2", "dos": "2",
    "three": "3", "tres": "3",
    "four": "4", "cuatro": "4",
    "five": "5", "fife": "5", "cinco": "5",
    "six": "6", "seis": "6",
    "seven": "7", "siete": "7",
    "eight": "8", "ate": "8", "ocho": "8",
    "nine": "9", "niner": "9", "nueve": "9",
}  # fmt: skip
_HOMOPHONES = {"fife": "five", "won": "one", "ate": "eight", "niner": "nine"}
_EN_NUMBER = {
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
    "ninety", "hundred", "thousand",
}  # fmt: skip
_ES_NUMBER = {
    "diez", "once", "doce", "trece", "catorce", "quince", "dieciséis", "dieciseis", "diecisiete",
    "dieciocho", "diecinueve", "veinte", "veintiuno", "veintidós", "veintidos", "veintitrés",
    "veintitres", "veinticuatro", "veinticinco", "veintiséis", "veintiseis", "veintisiete",
    "veintiocho", "veintinueve", "treinta", "cuarenta", "cincuenta", "sesenta", "setenta",
    "ochenta", "noventa", "cien", "ciento", "mil", "doscientos", "doscientas", "trescientos",
    "trescientas", "cuatrocientos", "cuatrocientas", "quinientos", "quinientas", "seiscientos",
    "seiscientas", "setecientos", "setecientas", "ochocientos", "ochocientas", "novecientos",
    "novecientas",
}  # fmt: skip
_REPEAT = {"double": 2, "triple": 3}
#: words that may sit inside a spoken sequence without ending it
_JOINERS = {",", "-", "then", "dash", "hyphen", "guion", "guión"}
#: joiners that end a spoken group ("six one seven, five..."; "Z X B dash seven...")
_GROUP_ENDS = {",", "dash", "hyphen", "guion", "guión"}

# "once" is Spanish eleven but mostly English; "o" alone is a letter more often than zero
_AMBIGUOUS = {"once", "o", "una", "ate", "won"}


@lru_cache(maxsize=8192)
def is_number_word(word: str) -> bool:
    """A word that can be part of a spoken number (digits included)."""
    low = word.lower()
    return (
        low.isdigit()
        or low in DIGIT_WORDS
        or low in _EN_NUMBER
        or low in _ES_NUMBER
        or low in _REPEAT
        or bool(_ES_Y_WORD.fullmatch(low))
    )


_TENS = {
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    "treinta", "cuarenta", "cincuenta", "sesenta", "setenta", "ochenta", "noventa",
}  # fmt: skip
_SCALES = {"hundred", "thousand", "cien", "ciento", "mil"} | {
    w for w in _ES_NUMBER if w.endswith(("cientos", "cientas"))
}


def _plausible(chunk: list[str]) -> bool:
    """Whether consecutive words can be one compound number ("forty five", "three hundred"),
    checked before asking ``text2num`` (which is slower at saying no)."""
    for a, b in pairwise(chunk):
        if b in _SCALES or a in _SCALES:
            continue
        if a in _TENS and b in DIGIT_WORDS and b not in ("oh", "o", "zero", "cero"):
            continue
        return False
    return True


@lru_cache(maxsize=4096)
def _compound(words: tuple[str, ...]) -> str | None:
    """The digits of one compound number (``forty five`` → ``45``), or None if the words are not
    one number (``five five``)."""
    phrase = " ".join(_HOMOPHONES.get(w, w) for w in words)
    for lang in ("en", "es"):
        try:
            return str(text2num(phrase, lang))
        except ValueError:
            continue
    return None


def number_digits(words: list[str]) -> str | None:
    """The digit string of a spoken number sequence (see :func:`number_parts`).

    >>> number_digits("six one seven five five five oh one nine nine".split())
    '6175550199'
    >>> number_digits("double five".split()), number_digits("thirty three hundred".split())
    ('55', '3300')
    >>> number_digits("twelve oh four".split()), number_digits("nineteen seventy nine".split())
    ('1204', '1979')
    """
    parts = number_parts(words)
    return None if parts is None else "".join(parts)


def number_parts(words: list[str]) -> list[str] | None:
    """The numbers of a spoken sequence, read greedily as compound numbers, or None if a word
    is not part of a number.

    >>> number_parts("seven three sixty six".split())
    ['7', '3', '66']
    """
    out: list[str] = []
    i = 0
    low = [w.lower() for w in words]
    while i < len(low):
        w = low[i]
        if w in _REPEAT:
            if i + 1 >= len(low):
                return None
            nxt = number_digits([low[i + 1]])
            if nxt is None or len(nxt) != 1:
                return None
            out.append(nxt * _REPEAT[w])
            i += 2
            continue
        if w.isdigit():
            out.append(w)
            i += 1
            continue
        if w in ("oh", "o", "zero", "cero"):
            out.append("0")
            i += 1
            continue
        best: tuple[int, str] | None = None
        for j in range(min(len(low), i + 6), i, -1):
            chunk = low[i:j]
            if any(c in _REPEAT or c in ("oh", "o") or c.isdigit() for c in chunk):
                continue
            if not _plausible(chunk):
                continue
            value = _compound(tuple(chunk))
            if value is not None:
                best = (j, value)
                break
        if best is None:
            return None
        i, value = best
        out.append(value)
    return out


@dataclass(frozen=True, kw_only=True)
class Run:
    """A spoken sequence of digits and spelled letters in one turn."""

    #: upper-case letters and digits, e.g. ``XOF482910377``
    value: str
    start: int
    end: int
    #: how many spelled letters it holds
    letters: int
    #: where the spoken groups end in ``value`` ("six one seven, five five..." → 3, ...)
    groups: tuple[int, ...] = ()


def _letter_at(toks: list[Token], i: int) -> tuple[str, int] | None:
    """A spelled letter at ``toks[i]`` and the index after it (``M as in Mike`` included)."""
    t = toks[i]
    if len(t.text) != 1 or not t.text.isalpha():
        return None
    after = i + 1
    if after + 1 < len(toks) and toks[after].low == "as" and toks[after + 1].low == "in":
        # "X as in x-ray": skip the word and its hyphenated tail
        after += 3
        while after + 1 < len(toks) and toks[after].text == "-" and toks[after + 1].text.isalpha():
            after += 2
        return t.text.upper(), after

    def single(k: int) -> bool:
        return 0 <= k < len(toks) and len(toks[k].text) == 1 and toks[k].text.isalpha()

    hyphen_before = i >= 2 and toks[i - 1].text == "-" and single(i - 2)
    hyphen_after = i + 2 < len(toks) and toks[i + 1].text == "-" and single(i + 2)
    comma_neighbour = (i + 2 < len(toks) and toks[i + 1].text == "," and single(i + 2)) or (
        i >= 2 and toks[i - 1].text == "," and single(i - 2)
    )
    if hyphen_before or hyphen_after or comma_neighbour:
        return t.text.upper(), after
    if t.text.isupper() and t.text not in ("I", "A", "O"):
        return t.text, after
    return None


#: homophones of four that are words too; read as four only between single digits
_FOUR_HOMOPHONES = {"for", "fore"}


def _single_digit(t: Token) -> bool:
    return t.low in DIGIT_WORDS and t.low not in ("o",)


def _digit_words_around(toks: list[Token], j: int) -> bool:
    """A word between two spoken single digits ("oh one for two")."""
    return 0 < j < len(toks) - 1 and _single_digit(toks[j - 1]) and _single_digit(toks[j + 1])


def _leads_digits(toks: list[Token], j: int) -> bool:
    """An ambiguous word ("ate", "won") that starts a run of at least two more single digits
    ("ate one ate, five five five") is the digit."""
    nxt = toks[j + 1 : j + 3]
    return len(nxt) == 2 and all(_single_digit(t) for t in nxt)


def _digits_around(toks: list[Token], j: int, words: list[str]) -> bool:
    """A parenthesis or dot inside a number written in digits: "(617) 555", "617.555"."""
    t = toks[j].text
    nxt = toks[j + 1] if j + 1 < len(toks) else None
    if t == "(":
        return not words and nxt is not None and nxt.text.isdigit()
    prev_digit = bool(words) and words[-1].isdigit() and toks[j - 1].end == toks[j].start
    if not prev_digit or nxt is None or not nxt.text.isdigit():
        return False
    return t == ")" or toks[j].end == nxt.start


def _doubled_letter(toks: list[Token], j: int, parts: list[str]) -> tuple[str, int] | None:
    """ "double L" at ``toks[j]`` among spelled letters: ``LL`` and the index after it. A "double
    O" is letters only after a letter (else it is "double oh", zeros)."""
    t = toks[j]
    if t.low not in _REPEAT or j + 1 >= len(toks):
        return None
    nxt = toks[j + 1]
    if len(nxt.text) != 1 or not nxt.text.isupper():
        return None
    after_letter = bool(parts) and parts[-1][-1:].isalpha()
    if is_number_word(nxt.text) and not after_letter:
        return None
    if not after_letter and not (j + 2 < len(toks) and toks[j + 2].text in ("-", ",")):
        return None
    return nxt.text * _REPEAT[t.low], j + 2


def _letter_o(toks: list[Token], j: int, parts: list[str], words: list[str]) -> bool:
    """A bare capital O among spelled letters ("A, B as in boy, O"), with no digit after it, is
    the letter."""
    if words or not parts or not parts[-1].isalpha():
        return False
    k = j + 1
    while k < len(toks) and toks[k].text in (",", "-"):
        k += 1
    return k >= len(toks) or not is_number_word(toks[k].text)


def runs(text: str, toks: list[Token] | None = None) -> list[Run]:
    """The spoken digit-and-letter sequences of one turn, in order (read once per text).

    >>> [r.value for r in runs("It's six one seven, five five five, oh one two seven.")]
    ['6175550127']
    >>> [r.value for r in runs("X as in x-ray, O as in Oscar, then four eight two")]
    ['XO482']
    >>> [r.value for r in runs("Seven seven three, five five five... oh one three six.")]
    ['773555', '0136']
    """
    del toks  # the tokens of ``text``; kept for callers that have them
    return list(_runs(text))


@lru_cache(maxsize=4096)
def _runs(text: str) -> tuple[Run, ...]:
    toks = tokens(text)
    found: list[Run] = []
    i = 0
    while i < len(toks):
        parts: list[str] = []
        letters = 0
        start = end = -1
        words: list[str] = []
        groups: list[int] = []

        def flush(words: list[str] = words, parts: list[str] = parts) -> None:
            if words:
                digits = number_digits(words)
                parts.append(digits if digits is not None else "?")
                words.clear()

        j = i
        while j < len(toks):
            t = toks[j]
            doubled = _doubled_letter(toks, j, parts)
            if doubled is not None:
                # "H-A-double L-E-R": the letter twice
                flush()
                parts.append(doubled[0])
                letters += len(doubled[0])
                start = t.start if start < 0 else start
                end = toks[doubled[1] - 1].end
                j = doubled[1]
                continue
            letter = _letter_at(toks, j) if not is_number_word(t.text) or t.text == "O" else None
            if letter is not None:
                flush()
                parts.append(letter[0])
                letters += 1
                start = t.start if start < 0 else start
                end = toks[letter[1] - 1].end
                j = letter[1]
                continue
            if t.low in _FOUR_HOMOPHONES and words and _digit_words_around(toks, j):
                # "oh one for two": the speech-to-text's "for" between digits is four
                words.append("four")
                end = t.end
                j += 1
                continue
            if is_number_word(t.text):
                if not words and not parts and t.low in _AMBIGUOUS and not _leads_digits(toks, j):
                    break
                if t.text == "O" and _letter_o(toks, j, parts, words):
                    parts.append("O")
                    letters += 1
                    end = t.end
                    j += 1
                    continue
                if t.text == "O":
                    # a bare capital O: the letter or zero? Neither, so the run is not read
                    parts.append("?")
                words.append(t.low)
                start = t.start if start < 0 else start
                end = t.end
                j += 1
                continue
            written = t.text in ("(", ")", ".") and _digits_around(toks, j, words)
            if (t.low in _JOINERS and (words or parts)) or written:
                # "(617) 555-0123", "617.555.0123": a number as written;
                # "forty-five" is one number; "six one seven, five five five" is a sequence
                if t.low in _GROUP_ENDS:
                    flush()
                    groups.append(sum(len(p) for p in parts))
                j += 1
                continue
            if (
                t.low == "and"
                and (words or parts)
                and j + 1 < len(toks)
                and toks[j + 1].low == "then"
            ):
                j += 1
                continue
            break
        flush()
        value = "".join(parts)
        if value and "?" not in value and start >= 0 and not (len(value) == 1 and letters == 0):
            cuts = tuple(sorted({g for g in groups if 0 < g < len(value)}))
            found.append(Run(value=value, start=start, end=end, letters=letters, groups=cuts))
        i = max(j, i + 1)
    return tuple(found)


def clear_cache() -> None:
    """Forget the compound numbers read so far (for benchmarks that time unseen text)."""
    _compound.cache_clear()
    is_number_word.cache_clear()
    _runs.cache_clear()
    _tokens.cache_clear()
