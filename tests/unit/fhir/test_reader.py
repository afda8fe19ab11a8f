"""Reading Bundles and NDJSON files into units (ehrbridge.fhir.reader)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrbridge.fhir import reader
from ehrbridge.fhir.reader import Unit, entry_id, expand, read_units
from ehrbridge.worldmodel.canonical import MAX_DEPTH


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


# --- what the world model cannot store, BOMs, positions, duplicates (issue 10) -----------------


def nested(depth: int) -> Any:
    """``depth`` levels of arrays, the outermost counted."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def basic(bid: str, extension: Any) -> dict[str, Any]:
    return {"resourceType": "Basic", "id": bid, "extension": extension}


def entries(*paths: Path, chunk: int = 500) -> list[reader.Entry]:
    return [e for u in units(*paths, chunk=chunk) for e in u.entries]


@pytest.mark.parametrize("depth", [300, 500, 1000])
def test_a_resource_nested_too_deep_is_that_entrys_error(tmp_path: Path, depth: int) -> None:
    # the resource is level 1, its extension list level 2; written by hand (orjson stops at 254)
    doc = orjson.dumps(bundle("collection", patient("p1"), basic("b1", "DEEP")))
    path = tmp_path / "deep.json"
    path.write_bytes(doc.replace(b'"DEEP"', b"[" * depth + b"]" * depth))
    (good, deep) = entries(path)
    assert good.resource == patient("p1")
    assert deep.resource is None and deep.position == "entry[1]"
    assert deep.error == (
        "Basic.extension" + "[0]" * 11 + f"...: nested deeper than {reader.MAX_DEPTH} levels "
        "(the most a resource may nest)"
    )
    assert deep.resource_type == "Basic"


@pytest.mark.parametrize("wide", [0, 300])  # few brackets, and many (measured by orjson)
@pytest.mark.parametrize("kind", ["ndjson", "bundle"])
def test_the_deepest_resource_allowed_is_read(tmp_path: Path, wide: int, kind: str) -> None:
    width = [{"text": str(i)} for i in range(wide)]
    ok = {**basic("ok", nested(reader.MAX_DEPTH - 1)), "note": width}
    over = {**basic("over", nested(reader.MAX_DEPTH)), "note": width}
    if kind == "ndjson":
        path = tmp_path / "x.ndjson"
        path.write_bytes(orjson.dumps(ok) + b"\n" + orjson.dumps(over) + b"\n")
    else:
        path = write(tmp_path / "x.json", bundle("batch", ok, over))
    (first, second) = entries(path)
    assert first.resource == ok
    assert second.error is not None and "nested deeper" in second.error
    assert reader.MAX_DEPTH + 8 <= MAX_DEPTH  # room for the levels mapping and storing add


def test_nesting_past_the_json_parsers_limit_fails_the_line_or_the_bundle(tmp_path: Path) -> None:
    too_deep = b'{"resourceType": "Basic", "id": "b", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    path = tmp_path / "x.ndjson"
    path.write_bytes(too_deep + b"\n" + orjson.dumps(patient("p")) + b"\n")
    (bad, good) = entries(path)
    assert bad.error is not None and bad.error.startswith("not JSON") and bad.position == "line 1"
    assert good.resource == patient("p")


