"""JSON Patch (https://www.rfc-editor.org/rfc/rfc6902) applied to a copy of a resource."""

from __future__ import annotations

import copy
from typing import Any

from ehrbridge.sandbox.outcome import OperationFailed


def _pointer(path: object) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise OperationFailed(400, "a JSON Patch path must be a JSON Pointer")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _parent(doc: Any, tokens: list[str]) -> tuple[Any, str]:
    if not tokens:
        raise OperationFailed(400, "a JSON Patch may not replace the whole resource")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token)
    return node, tokens[-1]


def _child(node: Any, token: str) -> Any:
    try:
        if isinstance(node, list):
            return node[int(token)]
        if isinstance(node, dict):
            return node[token]
    except (KeyError, IndexError, ValueError):
        pass
    raise OperationFailed(422, "a JSON Patch path does not exist")


def _get(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens:
        node = _child(node, token)
    return node


def _add(doc: Any, tokens: list[str], value: Any) -> None:
    parent, key = _parent(doc, tokens)
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list):
        index = len(parent) if key == "-" else _index(key, len(parent) + 1)
        parent.insert(index, value)
    else:
        raise OperationFailed(422, "a JSON Patch path does not exist")


def _remove(doc: Any, tokens: list[str]) -> Any:
    parent, key = _parent(doc, tokens)
    if isinstance(parent, dict) and key in parent:
        return parent.pop(key)
    if isinstance(parent, list):
        return parent.pop(_index(key, len(parent)))
    raise OperationFailed(422, "a JSON Patch path does not exist")


def _index(token: str, size: int) -> int:
    if not token.isdigit() or int(token) >= size:
        raise OperationFailed(422, "a JSON Patch array index is out of range")
    return int(token)


def apply_patch(resource: dict[str, Any], operations: object) -> dict[str, Any]:
    """The patched copy of ``resource``.

    >>> apply_patch({"a": [1]}, [{"op": "add", "path": "/a/-", "value": 2},
    ...                          {"op": "replace", "path": "/b", "value": 3}])
    Traceback (most recent call last):
    ehrbridge.sandbox.outcome.OperationFailed: 422: a JSON Patch path does not exist
    >>> apply_patch({"a": [1]}, [{"op": "add", "path": "/a/-", "value": 2},
    ...                          {"op": "move", "from": "/a", "path": "/b"}])
    {'b': [1, 2]}
    """
    if not isinstance(operations, list):
        raise OperationFailed(400, "a JSON Patch body must be an array of operations")
    doc = copy.deepcopy(resource)
    for operation in operations:
        if not isinstance(operation, dict):
            raise OperationFailed(400, "a JSON Patch operation must be an object")
        op, tokens = operation.get("op"), _pointer(operation.get("path"))
        if op in ("add", "replace", "test") and "value" not in operation:
            raise OperationFailed(400, f"a JSON Patch {op} needs a value")
        if op == "add":
            _add(doc, tokens, copy.deepcopy(operation["value"]))
        elif op == "remove":
            _remove(doc, tokens)
        elif op == "replace":
            _remove(doc, tokens)
            _add(doc, tokens, copy.deepcopy(operation["value"]))
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from"))
            value = _remove(doc, source) if op == "move" else copy.deepcopy(_get(doc, source))
            _add(doc, tokens, value)
        elif op == "test":
            if _get(doc, tokens) != operation["value"]:
                raise OperationFailed(422, "a JSON Patch test failed")
        else:
            raise OperationFailed(400, "unknown JSON Patch operation")
    return doc
