"""The payload of an ``upsert`` outbox item: what a sink writes, and what it was decided on.

An ``upsert`` item (``OutboxItem.operation == "upsert"``) carries in ``payload`` a JSON object::

    {
      "fields": {"phone.mobile": "+16175550143", "email": null},   # required, not empty
      "base":   {"phone.mobile": "+16175550142", "email": "a@b.example"},  # optional
      "ref":    "Patient/123",                                       # or null / absent
      "entity": {"name.family": "Rivera", "phone.mobile": "+16175550143", ...}  # for a create
    }

- ``fields``: flat field paths (docs/entities.md) of the item's entity type and the values to
  write; ``None`` removes the field. Values are as the sink should hold them: reference fields
  already name the sink's records (``Practitioner/77``), not entity ids.
- ``base``: for each field, the value the sink's record had when the write was decided (the last
  snapshot of it the world model read); a field missing from ``base`` had no value there. With
  ``base`` absent or ``null`` nothing is compared (the write is not made over a concurrent change
  only thanks to the sink's versions).
- ``ref``: the entity's record at this sink (``Type/id``), if it has one: the write is an
  update of it. ``null`` or absent: the write creates the record.
- ``entity``: the entity's whole flat projected state, values as in ``fields``; required for a
  create (the record is made of it, with ``fields`` over it), ignored for an update.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ehrbridge.errors import InvalidInput

_PATH = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", re.ASCII)
_REF = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})", re.ASCII)
_KEYS = frozenset({"fields", "base", "ref", "entity"})


@dataclass(frozen=True, kw_only=True)
class Upsert:
    """A parsed ``upsert`` payload (see the module docstring)."""

    #: field path → value to write (None: remove it)
    fields: Mapping[str, Any]
    #: field path → the sink's value the write was decided on; None: nothing to compare
    base: Mapping[str, Any] | None
    #: the record to update, ``(resource type, id)``; None: create it
    ref: tuple[str, str] | None
    #: the entity's whole state, for a create
    entity: Mapping[str, Any] | None

    def base_of(self, path: str) -> Any:
        """The base value of ``path`` (None when the record had none there)."""
        return None if self.base is None else self.base.get(path)


def _paths(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"upsert payload: {what} must be a JSON object")
    for path in value:
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            # A path is a field name, never a value: safe to show (shortened).
            raise InvalidInput(f"upsert payload: {what}: {str(path)[:64]!r} is not a field path")
    return dict(value)


def parse_upsert(payload: Mapping[str, Any]) -> Upsert:
    """The :class:`Upsert` in an item's payload; InvalidInput names what is wrong (never a
    value).

    >>> parse_upsert({"fields": {"gender": "female"}, "ref": "Patient/7"}).ref
    ('Patient', '7')
    >>> parse_upsert({"fields": {"gender": "female"}})
    Traceback (most recent call last):
    ehrbridge.errors.InvalidInput: upsert payload: a create (no ref) needs entity
    """
    if not isinstance(payload, Mapping):
        raise InvalidInput("upsert payload: expected a JSON object")
    unknown = sorted(str(k)[:32] for k in payload if k not in _KEYS)
    if unknown:
        raise InvalidInput(f"upsert payload: unknown keys {', '.join(unknown)}")
    fields = _paths(payload.get("fields"), "fields")
    if not fields:
        raise InvalidInput("upsert payload: fields is empty (nothing to write)")
    raw_base = payload.get("base")
    base = None if raw_base is None else _paths(raw_base, "base")
    raw_ref = payload.get("ref")
    ref = None
    if raw_ref is not None:
        match = _REF.fullmatch(raw_ref) if isinstance(raw_ref, str) else None
        if match is None:
            raise InvalidInput("upsert payload: ref must be a FHIR reference Type/id")
        ref = (match.group(1), match.group(2))
    raw_entity = payload.get("entity")
    entity = None if raw_entity is None else _paths(raw_entity, "entity")
    if ref is None and not entity:
        raise InvalidInput("upsert payload: a create (no ref) needs entity")
    return Upsert(fields=fields, base=base, ref=ref, entity=entity)
