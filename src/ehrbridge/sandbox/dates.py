"""FHIR dates as ranges, and the search prefixes that compare them.

https://hl7.org/fhir/R4/search.html#date: a value stands for the whole range its precision covers
(``2026`` is the year), and a prefix compares the search range with the target's.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ehrbridge.sandbox.outcome import OperationFailed

#: A half-open range of instants ``[start, end)``.
Range = tuple[datetime, datetime]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_VALUE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
#: The start and end of an open period.
START_OF_TIME = datetime(1, 1, 1, tzinfo=UTC)
END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


def date_range(value: str) -> Range | None:
    """The range a FHIR date, dateTime or instant stands for; None if it is not one.

    Without a time zone the value is taken as UTC.

    >>> start, end = date_range("2026-02")
    >>> start.isoformat(), end.isoformat()
    ('2026-02-01T00:00:00+00:00', '2026-03-01T00:00:00+00:00')
    >>> date_range("2026-01-02T03:04:05.25+01:00")[0].isoformat()
    '2026-01-02T02:04:05.250000+00:00'
    >>> date_range("12/03/1984") is None
    True
    """
    match = _VALUE.fullmatch(value.strip().replace(" ", "+"))
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        if month is None:
            start = datetime(int(year), 1, 1, tzinfo=UTC)
            return start, start.replace(year=start.year + 1)
        if day is None:
            start = datetime(int(year), int(month), 1, tzinfo=UTC)
            after = start + timedelta(days=31)
            return start, after.replace(day=1)
        offset = timedelta(0)
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * sign
        if hour is None:
            start = datetime(int(year), int(month), int(day), tzinfo=UTC)
            return start, start + timedelta(days=1)
        micro = round(float(fraction) * 1_000_000) if fraction else 0
        start = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro,
            tzinfo=UTC,
        ) - offset  # fmt: skip
        if second is None:
            return start, start + timedelta(minutes=1)
        if fraction is None:
            return start, start + timedelta(seconds=1)
        return start, start + timedelta(microseconds=1)
    except ValueError:
        return None


def split_prefix(value: str) -> tuple[str, str]:
    """``("ge", "2026")`` from ``ge2026``; ``eq`` when there is no prefix.

    >>> split_prefix("ge2026"), split_prefix("2026-01-01")
    (('ge', '2026'), ('eq', '2026-01-01'))
    """
    if value[:2] in PREFIXES and value[2:3].isdigit():
        return value[:2], value[2:]
    return "eq", value


def parse(value: str) -> tuple[str, Range]:
    """A date search value as (prefix, range); 400 if it is not a date."""
    prefix, rest = split_prefix(value)
    found = date_range(rest)
    if found is None:
        raise OperationFailed(400, "a date search value is not a FHIR date")
    return prefix, found


def matches(prefix: str, wanted: Range, target: Range) -> bool:
    """Whether a target range satisfies ``prefix`` against the search range.

    >>> year = date_range("1985")
    >>> matches("ge", year, date_range("1990-05-01")), matches("ge", year, date_range("1984-03-12"))
    (True, False)
    >>> matches("eq", year, date_range("1985-06")), matches("lt", year, date_range("1984"))
    (True, True)
    """
    (ps, pe), (ts, te) = wanted, target
    equal = ps <= ts and te <= pe
    result = {
        "eq": equal,
        "ne": not equal,
        "gt": te > pe,
        "lt": ts < ps,
        "ge": te > pe or equal,
        "le": ts < ps or equal,
        "sa": ts >= pe,
        "eb": te <= ps,
        "ap": ts < pe and ps < te,
    }
    return result[prefix]
