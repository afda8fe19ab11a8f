"""Field transforms: from what a REST source sends to the canonical value (docs/entities.md).

Pure functions. A value that cannot be transformed raises
:class:`~ehrbridge.errors.TransformError` (an ``InvalidInput``), whose message names the transform
and what was expected, never the value (values are PHI). ``None`` (nothing at the path) passes
through every transform untouched.

>>> ctx = Context(timezone="America/New_York")
>>> apply([Transform(name="datetime")], "2026-12-03 09:30", ctx)
'2026-12-03T14:30:00Z'
>>> apply([Transform(name="phone")], "(617) 555-0142", ctx)
'+16175550142'
>>> apply([Transform(name="name", arg="given")], "Santos, Ana M", ctx)
['Ana', 'M']
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import parser as dateparser

from ehrbridge.connectors.rest.spec import Transform, fold_key
from ehrbridge.errors import TransformError
from ehrbridge.worldmodel.matching import normalize_phone

#: numbers above this are read as epoch milliseconds, below as epoch seconds (year 5138 vs 1973)
_EPOCH_MS_FROM = 100_000_000_000
_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})


@dataclass(frozen=True, kw_only=True)
class Context:
    """Source-wide defaults the transforms fall back on."""

    timezone: str = "UTC"
    dayfirst: bool = False
    phone_region: str = "US"


def apply(steps: Sequence[Transform], value: Any, ctx: Context) -> Any:
    """``value`` through every step in order."""
    for step in steps:
        if value is None:
            return None
        value = _STEPS[step.name](step, value, ctx)
    return value


# --- text ------------------------------------------------------------------------------------


def _text(value: Any, what: str) -> str:
    if isinstance(value, bool | dict | list):
        raise TransformError(f"{what}: expected text")
    return str(value)


def _strip(step: Transform, value: Any, ctx: Context) -> Any:
    if isinstance(value, list):
        return [s for v in value if (s := _text(v, "strip").strip())] or None
    return _text(value, "strip").strip() or None


def _lower(step: Transform, value: Any, ctx: Context) -> Any:
    return _text(value, "lower").lower()


def _upper(step: Transform, value: Any, ctx: Context) -> Any:
    return _text(value, "upper").upper()


def _string(step: Transform, value: Any, ctx: Context) -> Any:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _text(value, "string").strip() or None


def _prefix(step: Transform, value: Any, ctx: Context) -> Any:
    return f"{step.arg}{_text(value, 'prefix')}"


def _join(step: Transform, value: Any, ctx: Context) -> Any:
    """A list (e.g. from a multi-select ``[first, last]``) as one string; empty parts dropped."""
    items = value if isinstance(value, list) else [value]
    parts = [_text(v, "join").strip() for v in items if v is not None]
    return (step.arg or " ").join(p for p in parts if p) or None


def _split(step: Transform, value: Any, ctx: Context) -> Any:
    parts = [p.strip() for p in _text(value, "split").split(step.arg or ",")]
    return [p for p in parts if p] or None


def _list(step: Transform, value: Any, ctx: Context) -> Any:
    return value if isinstance(value, list) else [value]


# --- numbers and booleans --------------------------------------------------------------------


def _number(step: Transform, value: Any, ctx: Context) -> Any:
    if isinstance(value, bool):
        raise TransformError("number: expected a number")
    if isinstance(value, int | float):
        number: float | int = value
    else:
        try:
            number = float(_text(value, "number").strip().replace(",", ""))
        except ValueError:
            raise TransformError("number: expected a number") from None
    if not math.isfinite(number):
        raise TransformError("number: expected a finite number")
    return int(number) if isinstance(number, float) and number.is_integer() else number


def _integer(step: Transform, value: Any, ctx: Context) -> Any:
    number = _number(step, value, ctx)
    if not isinstance(number, int):
        raise TransformError("integer: expected a whole number")
    return number


def _boolean(step: Transform, value: Any, ctx: Context) -> Any:
    if isinstance(value, bool):
        return value
    text = _text(value, "boolean").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TransformError("boolean: expected true/false, yes/no or 1/0")


# --- dates and times -------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def _moment(step: Transform, value: Any, ctx: Context, what: str) -> datetime:
    """A datetime from epoch numbers, a strptime format, or any common textual form."""
    dayfirst = step.dayfirst if step.dayfirst is not None else ctx.dayfirst
    zone = _zone(step.timezone or ctx.timezone)
    if isinstance(value, bool):
        raise TransformError(f"{what}: expected a date or time")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_FROM else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise TransformError(f"{what}: the epoch number is out of range") from None
    text = _text(value, what).strip()
    if not text:
        raise TransformError(f"{what}: expected a date or time")
    if text.isdigit() and len(text) >= 9:  # epoch seconds or milliseconds as text
        return _moment(step, int(text), ctx, what)
    try:
        if step.format:
            parsed = datetime.strptime(text, step.format)  # the zone is added below
        else:
            parsed = dateparser.parse(text, dayfirst=dayfirst)
    except (ValueError, OverflowError):
        raise TransformError(f"{what}: not a date or time this transform can read") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _datetime(step: Transform, value: Any, ctx: Context) -> Any:
    """ISO 8601 in UTC (``...Z``), so every source spells one instant the same way; naive times
    are read in the source's (or the step's) time zone."""
    moment = _moment(step, value, ctx, "datetime").astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _date(step: Transform, value: Any, ctx: Context) -> Any:
    """``YYYY-MM-DD``; a time of day, if any, is dropped (in the time zone it was given in)."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}(-\d{2})?", value.strip()):
        return value.strip()  # a partial date (FHIR date) stays as it is
    moment = _moment(step, value, ctx, "date")
    return date(moment.year, moment.month, moment.day).isoformat()


