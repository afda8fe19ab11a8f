"""What a rest sink makes of an outbox item's payload (docs/sinks.md): the values its templates
see, and how a record read from the sink compares with them.

The payload, as the FHIR sink takes it::

    {"fields": {flat field path: value (None: remove)},
     "base": {field: the value the sink's record had when the write was decided},   # optional
     "ref": "<entity type>/<id at the sink>" | None,     # present: an update of that record
     "entity": {the entity's whole flat projected state}}

A read record is compared in canonical fields when the sink's source maps that entity type
inbound (a :class:`RecordReader`: its resource's field mappings, transforms included, so a
phone the API stores as ``(617) 555-0101`` compares equal to ``+16175550101``). Otherwise it is
taken to be shaped like the write's body: a field is found where the body places it whole
(:meth:`~ehrbridge.outbound.sinks.restwrites.Body.positions`), in the sink's spelling of codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ehrbridge.errors import SinkError
from ehrbridge.outbound.outbox import OutboxItem
from ehrbridge.outbound.sinks import Conflicting
from ehrbridge.outbound.sinks.restwrites import ID, KEY, Body, EntityWrites


class RecordReader(Protocol):
    """A record read from the sink in canonical fields (the source's inbound mapping)."""

    @property
    def fields(self) -> frozenset[str]:
        """The fields it maps (the ones a read record can be compared on)."""
        ...

    def __call__(self, record: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The record's canonical fields; None when the mapping refuses it."""
        ...


class Payload:
    """The item's payload, read once: the values the templates see (coded as the sink spells
    them), and the record's ref."""

    def __init__(self, fields: Mapping[str, Any], base: Mapping[str, Any], ref: str | None,
                 entity: Mapping[str, Any], key: str, writes: EntityWrites) -> None:  # fmt: skip
        self.fields, self.base, self.ref, self.entity, self.key = fields, base, ref, entity, key
        self.writes = writes
        #: ``fields`` and ``base`` as the sink spells them (what a read record is compared with)
        self.coded_fields, self.coded_base = writes.coded(fields), writes.coded(base)
        self.remote_id = ref.split("/", 1)[1] if ref else None
        self.values: dict[str, Any] = {**writes.coded(entity), **self.coded_fields, KEY: key}
        if self.remote_id is not None:
            self.values[ID] = self.remote_id

    @classmethod
    def of(cls, item: OutboxItem, writes: EntityWrites) -> Payload:
        """The payload of ``item``; a permanent SinkError when it is not of that shape."""
        payload = item.payload
        fields, base = payload.get("fields"), payload.get("base") or {}
        ref, entity = payload.get("ref"), payload.get("entity") or {}
        if not isinstance(fields, Mapping) or not isinstance(base, Mapping):
            raise SinkError("the item's payload has no fields mapping (a bug upstream)")
        if not isinstance(entity, Mapping):
            raise SinkError("the item's payload has no entity mapping (a bug upstream)")
        if ref is not None and (not isinstance(ref, str) or "/" not in ref or ref.endswith("/")):
            raise SinkError("the item's ref is not <type>/<id> (a bug upstream)")
        return cls(fields, base, ref, entity, item.key, writes)

    def with_ref(self, ref: str) -> Payload:
        """This payload for the record ``ref``."""
        return Payload(self.fields, self.base, ref, self.entity, self.key, self.writes)

    def over(self, body: Body, record: Mapping[str, Any]) -> Payload:
        """This payload with the values of the fields it does not change taken from the sink's
        ``record`` (where ``body`` places them whole and the record has them), so an update
        writes back what the sink holds instead of our possibly older copy."""
        keep = dict(self.values)
        for name, where in body.positions().items():
            if name in self.fields or name in (ID, KEY):
                continue
            present, theirs = find(record, where)
            if present:
                keep[name] = theirs
        out = Payload(self.fields, self.base, self.ref, self.entity, self.key, self.writes)
        out.values = keep
        return out


def shape(writes: EntityWrites) -> Body:
    """The body whose shape a read record has: the update's, else the create's."""
    call = writes.update or writes.create
    return call.body if call is not None else Body(tree={})


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The item's fields against a record read from the sink."""

    #: the fields the sink changed since the base to something not ours
    conflicts: tuple[Conflicting, ...]
    #: the fields the body places whole, so the record could be compared on them
    compared: frozenset[str]
    #: of those, the ones whose value at the sink is ours
    ours: frozenset[str]
    #: every field of the item was compared
    complete: bool

    @property
    def same(self) -> bool:
        """The sink holds every field of ours (nothing left to write)."""
        return self.complete and self.ours == self.compared

    @property
    def shown(self) -> bool | None:
        """Whether the compared fields show our values; None when none could be compared."""
        return self.ours == self.compared if self.compared else None


def compare(
    body: Body,
    record: Mapping[str, Any],
    payload: Payload,
    reader: RecordReader | None = None,
) -> Comparison:
    """The item's fields against ``record``: in canonical fields through ``reader`` when it
    maps the record, else each where ``body`` places it whole (in the sink's spelling)."""
    canonical = reader(record) if reader is not None else None
    places = body.positions()
    conflicts: list[Conflicting] = []
    compared, ours = set(), set()
    for name, value in payload.fields.items():
        if canonical is not None and reader is not None:
            if name not in reader.fields:
                continue
            theirs, mine = canonical.get(name), value
            base = payload.base.get(name)
        else:
            where = places.get(name)
            if where is None:
                continue
            theirs, mine = find(record, where)[1], payload.coded_fields[name]
            base = payload.coded_base.get(name)
        compared.add(name)
        if theirs == mine:
            ours.add(name)
        elif name in payload.base and theirs != base:
            conflicts.append(Conflicting(field=name, ours=value, theirs=theirs))
    return Comparison(
        conflicts=tuple(conflicts),
        compared=frozenset(compared),
        ours=frozenset(ours),
        complete=bool(payload.fields) and len(compared) == len(payload.fields),
    )


def find(record: Mapping[str, Any], where: tuple[str, ...]) -> tuple[bool, Any]:
    """Whether ``record`` has a value at ``where``, and the value."""
    node: Any = record
    for key in where:
        if not isinstance(node, Mapping) or key not in node:
            return False, None
        node = node[key]
    return True, node
