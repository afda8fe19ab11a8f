"""Loading the project's sample data format into the world model.

A sample file is ``{"source": {"id": ...}, "records": [{"resource_type", "external_id",
"entity_type", "effective_at", "data"}, ...]}``; references in ``data`` name records of the same
file (``Patient/pat-1001``) and are translated to entity ids. The whole file is one atomic batch.
Full FHIR import arrives with the FHIR layer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from ehrbridge.errors import InvalidInput
from ehrbridge.worldmodel.entities import spec_for
from ehrbridge.worldmodel.events import Observation, RecordKey, new_id
from ehrbridge.worldmodel.model import WorldModel

_REFERENCE_KINDS = frozenset({"reference", "reference_list"})


@dataclass(frozen=True, kw_only=True)
class ImportSummary:
    """Per entity type: how many records were created, updated or unchanged."""

    counts: Mapping[str, Counter[str]]
    events: int


def read_sample(path: Path | None = None) -> dict[str, Any]:
    """The sample document at ``path``, or the one shipped with ehrbridge."""
    name = str(path) if path else "the bundled sample"
    try:
        raw = (
            path.read_bytes()
            if path
            else (resources.files("ehrbridge.sample") / "clinic.json").read_bytes()
        )
        doc = orjson.loads(raw)
    except OSError as exc:
        raise InvalidInput(f"{name}: cannot read: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{name}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise InvalidInput(f"{name}: expected an object with a 'records' list")
    if not isinstance(doc.get("source"), dict) or not isinstance(doc["source"].get("id"), str):
        raise InvalidInput(f"{name}: expected 'source.id', the data source's id")
    return doc


async def import_sample(model: WorldModel, doc: Mapping[str, Any]) -> ImportSummary:
    """Import a sample document atomically; importing it again writes no events."""
    source = str(doc["source"]["id"])
    records: list[Mapping[str, Any]] = doc["records"]
    entity_ids: dict[str, str] = {}
    keys: list[RecordKey] = []
    for position, rec in enumerate(records):
        for name in ("resource_type", "external_id", "entity_type", "effective_at", "data"):
            if name not in rec:
                raise InvalidInput(f"records[{position}]: missing {name!r}")
        key = RecordKey(
            data_source=source,
            resource_type=str(rec["resource_type"]),
            external_id=str(rec["external_id"]),
        )
        known = await model.store.get_record(model.workspace, key)
        entity_ids[f"{rec['entity_type']}/{rec['external_id']}"] = (
            known.entity_id if known else new_id()
        )
        keys.append(key)
    observations = []
    for position, (rec, key) in enumerate(zip(records, keys, strict=True)):
        try:
            effective_at = datetime.fromisoformat(str(rec["effective_at"]))
        except ValueError:
            raise InvalidInput(f"records[{position}].effective_at: not an ISO date-time") from None
        data = _translate(str(rec["entity_type"]), rec["data"], entity_ids, position)
        observations.append(
            Observation(
                workspace=model.workspace,
                record=key,
                entity_type=str(rec["entity_type"]),
                data=data,
                effective_at=effective_at,
                entity_id=entity_ids[f"{rec['entity_type']}/{rec['external_id']}"],
            )
        )
    results = await model.ingest(observations, resolve=False)
    counts: dict[str, Counter[str]] = {}
    events = 0
    for item in results:
        counts.setdefault(item.result.entity_type, Counter())[item.result.status] += 1
        events += len(item.result.events)
    return ImportSummary(counts=counts, events=events)


def _translate(
    entity_type: str, data: Any, entity_ids: Mapping[str, str], position: int
) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput(f"records[{position}].data: expected an object of field values")
    spec = spec_for(entity_type)
    out = dict(data)
    for path, value in data.items():
        field = spec.field(path) if spec else None
        if field is None or field.kind not in _REFERENCE_KINDS or value is None:
            continue
        refs = value if isinstance(value, list) else [value]
        translated = []
        for ref in refs:
            if ref not in entity_ids:
                raise InvalidInput(
                    f"records[{position}].data.{path}: reference {ref!r} points nowhere"
                )
            translated.append(f"{str(ref).split('/', 1)[0]}/{entity_ids[ref]}")
        out[path] = translated if isinstance(value, list) else translated[0]
    return out
