"""Spoken dates and times: birth dates, and appointment days and hours resolved in the clinic's
zone.

Birth dates come month first ("seven three, sixty-six" = 3 July 1966) unless a month is named
("July the third"), in English or Spanish ("veinte de febrero"). Appointment days are named
("Tuesday, November twenty-fourth") or relative to the call's local date ("tomorrow", "next
Tuesday", resolved from ``started_at`` converted to the clinic's zone); hours are "three p.m.",
"ten thirty a.m.", "la una y media de la tarde". An instant is built with ``zoneinfo``, so the
offset on that date (daylight saving time or not) is the zone's, never the call's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from ehrbridge.review.grounding.spoken import is_number_word, number_parts, tokens

MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7,
    "agosto": 8, "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11,
    "diciembre": 12,
}  # fmt: skip
WEEKDAYS = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5,
    "sunday": 6, "lunes": 0, "martes": 1, "miércoles": 2, "miercoles": 2, "jueves": 3,
    "viernes": 4, "sábado": 5, "sabado": 5, "domingo": 6,
}  # fmt: skip
_ORDINAL_UNITS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30, "primero": 1,
}  # fmt: skip
_ORDINAL_TENS = {"twenty": 20, "thirty": 30}


@dataclass(frozen=True, kw_only=True)
class Spoken:
    """A date or a time found in a turn, with its span."""

    value: date | time
    start: int
    end: int


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(t.low, t.start, t.end) for t in tokens(text) if t.text != "-"]


def _ordinal(words: list[tuple[str, int, int]], i: int) -> tuple[int, int] | None:
    """An ordinal or cardinal day at ``words[i]`` (``twenty-fourth``, ``4th``, ``twelve``) and
    the index after it."""
    if i >= len(words):
        return None
    w = words[i][0]
    if w in _ORDINAL_TENS and i + 1 < len(words) and words[i + 1][0] in _ORDINAL_UNITS:
        day = _ORDINAL_TENS[w] + _ORDINAL_UNITS[words[i + 1][0]]
        return (day, i + 2) if day <= 31 else None
    if w in _ORDINAL_UNITS:
        return _ORDINAL_UNITS[w], i + 1
    m = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?", w)
    if m:
        return int(m.group(1)), i + 1
    j = i
    while j < len(words) and is_number_word(words[j][0]) and j < i + 2:
        j += 1
    parts = number_parts([x[0] for x in words[i:j]]) if j > i else None
    if parts and len(parts) == 1 and 1 <= int(parts[0]) <= 31:
        return int(parts[0]), j
    return None


def month_days(text: str) -> list[tuple[int, int, int, int]]:
    """``(month, day, start, end)`` for every named month and its day in ``text``: "November
    twenty-fourth", "the fifth of May", "veinte de febrero", "July the third"."""
    words = _words(text)
    found: list[tuple[int, int, int, int]] = []
    for i, (w, start, end) in enumerate(words):
        if w not in MONTHS:
            continue
        if w == "may" and not _month_may(words, i):
            continue
        after = i + 1 + (1 if i + 1 < len(words) and words[i + 1][0] == "the" else 0)
        day = _ordinal(words, after)
        if day is not None:
            found.append((MONTHS[w], day[0], start, words[day[1] - 1][2]))
            continue
        # "the fifth of May", "veinte de febrero"
        if i >= 2 and words[i - 1][0] in ("of", "de"):
            k = i - 2
            while k > 0 and (is_number_word(words[k - 1][0]) or words[k][0] in _ORDINAL_UNITS):
                if words[k - 1][0] in ("the", "el", ",", "."):
                    break
                k -= 1
            for s in range(k, i - 1):
                d = _ordinal(words, s)
                if d is not None and d[1] == i - 1:
                    found.append((MONTHS[w], d[0], words[s][1], end))
                    break
    return found


def _month_may(words: list[tuple[str, int, int]], i: int) -> bool:
    """ "May" is the month when a day or "of" sits next to it."""
    return (i > 0 and words[i - 1][0] in ("of", "de")) or _ordinal(words, i + 1) is not None


def years(text: str, call_year: int) -> list[tuple[int, int, int]]:
    """Four-digit or two-digit years spoken in ``text`` with their spans: "nineteen seventy-nine",
    "two thousand", "sixty-six" (the century that puts it in the past)."""
    words = _words(text)
    found: list[tuple[int, int, int]] = []
    i = 0
    while i < len(words):
        if not is_number_word(words[i][0]):
            i += 1
            continue
        j = i
        while j < len(words) and is_number_word(words[j][0]):
            j += 1
        parts = number_parts([w[0] for w in words[i:j]]) or []
        value = _year_of(parts, call_year)
        if value is not None:
            found.append((value, words[i][1], words[j - 1][2]))
        i = j
    return found


