"""Finding and rewriting the references inside a FHIR resource.

The importer translates each ``Type/id`` reference into the entity it lands on; for a resource
kept whole (a generic entity) that means finding every ``reference`` string with where it sits
(:func:`json_references`) and writing the translated values back into a copy that shares what
did not change (:func:`replaced`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ehrbridge.fhir.mapping import Mapped
from ehrbridge.worldmodel.entities import spec_for

#: A relative reference ``Type/id``, optionally ``/_history/<version>``.
RELATIVE = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")

#: Where a value sits in a JSON document: the keys and list indexes leading to it.
Location = tuple[str | int, ...]


def generic_references(mapped: Mapped) -> list[tuple[str, Location]]:
    """The references inside a generic entity's resource, with where they are in it."""
    resource = mapped.data.get("resource")
    if spec_for(mapped.entity_type) is not None or not isinstance(resource, dict):
        return []
    return list(json_references(resource))


def json_references(node: Any, where: Location = ()) -> Iterator[tuple[str, Location]]:
    """``(reference, location)`` of every ``reference`` string in ``node``, in document order,
    leaving out contained resources (they refer to each other locally)."""
    if isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, dict | list):
                yield from json_references(value, (*where, i))
    elif isinstance(node, dict):
        for name, value in node.items():
            if name == "reference" and isinstance(value, str):
                yield value, (*where, name)
            elif name != "contained" and isinstance(value, dict | list):
                yield from json_references(value, (*where, name))


def path_text(where: Location) -> str:
    """A location as text, the way errors name it.

    >>> path_text(("item", 0, "encounter", 1, "reference"))
    'item[0].encounter[1].reference'
    """
    text = ""
    for step in where:
        text = f"{text}[{step}]" if isinstance(step, int) else f"{text}.{step}" if text else step
    return text


def replaced(document: dict[str, Any], changes: list[tuple[Location, Any]]) -> dict[str, Any]:
    """A copy of ``document`` with the value at each location replaced; what no change passes
    through is shared with ``document``, which is left as it was.

    >>> doc = {"a": [{"reference": "x"}, {"reference": "y"}], "b": {"c": 1}}
    >>> new = replaced(doc, [(("a", 1, "reference"), "z")])
    >>> new, doc["a"][1], new["b"] is doc["b"], new["a"][0] is doc["a"][0]
    ({'a': [{'reference': 'x'}, {'reference': 'z'}], 'b': {'c': 1}}, {'reference': 'y'}, True, True)
    """
    out = dict(document)
    copied = {id(out)}  # containers already copied (alive in ``out``, so ids stay unique)
    for where, value in changes:
        node: Any = out
        for step in where[:-1]:
            child = node[step]
            if id(child) not in copied:
                child = dict(child) if isinstance(child, dict) else list(child)
                node[step] = child
                copied.add(id(child))
            node = child
        node[where[-1]] = value
    return out
