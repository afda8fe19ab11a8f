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
import unicodedata
from collections.abc import Mapping
from typing import Any

import orjson

#: Flat field paths under these prefixes are volatile metadata: never hashed, never asserted.
VOLATILE_PREFIXES = ("meta.",)
#: Top-level keys of a nested document that are volatile metadata.
VOLATILE_KEYS = frozenset({"meta"})


def is_volatile(path: str) -> bool:
    """True for a flat field path that is volatile metadata."""
    return path.startswith(VOLATILE_PREFIXES)


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
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``; raises ``ValueError`` if it is not JSON."""
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