# --- phones and names ------------------------------------------------------------------------


def _phone(step: Transform, value: Any, ctx: Context) -> Any:
    text = _text(value, "phone")
    e164 = normalize_phone(text, step.arg or ctx.phone_region)
    if e164 is None:
        raise TransformError("phone: not a possible phone number")
    return e164


_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof"})
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "md", "phd"})


def split_name(text: str) -> tuple[list[str], str | None]:
    """``(given names, family name)`` of ``Last, First M`` or ``First M Last``; honorifics and
    suffixes dropped.

    >>> split_name("Santos, Ana M"), split_name("Dr. Ana Maria Santos Jr.")
    ((['Ana', 'M'], 'Santos'), (['Ana', 'Maria'], 'Santos'))
    >>> split_name("Cher"), split_name("de la Cruz, Juan")
    (([], 'Cher'), (['Juan'], 'de la Cruz'))
    """
    if "," in text:
        family, _, given = text.partition(",")
        words = [w for w in given.replace(".", " ").split() if _bare(w) not in _HONORIFICS]
        words = [w for w in words if _bare(w) not in _SUFFIXES]
        return words, " ".join(family.split()) or None
    words = [w.rstrip(".") for w in text.split()]
    while words and _bare(words[0]) in _HONORIFICS:
        words.pop(0)
    while len(words) > 1 and _bare(words[-1]) in _SUFFIXES:
        words.pop()
    if not words:
        return [], None
    return words[:-1], words[-1]


def _bare(word: str) -> str:
    return word.strip(".").lower()


def _name(step: Transform, value: Any, ctx: Context) -> Any:
    given, family = split_name(_text(value, "name"))
    if step.arg == "given":
        return given or None
    return family


# --- code maps -------------------------------------------------------------------------------


def _map(step: Transform, value: Any, ctx: Context) -> Any:
    """The canonical value for a source code (case and spaces ignored), else the default."""
    key = fold_key(_text(value, "map"))
    for source, target in step.table:
        if source == key:
            return target
    if step.has_default:
        return step.default
    raise TransformError("map: the value is not in the map and there is no default")


@functools.lru_cache(maxsize=1024)
def _pattern(word: str) -> re.Pattern[str]:
    # Whole words, case-insensitive: "exam" matches "Annual physical exam", not "example".
    return re.compile(rf"(?<!\w)(?:{word})(?!\w)", re.IGNORECASE)


def _keywords(step: Transform, value: Any, ctx: Context) -> Any:
    """The first canonical value one of whose words or patterns occurs in free text."""
    text = " ".join(_text(value, "keywords").split())
    for target, words in step.patterns:
        if any(_pattern(word).search(text) for word in words):
            return target
    if step.has_default:
        return step.default
    raise TransformError("keywords: no keyword matches and there is no default")


_STEPS = {
    "strip": _strip,
    "lower": _lower,
    "upper": _upper,
    "string": _string,
    "prefix": _prefix,
    "join": _join,
    "split": _split,
    "list": _list,
    "number": _number,
    "integer": _integer,
    "boolean": _boolean,
    "datetime": _datetime,
    "date": _date,
    "phone": _phone,
    "name": _name,
    "map": _map,
    "keywords": _keywords,
}
