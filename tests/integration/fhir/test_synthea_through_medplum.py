"""The 60 Synthea bundles through a real FHIR server: loaded into Medplum, paged back out with
the client, imported into the world model; the counts agree with the bundles."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import orjson
import pytest

from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.push import Pusher
from ehrbridge.fhir.reader import Entry, Unit
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store
from tests.fhir_server import MedplumServer
from tests.synthea import patient_bundles

pytestmark = [pytest.mark.fhir_server, pytest.mark.slow]
#: Referenced types first, so most references point backwards (the importer defers the rest).
ORDER = ("Organization", "Practitioner", "Patient", "Encounter")


def expected_counts() -> tuple[Counter[str], Counter[str]]:
    """Resources per resource type in the bundles, and entities per entity type they make."""
    resources: Counter[str] = Counter()
    entities: Counter[str] = Counter()
    npis: set[str] = set()
    for path in patient_bundles():
        for entry in orjson.loads(path.read_bytes())["entry"]:
            r = entry["resource"]
            kind = r["resourceType"]
            resources[kind] += 1
            if kind == "Practitioner":
                # Every bundle POSTs the practitioners it refers to, so the server holds copies;
                # the world model resolves the copies by NPI into one entity each.
                npis |= {i["value"] for i in r["identifier"] if i["system"].endswith("us-npi")}
                continue
            if kind == "Observation":
                codes = {c["code"] for cat in r.get("category", []) for c in cat["coding"]}
                kind = "LabResult" if "laboratory" in codes else "Observation"
            entities[{"MedicationRequest": "MedicationOrder"}.get(kind, kind)] += 1
    entities["Practitioner"] = len(npis)
    return resources, entities


async def pages(fhir: FhirClient, types: list[str]) -> AsyncIterator[Unit]:
    for resource_type in types:
        number = 0
        async for page in fhir.search_pages(resource_type, {"_count": "500"}):
            number += 1
            yield Unit(
                file=f"medplum {resource_type} page {number}",
                kind="searchset",
                entries=[
                    Entry(position=f"entry[{i}]", resource=e["resource"])
                    for i, e in enumerate(page.get("entry") or [])
                ],
            )


async def test_synthea_bundles_through_medplum_into_the_world_model(
    medplum: MedplumServer, store: Store
) -> None:
    resources, entities = expected_counts()
    await medplum.reset()
    async with FhirClient(medplum.base_url) as fhir:
        pushed = await Pusher(fhir).push_paths(patient_bundles())
        assert not pushed.errors, pushed.errors[:3]
        assert {t: c["created"] for t, c in pushed.counts.items()} == dict(resources)
        types = sorted(resources, key=lambda t: (ORDER.index(t) if t in ORDER else 9, t))
        units = [unit async for unit in pages(fhir, types)]
    paged = Counter(str(e.resource["resourceType"]) for u in units for e in u.entries if e.resource)
    assert paged == resources
    model = WorldModel(store, "clinic")
    report = await Importer(model, source="medplum").import_units(units)
    assert not report.errors, report.errors[:3]
    assert (await store.counts("clinic")).entities == dict(entities)
    again = await Importer(model, source="medplum").import_units(units)
    assert again.events == 0 and again.total("unchanged") == sum(resources.values())
