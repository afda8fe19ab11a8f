"""Comparing what writers left in a world model, independent of the entity ids they drew: the
concurrent-writer tests (docs/design.md, "Concurrent writers") name every entity by its source
records and every reference by the entity it points to."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

#: an entity reference as the importer writes it: ``Type/<26 hex digits>``
_REF = re.compile(r"^([A-Z][A-Za-z]+)/([0-9a-f]{26})$")


def references(node: Any) -> Iterator[tuple[str, str]]:
    """Every entity reference ``(type, id)`` in a JSON value."""
    if isinstance(node, str):
        if match := _REF.match(node):
            yield match.group(1), match.group(2)
    elif isinstance(node, dict):
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def named(value: Any, names: Mapping[tuple[str, str], str]) -> Any:
    """``value`` with every entity reference replaced by the entity's name in ``names``
    (``nowhere:<type>`` for one that is not there)."""
    if isinstance(value, str) and (match := _REF.match(value)):
        return names.get((match.group(1), match.group(2)), f"nowhere:{match.group(1)}")
    if isinstance(value, dict):
        return {k: named(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [named(v, names) for v in value]
    return value
