"""An update of a FHIR resource that changes only what the changed entity fields map to.

A sink's record holds more than the mapping reads (extensions, a fax number, an address's
district, elements of no entity field), and an update must not drop any of it.
:func:`changed_resource` starts from the resource as read and rewrites only the top-level
elements whose mapped form changes when the fields change:

- a **list** element (``telecom``, ``address``, ``name``, ``identifier``): the entries of the
  read list that carry a changed field (removing the entry changes that field's value as read)
  give way to the entries the mapping writes for the new values; every other entry stays as it
  was, in its place. When as many entries come as go, each new one keeps the sub-elements of the
  one it replaces that the mapping never writes there (``rank``, ``period``, extensions);
- any other element (``birthDate``, ``gender``, ``maritalStatus``): replaced, or removed.

>>> read = {"resourceType": "Patient", "id": "7", "gender": "male",
...         "telecom": [{"system": "fax", "value": "+16175550100"},
...                     {"system": "phone", "value": "+16175550142", "use": "mobile", "rank": 1}]}
>>> new = changed_resource(read, "Patient", {"phone.mobile": "+16175550143"})
>>> new["telecom"][0]
{'system': 'fax', 'value': '+16175550100'}
>>> new["telecom"][1]
{'system': 'phone', 'value': '+16175550143', 'use': 'mobile', 'rank': 1}
>>> new["gender"]
'male'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.errors import MappingError
from ehrbridge.fhir.http import Resource
from ehrbridge.fhir.mapping import to_entity, to_fhir

_HEAD = ("resourceType", "id")


def _read(resource: Mapping[str, Any]) -> dict[str, Any]:
    return to_entity(resource).data


def changed_resource(
    read: Mapping[str, Any], entity_type: str, fields: Mapping[str, Any]
) -> Resource:
    """``read`` with ``fields`` (None: remove) written into it, nothing else changed.

    Raises :class:`~ehrbridge.errors.MappingError` for a resource or values the mapping
    refuses.
    """
    current = _read(read)
    changed = {p for p, v in fields.items() if current.get(p) != v}
    if not changed:
        return dict(read)
    wanted = {p: v for p, v in {**current, **fields}.items() if v is not None}
    resource_id = read.get("id") if isinstance(read.get("id"), str) else None
    old = to_fhir(entity_type, current, id=resource_id)
    new = to_fhir(entity_type, wanted, id=resource_id)
    out: Resource = dict(read)
    for key in [*old, *(k for k in new if k not in old)]:
        if key in _HEAD or old.get(key) == new.get(key):
            continue
        was, now = read.get(key), new.get(key)
        if isinstance(was, list) and isinstance(now, list | None):
            entries = _changed_list(read, key, was, now or [], old.get(key) or [], changed)
            if entries:
                out[key] = entries
            else:
                out.pop(key, None)
        elif now is None:
            out.pop(key, None)
        else:
            out[key] = now
    return out


def _changed_list(
    read: Mapping[str, Any],
    key: str,
    was: list[Any],
    now: list[Any],
    old: list[Any],
    changed: set[str],
) -> list[Any]:
    """The new entries of list element ``key``: see the module docstring."""
    before = _read(read)
    carriers = []
    for index in range(len(was)):
        without = {**read, key: was[:index] + was[index + 1 :]}
        try:
            after = _read(without)
        except MappingError:
            # The resource is not valid without it: the entry is part of what the mapping reads.
            carriers.append(index)
            continue
        if any(before.get(p) != after.get(p) for p in changed):
            carriers.append(index)
    # The entries the mapping writes for the new values that it did not write for the old.
    coming = [entry for entry in now if entry not in old]
    if len(coming) == len(carriers):
        # Sub-elements the mapping writes in this element (in any entry): the others are kept.
        written = {k for entry in (*old, *now) if isinstance(entry, dict) for k in entry}
        coming = [
            _keep_unwritten(was[index], entry, written)
            for index, entry in zip(carriers, coming, strict=True)
        ]
    if not carriers:
        return [*was, *coming]
    first = carriers[0]
    kept = [entry for index, entry in enumerate(was) if index not in carriers]
    head = [entry for index, entry in enumerate(was[:first]) if index not in carriers]
    return [*head, *coming, *kept[len(head) :]]


def _keep_unwritten(was: Any, entry: Any, written: set[str]) -> Any:
    if not isinstance(was, dict) or not isinstance(entry, dict):
        return entry
    extra = {k: v for k, v in was.items() if k not in written}
    return {**entry, **extra}