def _year_of(parts: list[str], call_year: int) -> int | None:
    parts = _leading_zeros(parts)
    if len(parts) == 2 and parts[0] in ("19", "20") and len(parts[1]) == 2:
        return int(parts[0] + parts[1])
    if len(parts) == 1 and len(parts[0]) == 4 and 1900 <= int(parts[0]) <= call_year:
        return int(parts[0])
    if len(parts) == 1 and len(parts[0]) == 2:
        yy = int(parts[0])
        return 2000 + yy if 2000 + yy <= call_year else 1900 + yy
    return None


_YEAR_FIX = re.compile(r"\b(?:no|sorry|i mean|actually|wait)\b", re.IGNORECASE)


def _leading_zeros(parts: list[str]) -> list[str]:
    """ "oh six, fifteen, oh four" is 06, 15, 04: an "oh" joins the digit after it."""
    out: list[str] = []
    i = 0
    while i < len(parts):
        if parts[i] == "0" and i + 1 < len(parts) and len(parts[i + 1]) == 1:
            out.append("0" + parts[i + 1])
            i += 2
            continue
        out.append(parts[i])
        i += 1
    return out


def birth_dates(text: str, call_year: int, *, day_first: bool = False) -> list[Spoken]:
    """The birth dates one turn gives: a named month with its day and the year after it, else
    three spoken numbers, month first ("six twelve, fifty-eight") unless ``day_first``."""
    named = month_days(text)
    found_years = years(text, call_year)
    if named:
        out: list[Spoken] = []
        for month, day, start, end in named:
            after = [y for y in found_years if y[1] >= end]
            if not after and len({y[0] for y in found_years}) == 1:
                # "seven three, sixty-six. July the third.": the one year of the turn
                after = found_years
            if not after:
                continue
            year, y_start, y_end = after[0]
            for (_, _, prev_end), (later, l_start, l_end) in pairwise(after):
                # "nineteen sixty - no, sorry, nineteen seventy": the corrected year
                if _YEAR_FIX.search(text[prev_end:l_start]):
                    year, y_start, y_end = later, l_start, l_end
            # the year may come first ("born in nineteen eighty, ..., March second")
            span = (min(start, y_start), max(end, y_end))
            try:
                out.append(Spoken(value=date(year, month, day), start=span[0], end=span[1]))
            except ValueError:
                continue
        return out
    for chunk in re.finditer(r"[^.!?]+", text):
        words = [w for w in re.findall(r"[^\W\d_]+|\d+", chunk.group()) if is_number_word(w)]
        groups = [
            g for g in chunk.group().split(",") if any(map(is_number_word, re.split(r"[\s-]+", g)))
        ]
        if not 2 <= len(groups) <= 3 or not words:
            continue
        parts = number_parts(words)
        if parts is None:
            continue
        parts = _leading_zeros(parts)
        if len(parts) < 3:
            continue
        a, b = int(parts[0]), int(parts[1])
        yy = _year_of(parts[2:], call_year)
        month, day = (b, a) if day_first else (a, b)
        if yy is None:
            continue
        try:
            value = date(yy, month, day)
        except ValueError:
            continue
        return [Spoken(value=value, start=chunk.start(), end=chunk.end())]
    return []


def local_day(started_at: datetime, zone: str) -> date:
    """The call's date in the clinic's zone."""
    return started_at.astimezone(ZoneInfo(zone)).date()


