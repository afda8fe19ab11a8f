"""Canonical JSON and content hashing.

Two documents that mean the same thing hash the same: keys are sorted, integral floats are written
as integers, strings are NFC-normalised, and volatile metadata (``meta.*`` paths in flat form, the
``meta`` object of a FHIR resource) is left out.

>>> content_hash({"b": 1, "a": [1.0, "x"]}) == content_hash({"a": [1, "x"], "b": 1.0})
True
>>> content_hash({"a": 1, "meta.last_updated": "x"}) == content_hash({"a": 1})
True
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson

#: Flat field paths under these prefixes are volatile metadata: never hashed, never asserted.
VOLATILE_PREFIXES = ("meta.",)
#: Top-level keys of a nested document that are volatile metadata.
VOLATILE_KEYS = frozenset({"meta"})


def is_volatile(path: str) -> bool:
    """True for a flat field path that is volatile metadata."""
    return path.startswith(VOLATILE_PREFIXES)


def canonical_value(value: Any) -> Any:
    """``value`` rebuilt canonical (see the module); raises ``ValueError`` if it is not JSON."""
    return _canonical(value)


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, orjson.Fragment):
        return value  # a Fragment is JSON already made canonical by the caller
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and infinity are not JSON")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return value if value.isascii() else unicodedata.normalize("NFC", value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object keys must be strings, not {type(key).__name__}")
            out[key if key.isascii() else unicodedata.normalize("NFC", key)] = _canonical(item)
        return out
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, UUID):
        return str(value)  # as orjson writes it on the fast path
    raise ValueError(f"{type(value).__name__} is not a JSON value")


#: In orjson's output, a number that may be an integral float (``2.0``, ``1e16``): a number token
#: right after ``:``, ``,`` or ``[``. It may also match inside a string, which only costs the slow
#: path.
_FLOAT_SUSPECT = re.compile(rb"(?:^|[:,\[])-?[0-9]+(?:\.0(?![0-9])|(?:\.[0-9]+)?[eE])")


#: orjson options that refuse (rather than convert) what is not plain JSON: datetimes,
#: dataclasses and subclasses of str/int/dict/list go to the slow path, which names the problem.
_STRICT = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``; raises ``ValueError`` if it is not JSON.

    Fast path: orjson sorts the keys in C, and the result is already canonical when it is pure
    ASCII (nothing to NFC-normalise), has no ``null`` (orjson writes NaN and infinity as null,
    which must be refused instead) and no number that may be an integral float. Otherwise the
    value is rebuilt canonical first.
    """
    try:
        raw = orjson.dumps(value, option=_STRICT)
    except TypeError:
        raw = b"null"  # not plain JSON types: let the slow path name what is wrong
    if raw.isascii() and b"null" not in raw and not _FLOAT_SUSPECT.search(raw):
        return raw
    return orjson.dumps(_canonical(value), option=orjson.OPT_SORT_KEYS)


def strip_volatile(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` without its volatile metadata (flat ``meta.*`` paths or a ``meta`` key)."""
    return {k: v for k, v in document.items() if k not in VOLATILE_KEYS and not is_volatile(k)}


def content_hash(document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``document`` without volatile metadata."""
    return digest(canonical_json(strip_volatile(document)))


def digest(canonical: bytes) -> str:
    """SHA-256 (hex) of canonical JSON bytes already made (see :func:`canonical_json`)."""
    return hashlib.sha256(canonical).hexdigest()
