"""The importer's reference walk over generic resources: finding references once and replacing
them copy-on-write gives what a full rebuild of the document gives, and leaves the input alone."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ehrbridge.fhir.references import json_references, path_text, replaced

_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(["x", "Patient/1"]))
_keys = st.sampled_from(["reference", "contained", "item", "subject", "a"])
documents = st.dictionaries(
    _keys,
    st.recursive(
        _leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
        max_leaves=12,
    ),
    max_size=4,
)


def _rebuilt(node: Any, path: str, seen: list[str]) -> Any:
    """The reference implementation: rebuild everything, translating ``reference`` strings
    outside contained resources, and note the path of each in order."""
    if isinstance(node, list):
        return [_rebuilt(v, f"{path}[{i}]", seen) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out = {}
    for name, value in node.items():
        where = f"{path}.{name}" if path else name
        if name == "reference" and isinstance(value, str):
            seen.append(where)
            out[name] = f"T/{value}"
        elif name == "contained":
            out[name] = value
        else:
            out[name] = _rebuilt(value, where, seen)
    return out


@settings(max_examples=300, deadline=None)
@given(doc=documents)
def test_copy_on_write_translation_equals_a_full_rebuild(doc: dict[str, Any]) -> None:
    before = copy.deepcopy(doc)
    seen: list[str] = []
    expected = _rebuilt(doc, "", seen)
    found = list(json_references(doc))
    assert [path_text(where) for _, where in found] == seen
    assert replaced(doc, [(where, f"T/{ref}") for ref, where in found]) == expected
    assert doc == before