def test_a_nul_in_any_text_is_that_entrys_error_naming_where(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(
        b'{"resourceType": "Patient", "id": "a", "name": [{"family": "Nul\\u0000Name"}]}\n'
        b'{"resourceType": "Patient", "id": "b", "name": [{"fam\\u0000ily": "x"}]}\n'
        b'{"resourceType": "Patient", "id": "c", "name": [{"family": "back\\\\u0000slash"}]}\n'
    )
    (value, key, text) = entries(path)
    assert value.error == "Patient.name[0].family: a NUL character (U+0000) is not allowed"
    assert key.error == "Patient.name[0][?]: a key: a NUL character (U+0000) is not allowed"
    assert "Nul" not in (value.error or "")
    assert text.resource is not None  # a backslash before u0000 is text, not a NUL
    assert text.resource["name"][0]["family"] == "back\\u0000slash"


@pytest.mark.parametrize("gz", [False, True])
def test_a_byte_order_mark_is_skipped_in_ndjson_and_bundles(tmp_path: Path, gz: bool) -> None:
    bom = b"\xef\xbb\xbf"
    pack = gzip.compress if gz else bytes
    suffix = ".gz" if gz else ""
    ndjson = tmp_path / f"a.ndjson{suffix}"
    ndjson.write_bytes(pack(bom + orjson.dumps(patient("1")) + b"\n" + orjson.dumps(patient("2"))))
    doc = tmp_path / f"b.json{suffix}"
    doc.write_bytes(pack(bom + orjson.dumps(bundle("collection", patient("3")))))
    got = entries(ndjson, doc)
    assert [e.resource for e in got] == [patient("1"), patient("2"), patient("3")]


LINES = st.lists(st.sampled_from(["good", "bad", "blank", "spaces", "crlf"]), max_size=12)


@settings(max_examples=60)
@given(layout=LINES, chunk=st.integers(min_value=1, max_value=4))
def test_positions_are_1_based_file_lines_blank_lines_counted(
    tmp_path_factory: pytest.TempPathFactory, layout: list[str], chunk: int
) -> None:
    text = {
        "good": b'{"resourceType": "Patient", "id": "p"}\n',
        "bad": b'{"resourceType": "Patient", bad}\n',
        "blank": b"\n",
        "spaces": b"   \t \n",
        "crlf": b'{"resourceType": "Patient", "id": "q"}\r\n',
    }
    path = tmp_path_factory.mktemp("lines") / "x.ndjson"
    path.write_bytes(b"".join(text[kind] for kind in layout))
    got = entries(path, chunk=chunk)
    expected = [f"line {n}" for n, kind in enumerate(layout, 1) if kind in ("good", "bad", "crlf")]
    assert [e.position for e in got] == expected
    for entry in got:
        if entry.error is not None:  # orjson's own "line 1" would contradict the position
            assert (
                entry.error == "not JSON at column 29: unexpected character, expected a string key"
            )


def test_a_record_twice_with_other_content_fails_naming_the_first(tmp_path: Path) -> None:
    a, b = {**patient("x"), "gender": "male"}, {**patient("x"), "gender": "female"}
    doc = bundle("batch", a, patient("y"), dict(a), b)
    got = entries(write(tmp_path / "batch.json", doc), chunk=1)
    assert [e.resource for e in got[:3]] == [a, patient("y"), a]  # identical: read, imported once
    assert got[3].resource is None and got[3].resource_type == "Patient"
    assert got[3].error == (
        "Patient/x is also at entry[0], with different content: only the first copy is taken"
    )
    transaction = entries(write(tmp_path / "tx.json", bundle("transaction", a, b)))
    assert transaction[1].error == (
        "Patient/x is also at entry[0], with different content: a transaction may hold a "
        "record once"
    )


def test_ndjson_duplicates_are_found_across_chunks(tmp_path: Path) -> None:
    a, b = {**patient("x"), "gender": "male"}, {**patient("x"), "gender": "female"}
    path = tmp_path / "x.ndjson"
    lines = [a, patient("1"), patient("2"), a, b]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    got = entries(path, chunk=2)
    assert [e.error for e in got[:4]] == [None] * 4
    assert got[4].error == (
        "Patient/x is also at line 1, with different content: only the first copy is taken"
    )


def test_the_resource_limit_leaves_room_for_what_mapping_and_storing_add() -> None:
    # a generic entity's data is {"resource": ...}; the stores' ledger wraps a value in ~4 more
    assert reader.MAX_DEPTH + 8 <= MAX_DEPTH
