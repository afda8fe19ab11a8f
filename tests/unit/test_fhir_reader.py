"""Reading Bundles and NDJSON files into units (ehrbridge.fhir.reader)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from ehrbridge.fhir import reader
from ehrbridge.fhir.reader import Unit, entry_id, expand, read_units


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid}


def bundle(kind: str, *resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
        **extra,
    }


def write(path: Path, doc: Any) -> Path:
    path.write_bytes(orjson.dumps(doc))
    return path


def units(*paths: Path, chunk: int = 500) -> list[Unit]:
    return list(read_units(paths, chunk=chunk))


def test_ndjson_is_cut_into_chunks_and_skips_blank_lines(tmp_path: Path) -> None:
    lines = [orjson.dumps(patient(str(i))) for i in range(5)]
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(b"\n".join(lines[:2]) + b"\n\n" + b"\n".join(lines[2:]) + b"\n")
    got = units(path, chunk=2)
    assert [len(u.entries) for u in got] == [2, 2, 1]
    assert [e.resource["id"] for u in got for e in u.entries if e.resource] == list("01234")
    assert got[-1].entries[0].position == "line 6"
    assert all(u.kind == "ndjson" and not u.atomic for u in got)


def test_a_bad_ndjson_line_is_an_entry_error_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(b'{"resourceType": "Patient", "id": "1"}\n{"trunc\n[1, 2]\n{"id": "9"}\n')
    (unit,) = units(path)
    assert [e.position for e in unit.entries] == ["line 1", "line 2", "line 3", "line 4"]
    assert unit.entries[0].resource == patient("1")
    assert unit.entries[1].error is not None and unit.entries[1].error.startswith("not JSON")
    assert unit.entries[2].error == "not a JSON object"
    assert unit.entries[3].error == "resourceType: missing"


def test_an_overlong_ndjson_line_is_reported_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 100)
    path = tmp_path / "x.ndjson"
    huge = orjson.dumps({"resourceType": "Patient", "id": "2", "text": "x" * 1000})
    path.write_bytes(
        orjson.dumps(patient("1")) + b"\n" + huge + b"\n" + b'{"resourceType":"Patient","id":"3"}\n'
    )
    (unit,) = units(path)
    assert unit.entries[0].resource == patient("1")
    assert unit.entries[1].position == "line 2"
    assert unit.entries[1].error == "longer than 100 bytes"
    assert unit.entries[2].resource == patient("3")


def test_gzipped_files_are_read(tmp_path: Path) -> None:
    nd = tmp_path / "Patient.ndjson.gz"
    nd.write_bytes(gzip.compress(orjson.dumps(patient("1")) + b"\n"))
    bu = tmp_path / "b.json.gz"
    bu.write_bytes(gzip.compress(orjson.dumps(bundle("collection", patient("2")))))
    got = units(nd, bu)
    assert [e.resource for u in got for e in u.entries] == [patient("1"), patient("2")]


def test_a_truncated_gzip_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson.gz"
    whole = gzip.compress(b"".join(orjson.dumps(patient(str(i))) + b"\n" for i in range(50)))
    path.write_bytes(whole[: len(whole) // 2])
    got = units(path)
    errors = [e.error for u in got for e in u.entries if e.error]
    assert len(errors) == 1 and errors[0].startswith("cannot read further")


def test_a_transaction_bundle_is_one_atomic_unit(tmp_path: Path) -> None:
    doc = bundle("transaction", *(patient(str(i)) for i in range(7)))
    (unit,) = units(write(tmp_path / "t.json", doc), chunk=2)
    assert unit.atomic and len(unit.entries) == 7
    assert unit.full_urls["urn:uuid:3"] == ("Patient", "3")


def test_other_bundles_are_chunked_and_share_their_full_urls(tmp_path: Path) -> None:
    doc = bundle("batch", *(patient(str(i)) for i in range(5)))
    got = units(write(tmp_path / "b.json", doc), chunk=2)
    assert [len(u.entries) for u in got] == [2, 2, 1]
    assert all(len(u.full_urls) == 5 and not u.atomic for u in got)
    assert [u.done for u in got] == [0.4, 0.8, 1.0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>oops</html>", "not JSON"),
        (orjson.dumps(patient("1")), "resourceType: expected a Bundle, found a Patient"),
        (b"[]", "not a FHIR resource"),
        (orjson.dumps(bundle("document")), "type: a 'document' Bundle is not imported"),
        (orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": {}}), "entry: expected"),
    ],
)
def test_a_file_that_is_not_an_importable_bundle_is_one_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    (unit,) = units(path)
    assert unit.file == str(path)
    assert unit.error is not None and unit.error.startswith(message)
    assert not unit.entries


def test_a_missing_file_is_an_error_unit(tmp_path: Path) -> None:
    (unit,) = units(tmp_path / "nowhere.json")
    assert unit.error is not None and unit.error.startswith("cannot read")


def test_a_bundle_over_the_limit_is_refused_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "MAX_BUNDLE_BYTES", 50)
    (unit,) = units(write(tmp_path / "big.json", bundle("batch", patient("1"), patient("2"))))
    assert unit.error is not None and "NDJSON" in unit.error


def test_bundle_entries_without_a_resource_and_outcomes(tmp_path: Path) -> None:
    doc = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": patient("1"), "search": {"mode": "match"}},
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
            {"fullUrl": "urn:uuid:x", "request": {"method": "DELETE", "url": "Patient/2"}},
            "nonsense",
        ],
    }
    (unit,) = units(write(tmp_path / "s.json", doc))
    assert [(e.position, e.error) for e in unit.entries] == [
        ("entry[0]", None),
        ("entry[2]", "resource: missing (a DELETE is not imported)"),
        ("entry[3]", "not a JSON object"),
    ]


def test_entry_id_falls_back_to_the_full_url(tmp_path: Path) -> None:
    doc = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": "urn:uuid:abc", "resource": {"resourceType": "Patient"}}],
    }
    (unit,) = units(write(tmp_path / "t.json", doc))
    assert entry_id(unit.entries[0]) == "abc"
    assert unit.full_urls == {"urn:uuid:abc": ("Patient", "abc")}


def test_folders_expand_to_their_fhir_files_sorted(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("sub/b.ndjson", "a.json", "sub/c.ndjson.gz", "notes.txt", "d.jsonl"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in expand([tmp_path])] == [
        "a.json",
        "d.jsonl",
        "sub/b.ndjson",
        "sub/c.ndjson.gz",
    ]
