"""Comparing a value a judge read in the transcript with the fact's stored value.

:func:`normalise` maps a value to a comparable key for its field: E.164 digits for phones,
upper-case letters and digits for member and group ids, a :class:`~datetime.date` for birth dates,
a UTC instant for appointment starts, and case-folded, whitespace-collapsed text for the rest. It
is a small hook, not a speech parser: the values it sees are already written out (the fact's, and
the one a judge states), never raw speech-to-text. The grounding judge may replace it with its own
canonicalisation; :func:`same_value` is what the LLM judge calls.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

#: a comparable key: text, a date or an aware UTC instant
Key = str | date | datetime

_EXTENSION = re.compile(r"\s*(?:;\s*ext\s*=|ext\.?|extension|x)\s*(\d+)\s*$", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_ID_FIELDS = ("member_id", "group_number")


def _text(value: str) -> str:
    return _SPACE.sub(" ", value).strip().strip(".,;").casefold()


def _phone(value: str) -> str:
    """``+16175550127;ext=204`` and ``(617) 555-0127 x204`` → ``16175550127;204``."""
    extension = ""
    found = _EXTENSION.search(value)
    if found:
        extension, value = f";{found.group(1)}", value[: found.start()]
    digits = re.sub(r"\D", "", value)
    if len(digits) == 10:
        digits = f"1{digits}"
    return f"{digits}{extension}"


def _date(value: str) -> Key:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return _text(value)


def _instant(value: str) -> Key:
    """An aware ISO 8601 instant in UTC; a time without an offset is no instant (it stays text,
    so it never equals one)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return _text(value)
    if parsed.tzinfo is None:
        return _text(value)
    return parsed.astimezone(UTC)


def normalise(field: str, value: Any) -> Key:
    """The comparable key of ``value`` for ``field`` (``EntityType.field``, e.g.
    ``Patient.phone.mobile``, or the bare field path).

    >>> normalise("Patient.phone.mobile", "(617) 555-0127")
    '16175550127'
    >>> normalise("phone.mobile", "+16175550127;ext=204")
    '16175550127;204'
    >>> normalise("InsurancePlan.member_id", "xkq 4471-02")
    'XKQ447102'
    >>> str(normalise("Appointment.start", "2026-11-24T20:00:00Z"))
    '2026-11-24 20:00:00+00:00'
    >>> normalise("Patient.address.line", "  45 Orchard   Ln. ")
    '45 orchard ln'
    """
    text = value if isinstance(value, str) else str(value)
    path = field.split(".", 1)[1] if field[:1].isupper() and "." in field else field
    if path.startswith("phone."):
        return _phone(text)
    if path in _ID_FIELDS:
        return re.sub(r"[^0-9A-Za-z]", "", text).upper()
    if path == "address.postal_code":
        return re.sub(r"\D", "", text)
    if path == "email":
        return _SPACE.sub("", text).casefold()
    if path == "birth_date":
        return _date(text)
    if path == "start":
        return _instant(text)
    return _text(text)


def same_value(field: str, stated: Any, stored: Any) -> bool:
    """Whether two values of ``field`` are the same after :func:`normalise`."""
    if stated is None or stored is None:
        return False
    return normalise(field, stated) == normalise(field, stored)


__all__ = ["Key", "normalise", "same_value"]
