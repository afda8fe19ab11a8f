"""Importing FHIR Bundles and NDJSON into the world model, on every backend (docs/design.md §6)."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from ehrbridge.audit import WriteAudit
from ehrbridge.errors import StorageError
from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.reader import Entry, Unit
from ehrbridge.fhir.report import ImportReport
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.planner import AppendResult, Submission
from ehrbridge.worldmodel.store import Store
from tests.paths import FIXTURES

WS = "clinic"
CLEMENTE = FIXTURES / "synthea" / "Clemente_Kreiger.json"
LUIGI = FIXTURES / "synthea" / "Luigi_Wiegand.json"


def resource_counts(path: Path) -> Counter[str]:
    doc = orjson.loads(path.read_bytes())
    return Counter(e["resource"]["resourceType"] for e in doc["entry"])


def patient(pid: str, family: str = "Reyes", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"use": "official", "family": family, "given": ["Ana"]}],
        "birthDate": "1980-02-03",
        "gender": "female",
        **extra,
    }


def encounter(eid: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
        },
        "subject": {"reference": subject},
        "period": {"start": "2026-01-05T09:00:00-05:00", "end": "2026-01-05T09:30:00-05:00"},
    }


def bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in resources
        ],
    }


def write_json(path: Path, doc: Any) -> Path:
    path.write_bytes(orjson.dumps(doc))
    return path


def write_ndjson(path: Path, *resources: Any) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path


async def run(store: Store, *paths: Path, **options: Any) -> ImportReport:
    return await Importer(WorldModel(store, WS), **options).import_paths(paths)


def created(report: ImportReport) -> dict[str, int]:
    return {t: c["created"] for t, c in report.counts.items() if c["created"]}


async def entity_of(store: Store, resource_type: str, external_id: str) -> tuple[str, str]:
    key = RecordKey(data_source="import", resource_type=resource_type, external_id=external_id)
    found = await store.record_entities(WS, [key])
    return found[key]


async def test_a_synthea_bundle_imports_every_resource_and_again_writes_nothing(
    store: Store,
) -> None:
    first = await run(store, CLEMENTE)
    assert not first.errors
    assert created(first) == dict(resource_counts(CLEMENTE))
    counts = await store.counts(WS)
    assert sum(counts.entities.values()) == sum(resource_counts(CLEMENTE).values())
    assert counts.entities["Patient"] == 1
    assert counts.entities["LabResult"] + counts.entities["Observation"] == 48
    again = await run(store, CLEMENTE)
    assert again.events == 0 and not again.errors
    assert again.total("unchanged") == sum(resource_counts(CLEMENTE).values())
    assert (await store.counts(WS)).events == counts.events


async def test_references_become_references_between_entities(store: Store) -> None:
    await run(store, CLEMENTE)
    doc = orjson.loads(CLEMENTE.read_bytes())
    resources = [e["resource"] for e in doc["entry"]]
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    patient_ref = "Patient/{}".format((await entity_of(store, "Patient", pid))[1])
    enc = next(r for r in resources if r["resourceType"] == "Encounter")
    enc_type, enc_id = await entity_of(store, "Encounter", enc["id"])
    state = await store.get_state(WS, enc_type, enc_id)
    assert state is not None and state.values["patient"] == patient_ref
    practitioners = state.values["practitioners"]
    assert isinstance(practitioners, list) and practitioners[0].startswith("Practitioner/")
    # A generic resource keeps its references, translated to entities.
    claim = next(r for r in resources if r["resourceType"] == "Claim")
    claim_type, claim_id = await entity_of(store, "Claim", claim["id"])
    claim_state = await store.get_state(WS, claim_type, claim_id)
    assert claim_state is not None
    assert claim_state.values["patient"] == patient_ref
    body = claim_state.values["resource"]
    assert body["patient"]["reference"] == patient_ref
    refs = [i["encounter"][0]["reference"] for i in body["item"] if "encounter" in i]
    assert refs and all(r == f"Encounter/{enc_id}" or r.startswith("Encounter/") for r in refs)
    assert not any(r.startswith("urn:") for r in orjson.dumps(body).decode().split('"'))
    # Contained references stay local to their resource.
    assert body["prescription"]["reference"].startswith("#") if "prescription" in body else True


async def test_a_transaction_with_a_bad_entry_imports_nothing(store: Store, tmp_path: Path) -> None:
    bad = patient("p2", birthDate="03/02/1980")
    path = write_json(
        tmp_path / "tx.json",
        bundle("transaction", patient("p1"), bad, encounter("e1", "urn:uuid:p1")),
    )
    report = await run(store, path)
    assert (await store.counts(WS)).events == 0
    assert report.total("failed") == 3 and report.total("created") == 0
    messages = [str(e) for e in report.errors]
    assert any(
        m.startswith(f"{path}: entry[1]: ") and "birthDate" in m and "03/02" not in m
        for m in messages
    ), messages
    assert any("transaction is all or nothing" in m for m in messages)


async def test_a_transaction_with_a_dangling_reference_imports_nothing(
    store: Store, tmp_path: Path
) -> None:
    path = write_json(
        tmp_path / "tx.json",
        bundle("transaction", patient("p1"), encounter("e1", "urn:uuid:nowhere")),
    )
    report = await run(store, path)
    assert (await store.counts(WS)).events == 0
    assert any(
        e.position == "entry[1]" and "urn:uuid:nowhere" in e.reason and "patient" in e.reason
        for e in report.errors
    ), report.errors


async def test_a_batch_keeps_its_good_entries_and_reports_the_bad(
    store: Store, tmp_path: Path
) -> None:
    path = write_json(
        tmp_path / "batch.json",
        bundle(
            "batch",
            patient("p1"),
            {"resourceType": "Patient", "id": "p2", "gender": 7},
            encounter("e1", "Patient/p1"),
            encounter("e2", "Patient/missing"),
            {"resourceType": "NoSuchThing", "id": "x"},
        ),
    )
    report = await run(store, path)
    assert created(report) == {"Patient": 1, "Encounter": 1}
    assert {(e.position, e.resource_type) for e in report.errors} == {
        ("entry[1]", "Patient"),
        ("entry[3]", "Encounter"),
        ("entry[4]", "NoSuchThing"),
    }
    dangling = next(e for e in report.errors if e.position == "entry[3]")
    assert "Patient/missing" in dangling.reason and "points nowhere" in dangling.reason
    assert (await store.counts(WS)).entities == {"Patient": 1, "Encounter": 1}


async def test_ndjson_keeps_good_lines_and_names_bad_ones(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(
        orjson.dumps(patient("p1"))
        + b"\n{not json\n"
        + orjson.dumps(patient("p2", family="Okafor"))
        + b"\n"
    )
    report = await run(store, path)
    assert created(report) == {"Patient": 2}
    assert [(e.position, e.reason[:8]) for e in report.errors] == [("line 2", "not JSON")]


async def test_ndjson_files_are_ordered_so_references_point_backwards(
    store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    write_ndjson(folder / "Encounter.ndjson.gz", encounter("e1", "Patient/p1"))
    (folder / "Encounter.ndjson.gz").write_bytes(
        gzip.compress(orjson.dumps(encounter("e1", "Patient/p1")) + b"\n")
    )
    write_ndjson(folder / "Patient.ndjson", patient("p1"))
    report = await run(store, folder)
    assert not report.errors
    assert created(report) == {"Patient": 1, "Encounter": 1}


async def test_references_across_chunks_of_one_bundle_resolve(store: Store, tmp_path: Path) -> None:
    resources = [patient(f"p{i}", family=f"F{i}") for i in range(3)]
    resources += [encounter(f"e{i}", f"urn:uuid:p{i}") for i in range(3)]
    path = write_json(tmp_path / "c.json", bundle("collection", *resources))
    report = await run(store, path, chunk=2)
    assert not report.errors
    _, pid = await entity_of(store, "Patient", "p2")
    enc_type, enc_id = await entity_of(store, "Encounter", "e2")
    state = await store.get_state(WS, enc_type, enc_id)
    assert state is not None and state.values["patient"] == f"Patient/{pid}"


async def test_a_changed_resource_is_an_update_with_one_event(store: Store, tmp_path: Path) -> None:
    await run(store, write_ndjson(tmp_path / "a.ndjson", patient("p1"), patient("p2", "Lee")))
    report = await run(
        store,
        write_ndjson(tmp_path / "b.ndjson", patient("p1", "Reyes-Diaz"), patient("p2", "Lee")),
    )
    assert report.counts["Patient"] == Counter({"updated": 1, "unchanged": 1})
    assert report.events == 1


async def test_the_same_patient_from_two_sources_is_one_entity(
    store: Store, tmp_path: Path
) -> None:
    mrn: dict[str, Any] = {
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": "urn:oid:1.2.3",
                "value": "MRN-77",
            }
        ]
    }
    path = write_ndjson(tmp_path / "p.ndjson", patient("p1", **mrn))
    await run(store, path, source="ehr-a")
    other = write_ndjson(tmp_path / "q.ndjson", patient("x9", **mrn))
    await run(store, other, source="ehr-b")
    assert (await store.counts(WS)).entities == {"Patient": 1}
    # Copies in one unit resolve to each other too, not only to what is stored.
    mrn["identifier"][0]["value"] = "MRN-88"
    copies = write_ndjson(
        tmp_path / "r.ndjson",
        patient("c1", "Lee", birthDate="1990-01-01", **mrn),
        patient("c2", "Lee", birthDate="1990-01-01", **mrn),
    )
    await run(store, copies, source="ehr-c")
    assert (await store.counts(WS)).entities == {"Patient": 2}


async def test_refusing_unmapped_types_names_them(store: Store, tmp_path: Path) -> None:
    path = write_ndjson(
        tmp_path / "x.ndjson",
        patient("p1"),
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}},
    )
    report = await run(store, path, unmapped="refuse")
    assert created(report) == {"Patient": 1}
    (error,) = report.errors
    assert error.resource_type == "Condition" and "Condition" in error.reason


async def test_a_file_that_is_not_fhir_is_one_error_and_the_next_file_imports(
    store: Store, tmp_path: Path
) -> None:
    bad = tmp_path / "a.json"
    bad.write_bytes(b"<html>502 Bad Gateway</html>")
    good = write_ndjson(tmp_path / "b.ndjson", patient("p1"))
    report = await run(store, bad, good)
    assert [(e.file, e.position) for e in report.errors] == [(str(bad), "file")]
    assert created(report) == {"Patient": 1}


@pytest.mark.parametrize("kind", ["transaction", "collection"])
async def test_two_bundles_of_the_same_synthea_patient_records_are_idempotent(
    store: Store, tmp_path: Path, kind: str
) -> None:
    doc = orjson.loads(LUIGI.read_bytes())
    doc["type"] = kind
    path = write_json(tmp_path / "luigi.json", doc)
    first = await run(store, path)
    second = await run(store, path)
    assert not first.errors and second.events == 0
    assert first.total("created") == len(doc["entry"])


async def test_ndjson_files_are_imported_in_reference_order(store: Store, tmp_path: Path) -> None:
    claim = {
        "resourceType": "Claim",
        "id": "c1",
        "patient": {"reference": "Patient/p1"},
        "item": [{"sequence": 1, "encounter": [{"reference": "Encounter/e1"}]}],
    }
    # By name, Claim.ndjson comes first; by what refers to what, it comes last.
    write_ndjson(tmp_path / "Claim.ndjson", claim)
    write_ndjson(tmp_path / "Encounter.ndjson", encounter("e1", "Patient/p1"))
    write_ndjson(tmp_path / "Patient.ndjson", patient("p1"))
    report = await run(store, tmp_path)
    assert not report.errors
    assert created(report) == {"Patient": 1, "Encounter": 1, "Claim": 1}
    _, enc_id = await entity_of(store, "Encounter", "e1")
    claim_type, claim_id = await entity_of(store, "Claim", "c1")
    state = await store.get_state(WS, claim_type, claim_id)
    assert state is not None
    assert state.values["resource"]["item"][0]["encounter"][0]["reference"] == f"Encounter/{enc_id}"


async def test_forward_references_are_deferred_until_their_target_arrives(
    store: Store, tmp_path: Path
) -> None:
    basic = {"resourceType": "Basic", "id": "b1", "subject": {"reference": "Device/d1"}}
    device = {"resourceType": "Device", "id": "d1", "patient": {"reference": "Patient/p1"}}
    # Neither type has a place in the order: a.ndjson is read first and refers to b.ndjson,
    # whose first line refers to its second. Two passes over what was set aside.
    write_ndjson(tmp_path / "a.ndjson", basic)
    write_ndjson(tmp_path / "b.ndjson", device, patient("p1"))
    report = await run(store, tmp_path, chunk=1)
    assert not report.errors
    assert created(report) == {"Patient": 1, "Device": 1, "Basic": 1}
    _, device_id = await entity_of(store, "Device", "d1")
    basic_type, basic_id = await entity_of(store, "Basic", "b1")
    state = await store.get_state(WS, basic_type, basic_id)
    assert state is not None
    assert state.values["resource"]["subject"]["reference"] == f"Device/{device_id}"


async def test_a_stream_of_units_settles_its_forward_references_when_it_ends(
    store: Store,
) -> None:
    async def stream() -> AsyncIterator[Unit]:
        for n, resource in enumerate(
            [encounter("e1", "Patient/p1"), encounter("e2", "Patient/ghost"), patient("p1")]
        ):
            entry = Entry(position=f"line {n + 1}", resource=resource)
            yield Unit(file="download.ndjson", kind="ndjson", entries=[entry])

    importer = Importer(WorldModel(store, WS), source="ehr")
    report = await importer.import_stream(stream(), ImportReport())
    assert created(report) == {"Patient": 1, "Encounter": 1}
    (error,) = report.errors
    assert error.position == "line 2" and "points nowhere" in error.reason


async def test_a_reference_that_never_arrives_fails_at_the_end(
    store: Store, tmp_path: Path
) -> None:
    path = write_ndjson(
        tmp_path / "Encounter.ndjson",
        encounter("e1", "Patient/ghost"),
        encounter("e2", "Patient/p1"),
        patient("p1"),
    )
    report = await run(store, path, chunk=1)
    assert created(report) == {"Patient": 1, "Encounter": 1}
    (error,) = report.errors
    assert error.position == "line 1" and "Patient/ghost" in error.reason
    assert "points nowhere" in error.reason


async def test_every_synthea_bundle_imports_with_matching_counts(store: Store) -> None:
    from tests.synthea import synthea_dir

    files = sorted(synthea_dir().glob("*.json"))
    expected: Counter[str] = Counter()
    shared: dict[str, set[str]] = {"Organization": set(), "Practitioner": set()}
    for path in files:
        for entry in orjson.loads(path.read_bytes())["entry"]:
            r = entry["resource"]
            kind = r["resourceType"]
            if kind in shared:
                shared[kind].add(r["id"])
                continue
            if kind == "Observation":
                codes = {c["code"] for cat in r.get("category", []) for c in cat["coding"]}
                kind = "LabResult" if "laboratory" in codes else "Observation"
            kind = {"MedicationRequest": "MedicationOrder", "Coverage": "InsurancePlan"}.get(
                kind, kind
            )
            expected[kind] += 1
    expected.update({kind: len(ids) for kind, ids in shared.items()})
    report = await run(store, *files)
    assert not report.errors, report.errors[:3]
    assert (await store.counts(WS)).entities == dict(expected)
    again = await run(store, *files)
    assert not again.errors
    # The hospital and practitioner bundles describe the same organizations and practitioners
    # as the patient bundles, with other utilization counts: only those records change.
    changed = {t for t, c in again.counts.items() if c["updated"]}
    assert changed <= {"Organization", "Practitioner"}


async def test_progress_is_reported_after_each_unit_in_order(store: Store, tmp_path: Path) -> None:
    write_ndjson(tmp_path / "Patient.ndjson", *(patient(f"p{i}", f"F{i}") for i in range(3)))
    write_ndjson(tmp_path / "Encounter.ndjson", encounter("e1", "Patient/p0"))
    seen: list[tuple[str, str, int]] = []
    importer = Importer(WorldModel(store, WS), chunk=2)
    report = await importer.import_paths(
        [tmp_path],
        on_unit=lambda unit, so_far: seen.append(
            (Path(unit.file).name, unit.entries[0].position, so_far.resources)
        ),
    )
    assert not report.errors
    assert seen == [
        ("Patient.ndjson", "line 1", 2),
        ("Patient.ndjson", "line 3", 3),
        ("Encounter.ndjson", "line 1", 4),
    ]


async def test_a_patient_resolves_to_the_copy_an_earlier_unit_wrote(
    store: Store, tmp_path: Path
) -> None:
    mrn: dict[str, Any] = {
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": "urn:oid:1.2.3",
                "value": "MRN-42",
            }
        ]
    }
    path = write_ndjson(
        tmp_path / "Patient.ndjson",
        patient("c1", **mrn),
        patient("c2", **mrn),
        encounter("e1", "Patient/c2"),
    )
    # One entry per unit: the second copy is resolved against what the first unit wrote.
    report = await run(store, path, chunk=1)
    assert not report.errors
    assert (await store.counts(WS)).entities == {"Patient": 1, "Encounter": 1}
    first, second = await entity_of(store, "Patient", "c1"), await entity_of(store, "Patient", "c2")
    assert first == second
    enc_type, enc_id = await entity_of(store, "Encounter", "e1")
    state = await store.get_state(WS, enc_type, enc_id)
    assert state is not None and state.values["patient"] == f"Patient/{first[1]}"


async def test_a_later_unit_never_refers_to_a_record_of_a_failed_transaction(
    store: Store, tmp_path: Path
) -> None:
    # The transaction's Patient is given an entity before the Encounter fails it: that entity
    # is never written, so the NDJSON file's reference to the Patient must point nowhere.
    write_json(
        tmp_path / "tx.json",
        bundle("transaction", patient("p1"), encounter("e1", "urn:uuid:nowhere")),
    )
    write_ndjson(tmp_path / "Encounter.ndjson", encounter("e2", "Patient/p1"))
    report = await run(store, tmp_path)
    assert report.total("created") == 0
    assert (await store.counts(WS)).events == 0
    late = [e for e in report.errors if e.file.endswith("Encounter.ndjson")]
    assert [(e.position, "Patient/p1" in e.reason) for e in late] == [("line 1", True)]
    assert "points nowhere" in late[0].reason


class _FailingStore(SQLiteStore):
    """A real SQLite store whose ``append`` fails as a broken database would, after ``good``
    successful appends."""

    good = 1
    appends = 0

    async def append(
        self, workspace: str, items: Sequence[Submission], *, audit: WriteAudit | None = None
    ) -> list[AppendResult]:
        if self.appends >= self.good:
            raise StorageError("append failed: disk I/O error")
        self.appends += 1
        return await super().append(workspace, items, audit=audit)


async def test_a_database_error_while_writing_stops_the_import(tmp_path: Path) -> None:
    notes = (
        {"resourceType": "Basic", "id": f"b{i}", "code": {"text": f"n{i}"}} for i in range(600)
    )
    path = write_ndjson(tmp_path / "Basic.ndjson", *notes)
    store = await _FailingStore.open(tmp_path / "wm.db")
    try:
        progress: list[int] = []
        importer = Importer(WorldModel(store, WS), chunk=200)
        with pytest.raises(StorageError, match="disk I/O error"):
            await importer.import_paths(
                [path], on_unit=lambda _unit, so_far: progress.append(so_far.resources)
            )
        # Nothing of the import is left running behind the error (such as the next unit's
        # reading); the first unit is written and reported, the failing one neither.
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert progress == [200]
        assert (await store.counts(WS)).entities == {"Basic": 200}
    finally:
        await store.close()
