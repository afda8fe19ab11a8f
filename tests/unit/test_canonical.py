"""Canonical JSON: the fast path gives exactly what the full rebuild gives."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrbridge.worldmodel.canonical import _canonical, canonical_json, content_hash

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


@settings(max_examples=400)
@given(JSON)
def test_fast_path_equals_the_full_rebuild(value: Any) -> None:
    assert canonical_json(value) == slow(value)


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