def named_days(text: str, today: date) -> list[Spoken]:
    """Days an appointment is on: "November twenty-fourth" (this year, or next if already past),
    "tomorrow", "today", "next Tuesday" (only when it cannot mean this week's)."""
    out: list[Spoken] = []
    for month, day, start, end in month_days(text):
        year = today.year + (1 if (month, day) < (today.month, today.day) else 0)
        try:
            out.append(Spoken(value=date(year, month, day), start=start, end=end))
        except ValueError:
            continue
    if out:
        return out
    low = text.lower()
    for m in _RELATIVE_DAY.finditer(low):
        word = re.sub(r"\s+", " ", m.group(1))
        if word == "mañana" and _MORNING_BEFORE.search(low[: m.start()]):
            continue  # "de la mañana" is the morning, not tomorrow
        shift = _DAY_SHIFT[word]
        out.append(Spoken(value=today + timedelta(days=shift), start=m.start(), end=m.end()))
    for m in _NEXT_WEEKDAY.finditer(low):
        wd = WEEKDAYS.get(m.group("a") or m.group("b"))
        if wd is None:
            continue
        ahead = (wd - today.weekday()) % 7 or 7
        # "next Tuesday" on a Wednesday is the coming Tuesday; on a Monday it is ambiguous
        if today.weekday() + ahead >= 7:
            out.append(Spoken(value=today + timedelta(days=ahead), start=m.start(), end=m.end()))
    for m in _THIS_WEEKDAY.finditer(low):
        this = WEEKDAYS.get(m.group(1))
        if this is None:
            continue
        coming = (this - today.weekday()) % 7
        # "this Friday" said on a Friday: today or in a week? not read
        if coming:
            out.append(Spoken(value=today + timedelta(days=coming), start=m.start(), end=m.end()))
    if not out:
        out = _ordinal_days(text, today)
    return out


_RELATIVE_DAY = re.compile(
    r"\b(day after tomorrow|pasado\s+mañana|tomorrow|today|mañana|hoy)\b", re.IGNORECASE
)
_DAY_SHIFT = {"day after tomorrow": 2, "pasado mañana": 2, "tomorrow": 1, "mañana": 1,
              "today": 0, "hoy": 0}  # fmt: skip
_MORNING_BEFORE = re.compile(r"\b(?:de|por|en|esta)\s+(?:la\s+)?$")
_NEXT_WEEKDAY = re.compile(r"\bnext\s+(?P<a>\w+)|\bpr[óo]xim[oa]\s+(?P<b>\w+)", re.IGNORECASE)
_THIS_WEEKDAY = re.compile(r"\b(?:this coming|this|este|esta)\s+(\w+)", re.IGNORECASE)
_ORDINAL_DAY = re.compile(
    r"\b(?:(?P<wd>[a-zé]+day|lunes|martes|miércoles|miercoles|jueves|viernes|sábado|sabado"
    r"|domingo),?\s+|(?:on|for)\s+)the\s+(?P<day>(?:twenty|thirty)[- ]?\w+|\w+|\d{1,2}"
    r"(?:st|nd|rd|th))\b(?=\s*(?:[,.;!?]|$|at\b|in the\b|from\b))",
    re.IGNORECASE,
)


def _ordinal_days(text: str, today: date) -> list[Spoken]:
    """A day of the month said with no month: "Monday the twenty-first", "on the 3rd": the next
    such date from today (this month, else the next); a weekday said with it must agree."""
    out: list[Spoken] = []
    for m in _ORDINAL_DAY.finditer(text):
        said = m.group("day")
        # "the 8th" is one word here ("8", "th" to the tokenizer)
        written = re.fullmatch(r"\d{1,2}(?:st|nd|rd|th)", said)
        words = [(said.lower(), 0, 0)] if written else _words(said)
        found = _ordinal(words, 0)
        if found is None or found[1] != len(words) or not _is_ordinal(words):
            continue
        day = found[0]
        candidate: date | None = None
        for shift in range(3):
            month = (today.month - 1 + shift) % 12 + 1
            year = today.year + (today.month - 1 + shift) // 12
            try:
                d = date(year, month, day)
            except ValueError:
                continue
            if d >= today:
                candidate = d
                break
        if candidate is None:
            continue
        wd = m.group("wd")
        if wd is not None and WEEKDAYS.get(wd.lower()) != candidate.weekday():
            continue
        out.append(Spoken(value=candidate, start=m.start(), end=m.end()))
    return out


def _is_ordinal(words: list[tuple[str, int, int]]) -> bool:
    last = words[-1][0]
    return last in _ORDINAL_UNITS or bool(re.fullmatch(r"\d{1,2}(?:st|nd|rd|th)", last))


_HOURS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "noon": 12,
    "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8,
    "nueve": 9, "diez": 10, "once": 11, "doce": 12,
}  # fmt: skip
_MINUTES = {"fifteen": 15, "thirty": 30, "forty five": 45, "oh five": 5, "twenty": 20,
            "forty": 40, "fifty": 50, "y media": 30, "y cuarto": 15, "y quince": 15,
            "y diez": 10, "y veinte": 20, "y cinco": 5, "menos cuarto": -15,
            "menos diez": -10, "menos cinco": -5, "menos veinte": -20}  # fmt: skip
