"""Canonical JSON and content hashing.

Two documents that mean the same thing hash the same: keys are sorted, integral floats are written
as integers, strings are NFC-normalised, and volatile metadata (``meta.*`` paths in flat form, the
``meta`` object of a FHIR resource) is left out.

What every store can hold is refused here, once, for every write path (:class:`JsonProblem`, which
names where it is, never the value): a NUL character (``U+0000``, which PostgreSQL text and
``jsonb`` cannot hold), a lone surrogate (not Unicode), an integer beyond 64 bits, and nesting
deeper than :data:`MAX_DEPTH`.

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
#: The deepest a document given to the world model may nest: objects and arrays, the document
#: itself being level 1. The stores wrap a value in a few more levels (the packed ledger and
#: state), and orjson writes at most 254, so every stored form of an accepted document can be
#: written. The FHIR reader allows a resource a little less
#: (:data:`ehrbridge.fhir.reader.MAX_DEPTH`), for the levels the mapping adds.
MAX_DEPTH = 128
#: The integers orjson writes (64-bit, signed or unsigned).
_INT_RANGE = range(-(2**63), 2**64)
#: A path step that is shown as it is in messages; other keys are shown as ``[?]``.
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
#: Steps of a path shown in messages; deeper ones are cut to ``...``.
_SHOWN_STEPS = 12

#: Where a value sits in a JSON document: the keys and list indexes leading to it.
Location = tuple[str | int, ...]


class JsonProblem(ValueError):
    """A value that is not JSON every store can hold; ``where`` says where (never what)."""

    def __init__(self, problem: str, where: Location = ()) -> None:
        #: what is wrong, never the value itself (values are PHI)
        self.problem = problem
        #: where in the document
        self.where = where
        super().__init__(problem)

    def __str__(self) -> str:
        return f"{path_text(self.where)}: {self.problem}" if self.where else self.problem


def path_text(where: Location) -> str:
    """A location as text, the way errors name it (long paths cut, odd keys not shown).

    >>> path_text(("item", 0, "encounter", 1, "reference"))
    'item[0].encounter[1].reference'
    >>> path_text(("name", "\\x00"))
    'name[?]'
    """
    text = ""
    for n, step in enumerate(where):
        if n == _SHOWN_STEPS:
            return f"{text}..."
        if isinstance(step, int):
            text = f"{text}[{step}]"
        elif not _PLAIN_KEY.fullmatch(step):
            text = f"{text}[?]"
        else:
            text = f"{text}.{step}" if text else step
    return text


def text_problem(text: str) -> str | None:
    """What makes ``text`` unstorable (a NUL, a lone surrogate), or None.

    >>> text_problem("Ana"), text_problem("a\\x00b")
    (None, 'a NUL character (U+0000) is not allowed')
    """
    if "\x00" in text:
        return "a NUL character (U+0000) is not allowed"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "not valid Unicode (a lone surrogate)"
    return None


def is_volatile(path: str) -> bool:
    """True for a flat field path that is volatile metadata."""
    return path.startswith(VOLATILE_PREFIXES)


def canonical_value(value: Any) -> Any:
    """``value`` rebuilt canonical (see the module); raises :class:`JsonProblem` (a
    ``ValueError``) if it is not JSON every store can hold."""
    return _canonical(value)


def _text(value: str) -> str:
    if (problem := text_problem(value)) is not None:
        raise JsonProblem(problem)
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def _canonical(value: Any, depth: int = 1) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, orjson.Fragment):
        return value  # a Fragment is JSON already made canonical by the caller
    if isinstance(value, float):
        if not math.isfinite(value):
            raise JsonProblem("NaN and infinity are not JSON")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, int):
        if value not in _INT_RANGE:
            raise JsonProblem("an integer beyond 64 bits is not stored")
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Mapping | list | tuple) and depth > MAX_DEPTH:
        raise JsonProblem(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise JsonProblem(f"object keys must be strings, not {type(key).__name__}")
            try:
                out[_text(key)] = _canonical(item, depth + 1)
            except JsonProblem as exc:
                exc.where = (key, *exc.where)
                raise
        return out
    if isinstance(value, list | tuple):
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_canonical(item, depth + 1))
            except JsonProblem as exc:
                exc.where = (i, *exc.where)
                raise
        return items
    if isinstance(value, UUID):
        return str(value)  # as orjson writes it on the fast path
    raise JsonProblem(f"{type(value).__name__} is not a JSON value")


def _deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` nests objects and arrays deeper than ``limit`` levels: level by
    level, no recursion, so any depth is measured (dicts and lists tested first: the common
    case, and much faster than ``isinstance`` against the abstract types)."""
    level, depth = [value], 1
    while level:
        if depth > limit:
            return True
        below = []
        for node in level:
            kind = type(node)
            items = node.values() if kind is dict or isinstance(node, Mapping) else node
            for item in items:
                kind = type(item)
                if kind is dict or kind is list or isinstance(item, Mapping | list | tuple):
                    below.append(item)
        level, depth = below, depth + 1
    return False


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
    """The canonical JSON bytes of ``value``; raises :class:`JsonProblem` (a ``ValueError``)
    if it is not JSON every store can hold.

    Fast path: orjson sorts the keys in C, and the result is already canonical when it is pure
    ASCII (nothing to NFC-normalise), has no ``null`` (orjson writes NaN and infinity as null,
    which must be refused instead), no number that may be an integral float and no ``\\u0000``
    (a NUL, or a backslash before ``u0000``: the slow path tells them apart). Nesting is measured
    only when the document has more brackets than :data:`MAX_DEPTH`. Otherwise the value is
    rebuilt canonical first, which names any problem.
    """
    try:
        raw = orjson.dumps(value, option=_STRICT)
    except TypeError:
        raw = b"null"  # not plain JSON types (or too deep): let the slow path name what is wrong
    if (
        raw.isascii()
        and b"null" not in raw
        and b"\\u0000" not in raw
        and not _FLOAT_SUSPECT.search(raw)
        and (raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH or not _deeper_than(value, MAX_DEPTH))
    ):
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
