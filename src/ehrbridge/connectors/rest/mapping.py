"""One REST record to canonical fields: its id, version, change time and field values.

A record that cannot be mapped raises :class:`~ehrbridge.errors.RecordError` (an ``InvalidInput``)
with a reason that names the field and the transform, never a value. Reference fields
(``link:``) come out as their lookup value (an MRN, a phone, the source's own id of the record
pointed to); the poller turns them into entity references with the world model
(:mod:`ehrbridge.connectors.rest.links`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jmespath.exceptions import JMESPathError

from ehrbridge.connectors.rest.paging import search
from ehrbridge.connectors.rest.spec import FieldMap, Link, RestResource, Transform
from ehrbridge.connectors.rest.transforms import Context, apply
from ehrbridge.errors import RecordError, TransformError

_DATETIME = (Transform(name="datetime"),)


@dataclass(frozen=True, kw_only=True)
class MappedRecord:
    """A record in canonical form, before its references are resolved."""

    #: the id at the source
    external_id: str
    #: the record's version or ETag, when the source has one
    version: str | None = None
    #: when the record last changed at the source (the incremental field), if known
    updated: datetime | None = None
    #: canonical field path -> value; fields with nothing are left out
    data: dict[str, Any] = field(default_factory=dict)
    #: reference fields still to resolve: field path -> (how, lookup value)
    links: dict[str, tuple[Link, str]] = field(default_factory=dict)
    #: reference fields a record cannot be stored without
    required_links: frozenset[str] = frozenset()


def record_id(resource: RestResource, record: Any) -> str | None:
    """The record's id at the source as text, or None when it has none."""
    if not isinstance(record, dict):
        return None
    try:
        value = search(resource.id, record)
    except JMESPathError:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def updated_at(resource: RestResource, record: Any, ctx: Context) -> datetime | None:
    """When the record last changed (the incremental field), in UTC; None when unknown."""
    if resource.incremental is None or not isinstance(record, dict):
        return None
    try:
        text = apply(_DATETIME, search(resource.incremental.field, record), ctx)
    except (TransformError, JMESPathError):
        return None
    return datetime.fromisoformat(text).astimezone(UTC) if text is not None else None


def map_record(resource: RestResource, record: Any, ctx: Context) -> MappedRecord:
    """``record`` in canonical form; :class:`RecordError` says why it cannot be."""
    if not isinstance(record, dict):
        raise RecordError("the record is not a JSON object")
    external_id = record_id(resource, record)
    if external_id is None:
        raise RecordError(f"id ({resource.id}): missing, or not a string or number")
    version = None
    if resource.version is not None:
        raw_version = search(resource.version, record)
        version = None if raw_version is None else str(raw_version)
    updated = updated_at(resource, record, ctx)
    inc = resource.incremental
    if inc is not None and updated is None and search(inc.field, record) is not None:
        raise RecordError(f"incremental field ({inc.field}): not a date or time")
    data: dict[str, Any] = {}
    links: dict[str, tuple[Link, str]] = {}
    required: set[str] = set()
    for spec in resource.fields:
        value = _value(spec, record, ctx)
        if value is None:
            if spec.required:
                raise RecordError(f"{spec.name}: missing, and the field is required")
            continue
        if spec.link is not None:
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise RecordError(f"{spec.name}: a link needs a string or number to look up")
            links[spec.name] = (spec.link, str(value))
            if spec.required:
                required.add(spec.name)
            continue
        data[spec.name] = value
    return MappedRecord(
        external_id=external_id,
        version=version,
        updated=updated,
        data=data,
        links=links,
        required_links=frozenset(required),
    )


def _value(spec: FieldMap, record: Mapping[str, Any], ctx: Context) -> Any:
    if spec.path is None:
        return spec.value
    try:
        value = search(spec.path, record)
    except JMESPathError as exc:  # e.g. a function applied to the wrong type
        raise RecordError(f"{spec.name}: {spec.path} cannot be applied to this record") from exc
    if value is None or value == "" or value == []:
        return spec.default  # already canonical: the transforms are for the source's values
    try:
        value = apply(spec.transforms, value, ctx)
    except TransformError as exc:
        raise RecordError(f"{spec.name}: {exc}") from None
    return spec.default if value is None else value
