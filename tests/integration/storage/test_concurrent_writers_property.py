"""Concurrent importers, as a property (docs/design.md, "Concurrent writers"): whatever the
records, their overlap between importers and their data sources, importers running at once on
one database leave what the same imports leave one after another: the same entities, each
named by its source records, with the same projected values and references, and no reference
pointing nowhere. The processes' version is tests/integration/storage/test_concurrent_import.py."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrbridge.fhir.importer import Importer
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import START, Store
from tests.conftest import BACKENDS, POSTGRES_DSN, new_schema
from tests.worldstate import named, references

WS = "default"
FAMILIES = ["Santos", "Okafor", "Lindqvist", "Haddad"]


def patient(n: int) -> dict[str, Any]:
    """Person ``n``, the same content wherever it appears (a record's copies never differ)."""
    return {
        "resourceType": "Patient",
        "id": f"p{n}",
        "identifier": [{"system": "urn:mrn", "value": f"mrn-{n}"}],
        "name": [{"family": FAMILIES[n], "given": ["Alex"]}],
        "birthDate": f"19{60 + n}-0{n + 1}-1{n}",
    }


def encounter(n: int, k: int) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": f"e{n}-{k}",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/p{n}"},
        "serviceProvider": {"reference": "Organization/o1"},
    }


ORGANIZATION: dict[str, Any] = {"resourceType": "Organization", "id": "o1", "name": "Harbor Clinic"}
#: A bundle without people, so nothing of it is resolved: an organisation and resources of a
#: type kept as it is (open schema) that refer to it.
SITES: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "o2", "name": "Harbor Lab"},
    *(
        {"resourceType": "Basic", "id": f"b{k}", "subject": {"reference": "Organization/o2"}}
        for k in (1, 2)
    ),
]

#: One importer's work: a data source and the bundles it imports, each a set of people.
importers = st.lists(
    st.tuples(
        st.sampled_from(["ehr-a", "ehr-b"]),
        st.lists(
            st.frozensets(st.integers(0, 3), max_size=3), min_size=1, max_size=3
        ),  # an empty set of people: the sites
    ),
    min_size=2,
    max_size=3,
)


def bundle(people: frozenset[int]) -> dict[str, Any]:
    resources = [ORGANIZATION] if people else list(SITES)
    for n in sorted(people):
        resources += [patient(n), encounter(n, 1), encounter(n, 2)]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


def record_keys(work: list[tuple[str, list[frozenset[int]]]]) -> list[RecordKey]:
    keys = set()
    for source, bundles in work:
        for people in bundles:
            for resource in bundle(people)["entry"]:
                r = resource["resource"]
                keys.add(
                    RecordKey(
                        data_source=source, resource_type=r["resourceType"], external_id=r["id"]
                    )
                )
    return sorted(keys, key=lambda k: (k.data_source, k.resource_type, k.external_id))


async def state_of(store: Store, keys: list[RecordKey]) -> dict[str, Any]:
    """What the imports left, by the store's port alone and independent of entity ids."""
    names: dict[tuple[str, str], list[str]] = {}
    for key, entity in (await store.record_entities(WS, keys)).items():
        names.setdefault(entity, []).append(f"{key.data_source}:{key.ref}")
    named_as = {entity: " + ".join(sorted(refs)) for entity, refs in names.items()}
    events, position = [], START
    while (page := await store.read_log(WS, position, 500)).events:
        events += page.events
        position = page.position
    entities = {(e.entity_type, e.entity_id) for e in events}
    dangling = sum(1 for e in events for ref in references(e.data) if ref not in entities)

    states = {}
    for entity, name in named_as.items():
        state = await store.get_state(WS, *entity)
        assert state is not None
        states[name] = named(state.values, named_as)
    return {
        "entities": len(entities),
        "dangling": dangling,
        "states": states,
        "events": len(events),
    }


async def import_all(
    stores: list[Store],
    work: list[tuple[str, list[frozenset[int]]]],
    folder: Path,
    *,
    at_once: bool,
) -> None:
    async def one(store: Store, i: int, source: str, bundles: list[frozenset[int]]) -> None:
        files = []
        for j, people in enumerate(bundles):
            path = folder / f"{'race' if at_once else 'seq'}-{i}-{j}.json"
            path.write_bytes(orjson.dumps(bundle(people)))
            files.append(path)
        await Importer(WorldModel(store, WS), source=source).import_paths(files)

    jobs = [one(stores[i], i, source, bundles) for i, (source, bundles) in enumerate(work)]
    if at_once:
        await asyncio.gather(*jobs)
    else:
        for job in jobs:
            await job


async def open_stores(backend: str, folder: Path, name: str, n: int) -> list[Store]:
    """``n`` stores (connections) on one fresh database."""
    if backend == "sqlite":
        return [await SQLiteStore.open(folder / f"{name}.db") for _ in range(n)]
    from ehrbridge.storage.postgres.worldmodel import PostgresStore

    schema = new_schema()
    return [await PostgresStore.open(POSTGRES_DSN, schema=schema) for _ in range(n)]


async def close(stores: list[Store]) -> None:
    from ehrbridge.storage.postgres.worldmodel import PostgresStore

    for store in reversed(stores[1:]):
        await store.close()
    if isinstance(stores[0], PostgresStore):
        await stores[0].drop_schema()
    await stores[0].close()


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(work=importers)
def test_importers_at_once_leave_what_they_leave_one_after_another(
    backend: str, work: list[tuple[str, list[frozenset[int]]]]
) -> None:
    async def check() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            sequential = await open_stores(backend, folder, "seq", 1)
            raced = await open_stores(backend, folder, "race", len(work))
            try:
                await import_all(sequential * len(work), work, folder, at_once=False)
                await import_all(raced, work, folder, at_once=True)
                keys = record_keys(work)
                expected = await state_of(sequential[0], keys)
                actual = await state_of(raced[0], keys)
            finally:
                await close(sequential)
                await close(raced)
        assert expected["dangling"] == actual["dangling"] == 0
        assert actual == expected

    asyncio.run(check())
