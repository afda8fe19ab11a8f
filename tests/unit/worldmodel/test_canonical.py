"""Canonical JSON: the fast path gives exactly what the full rebuild gives."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrbridge.worldmodel.canonical import (
    MAX_DEPTH,
    JsonProblem,
    _canonical,
    canonical_json,
    content_hash,
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, 1.0, -2.0, 1e15, 1e16, 2.5e-7, 123456789012345.0, 0.5])
    | st.text()
    | st.sampled_from(["version 2.0", "e\u0301", "é", "1e5", "null"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def slow(value: Any) -> bytes:
    return orjson.dumps(_canonical(value), option=orjson.OPT_SORT_KEYS)


def outcome(make: Callable[[Any], bytes], value: Any) -> bytes | str:
    """The bytes made, or the problem named."""
    try:
        return make(value)
    except JsonProblem as exc:
        return str(exc)


@settings(max_examples=400)
@given(JSON)
def test_fast_path_equals_the_full_rebuild(value: Any) -> None:
    # the same bytes, or the same refusal (st.text() draws NULs and lone surrogates)
    assert outcome(canonical_json, value) == outcome(slow, value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"x": 1.0}, {"x": 1}),
        ({"x": 1e15}, {"x": 1000000000000000}),
        ({"name": "Jose\u0301"}, {"name": "José"}),
        ({"b": [1, {"d": 2, "c": 3}], "a": None}, {"a": None, "b": [1, {"c": 3, "d": 2}]}),
    ],
)
def test_same_meaning_same_hash(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert content_hash(a) == content_hash(b)


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1: "x"}, {"x": {1, 2}}, object()])
def test_what_is_not_json_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"JSON|strings"):
        canonical_json({"value": bad})


def test_a_uuid_is_its_string_on_both_paths() -> None:
    value = uuid.uuid4()
    assert canonical_json({"u": value}) == canonical_json({"u": str(value)})
    assert canonical_json({"u": value, "n": None}) == canonical_json({"u": str(value), "n": None})


@pytest.mark.parametrize("bad", [datetime.now(UTC), date(2020, 1, 1)])
def test_python_objects_orjson_could_convert_are_refused_too(bad: object) -> None:
    with pytest.raises(ValueError, match="not a JSON value"):
        canonical_json({"value": bad})


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` levels of arrays (the outermost counted) around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"name.family": "Nul\x00Name"}, "name.family"),
        ({"resource": {"name": [{"given": ["a", "b\x00"]}]}}, "resource.name[0].given[1]"),
        ({"x": {"key\x00": 1}}, "x[?]"),  # a NUL in a key: the key itself is not shown
        ({"a\\u0000b": "c\x00"}, "[?]"),  # the escape written out is text, the NUL is not
    ],
)
def test_a_nul_anywhere_is_refused_naming_where(document: dict[str, Any], where: str) -> None:
    with pytest.raises(JsonProblem) as caught:
        canonical_json(document)
    assert str(caught.value) == f"{where}: a NUL character (U+0000) is not allowed"
    assert "Nul" not in str(caught.value)


def test_the_text_of_a_backslash_u0000_is_not_a_nul() -> None:
    assert canonical_json({"a": "\\u0000"}) == b'{"a":"\\\\u0000"}'


@pytest.mark.parametrize("bad", ["\ud800", 2**64, -(2**63) - 1])
def test_what_no_store_can_hold_is_refused(bad: object) -> None:
    with pytest.raises(JsonProblem, match=r"^x\[0\]: "):
        canonical_json({"x": [bad]})


@pytest.mark.parametrize("leaf", [1, "é", None])  # the fast path, the slow path (twice)
def test_nesting_is_refused_past_the_limit_on_every_path(leaf: Any) -> None:
    canonical_json(nested(MAX_DEPTH, leaf))
    for depth in (MAX_DEPTH + 1, 254, 255, 5000):
        with pytest.raises(JsonProblem, match=f"nested deeper than {MAX_DEPTH} levels"):
            canonical_json(nested(depth, leaf))
