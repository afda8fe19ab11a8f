"""Importing files a hostile or careless user makes, on every backend (issue 10, defects 4, 5, 9
and 11): a NUL in a string, deep nesting, a record twice in one file, byte-order marks. Each bad
entry fails alone naming its file and position, the good ones are imported, and SQLite and
PostgreSQL give the same report.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.reader import MAX_DEPTH
from ehrbridge.fhir.report import ImportReport
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store

WS = "clinic"


def patient(pid: str, family: str = "Reyes", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}], **extra}


def bundle(kind: str, *resources: dict[str, Any]) -> bytes:
    entry = [
        {"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"}}
        for r in resources
    ]
    return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": entry})


async def run(store: Store, *paths: Path) -> ImportReport:
    return await Importer(WorldModel(store, WS), source="ehr").import_paths(paths)


def errors(report: ImportReport) -> list[str]:
    return [f"{Path(e.file).name}: {e.position}: {e.reason}" for e in report.errors]


async def family(store: Store, pid: str) -> Any:
    key = RecordKey(data_source="ehr", resource_type="Patient", external_id=pid)
    record = await store.get_record(WS, key)
    assert record is not None
    state = await store.get_state(WS, record.entity_type, record.entity_id)
    assert state is not None
    return state.values.get("name.family")


async def test_a_nul_fails_its_line_and_the_good_line_is_imported(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "nul.ndjson"
    path.write_bytes(
        b'{"resourceType": "Patient", "id": "a", "name": [{"family": "Nul\\u0000Name"}]}\n'
        + orjson.dumps(patient("b", "Good"))
        + b"\n"
    )
    report = await run(store, path)
    assert errors(report) == [
        "nul.ndjson: line 1: Patient.name[0].family: a NUL character (U+0000) is not allowed"
    ]
    assert report.counts["Patient"] == {"created": 1, "failed": 1}
    assert await family(store, "b") == "Good"


async def test_a_nul_in_a_transaction_fails_it_whole(store: Store, tmp_path: Path) -> None:
    doc = bundle("transaction", patient("a", "Nul\x00Name"), patient("b", "Good"))
    path = tmp_path / "tx.json"
    path.write_bytes(doc)
    report = await run(store, path)
    assert errors(report)[0] == (
        "tx.json: entry[0]: Patient.name[0].family: a NUL character (U+0000) is not allowed"
    )
    assert report.counts["Patient"] == {"failed": 2}
    assert (
        await store.get_record(
            WS, RecordKey(data_source="ehr", resource_type="Patient", external_id="b")
        )
        is None
    )


@pytest.mark.parametrize("depth", [300, 500])
async def test_deep_nesting_fails_its_entry_and_the_good_patient_is_imported(
    store: Store, tmp_path: Path, depth: int
) -> None:
    # the file: a 4.4 KB collection Bundle, one good Patient, a Basic nested deep
    basic = {"resourceType": "Basic", "id": "b1", "code": {"text": "x"}, "extension": "DEEP"}
    doc = bundle("collection", patient("p1"), basic)
    path = tmp_path / "deep.json"
    path.write_bytes(doc.replace(b'"DEEP"', b"[" * depth + b"]" * depth))
    report = await run(store, path)
    assert errors(report) == [
        "deep.json: entry[1]: Basic.extension"
        + "[0]" * 11
        + f"...: nested deeper than {MAX_DEPTH} levels (the most a resource may nest)"
    ]
    assert report.counts == {"Patient": {"created": 1}, "Basic": {"failed": 1}}
    assert await family(store, "p1") == "Reyes"


async def test_the_deepest_resource_allowed_is_imported_and_imported_again_unchanged(
    store: Store, tmp_path: Path
) -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH - 2):  # the resource and its extension list are two levels
        deep = [deep]
    resource = {"resourceType": "Basic", "id": "b1", "code": {"text": "x"}, "extension": [deep]}
    path = tmp_path / "Basic.ndjson"
    path.write_bytes(orjson.dumps(resource) + b"\n")
    assert (await run(store, path)).counts == {"Basic": {"created": 1}}
    assert (await run(store, path)).counts == {"Basic": {"unchanged": 1}}


@pytest.mark.parametrize("kind", ["batch", "collection"])
async def test_a_record_twice_with_other_content_keeps_the_first_and_names_both(
    store: Store, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "dup.json"
    path.write_bytes(bundle(kind, patient("x", "First"), patient("y"), patient("x", "Second")))
    report = await run(store, path)
    assert errors(report) == [
        "dup.json: entry[2]: Patient/x is also at entry[0], with different content: only the "
        "first copy is taken"
    ]
    assert report.counts["Patient"] == {"created": 2, "failed": 1}
    assert await family(store, "x") == "First"


async def test_identical_copies_are_imported_once_quietly(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_bytes(bundle("batch", patient("x"), patient("x")))
    report = await run(store, path)
    assert report.errors == []
    assert report.counts["Patient"] == {"created": 1, "unchanged": 1}
    assert report.events == 1


async def test_a_transaction_with_a_record_twice_imports_nothing(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "tx.json"
    path.write_bytes(bundle("transaction", patient("x", "First"), patient("x", "Second")))
    report = await run(store, path)
    assert errors(report) == [
        "tx.json: entry[1]: Patient/x is also at entry[0], with different content: a "
        "transaction may hold a record once",
        "tx.json: transaction: not imported: 1 of 2 entries have errors, and a transaction is "
        "all or nothing",
    ]
    assert report.events == 0


@pytest.mark.parametrize("gz", [False, True])
async def test_files_with_a_byte_order_mark_import(store: Store, tmp_path: Path, gz: bool) -> None:
    bom = b"\xef\xbb\xbf"
    pack = gzip.compress if gz else bytes
    suffix = ".gz" if gz else ""
    (tmp_path / f"a.ndjson{suffix}").write_bytes(pack(bom + orjson.dumps(patient("1")) + b"\n"))
    (tmp_path / f"b.json{suffix}").write_bytes(pack(bom + bundle("batch", patient("2"))))
    report = await run(store, tmp_path)
    assert report.errors == []
    assert report.counts["Patient"] == {"created": 2}