#: "a quarter past three", "half past ten", "ten to four": minutes before or after the hour
_RELATIVE = {"quarter": 15, "a quarter": 15, "half": 30, "twenty five": 25, "twenty": 20,
             "ten": 10, "five": 5}  # fmt: skip
_TIME = re.compile(
    r"\b(?:(?P<rel>a\s+quarter|quarter|half|twenty[- ]five|twenty|ten|five)\s+"
    r"(?P<dir>past|after|to|of|till|before)\s+)?"
    r"(?P<h>\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|noon"
    r"|una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce)\b"
    r"(?::(?P<mm>\d{2})|\s+(?P<m>fifteen|thirty|forty[- ]five|oh five|twenty|forty|fifty"
    r"|y media|y cuarto|y quince|y diez|y veinte|y cinco|menos cuarto|menos diez|menos cinco"
    r"|menos veinte)\b)?"
    r"\s*(?P<mer>a\.?\s?m\.?|p\.?\s?m\.?|o'clock|in the morning|in the afternoon|in the evening"
    r"|(?:de|por|en) la mañana|(?:de|por|en) la tarde|(?:de|por|en) la noche)?",
    re.IGNORECASE,
)
#: words just before an hour that change it in a way the reader does not know: "twenty-five
#: past", "three forty" read as "forty"... (a time it cannot read is no time)
_UNREAD_BEFORE = re.compile(
    r"(?:\b(?:past|after|to|of|till|before|quarter|half|y|menos)|[\w]-|\d[:.]?)\s*$", re.I
)


_RANGE_BEFORE = re.compile(r"\b(?:from|between)\s*$", re.IGNORECASE)


def clock_times(text: str, *, need_marker: bool = True) -> list[Spoken]:
    """Times of day: "three p.m." → 15:00, "ten thirty a.m." → 10:30, "a quarter past three in
    the afternoon" → 15:15, "la una y media de la tarde" → 13:30, "las dos menos cuarto de la
    tarde" → 13:45. Without a.m./p.m. (``need_marker=False``), clinic hours decide: 7-11 are
    mornings, 12-6 afternoons. A time with words before it that it cannot read ("twenty-five
    to") is not returned at all."""
    out: list[Spoken] = []
    for m in _TIME.finditer(text):
        mer = (m.group("mer") or "").lower().replace(" ", "").replace(".", "")
        noon = m.group("h").lower() == "noon" and not m.group("rel") and not m.group("m")
        if noon and not mer:
            # "at noon" needs no a.m. or p.m.
            out.append(Spoken(value=time(12, 0), start=m.start(), end=m.end()))
            continue
        if not m.group("m") and not m.group("mm") and not mer and not m.group("rel"):
            continue
        if need_marker and (not mer or mer == "o'clock"):
            continue
        if _UNREAD_BEFORE.search(text[: m.start()]):
            continue
        h_word = m.group("h").lower()
        hour = int(h_word) if h_word.isdigit() else _HOURS[h_word]
        minute = int(m.group("mm")) if m.group("mm") else 0
        if m.group("m"):
            minute = _MINUTES[m.group("m").lower().replace("-", " ")]
        if m.group("rel"):
            if m.group("m") or m.group("mm") or _RANGE_BEFORE.search(text[: m.start()]):
                continue  # "from ten to eleven a.m." is a range, not 10:50
            shift = _RELATIVE[re.sub(r"[\s-]+", " ", m.group("rel").lower())]
            minute = -shift if m.group("dir").lower() in ("to", "of", "till", "before") else shift
        if hour > 12 or minute > 59:
            continue
        mer = re.sub(r"^(?:por|en)la", "dela", mer)
        if mer in ("pm", "intheafternoon", "intheevening", "delatarde", "delanoche") and hour < 12:
            hour += 12
        elif mer in ("am", "inthemorning", "delamañana") and hour == 12:
            hour = 0
        elif not mer or mer == "o'clock":
            hour = hour + 12 if 1 <= hour <= 6 else hour
        if minute < 0:
            # "a quarter to two p.m." is 13:45: the minutes before the (p.m.) hour
            total = hour * 60 + minute
            if total < 0:
                continue
            hour, minute = divmod(total, 60)
        out.append(Spoken(value=time(hour, minute), start=m.start(), end=m.end()))
    return out


def instant(day: date, at: time, zone: str) -> datetime:
    """The instant of a local wall-clock time in ``zone`` (its offset on that day)."""
    return datetime.combine(day, at, tzinfo=ZoneInfo(zone))
