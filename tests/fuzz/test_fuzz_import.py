"""Fuzzing the import (issue 10): valid FHIR shapes, mutated, imported into SQLite and PostgreSQL.

Files are built from real shapes (the Synthea fixtures' resources and the hand-made examples),
put in a transaction, batch or collection Bundle or an NDJSON file, then broken the ways real
files are: wrong types, a NUL, deep nesting, duplicate ids, broken references, huge numbers, a
missing ``resourceType`` or ``id``; and as bytes: truncated, invalid UTF-8, a byte-order mark,
gzipped (whole or cut short). Every file is imported into a store of each backend, and:

- no exception escapes the importer;
- every error names its file and a position (``entry[i]``, ``line n``, ``file``, ...), and never
  a submitted value (a canary planted in mutated values never shows);
- the entries left intact and without references are imported (unless the bytes were broken);
- a transaction Bundle is all or nothing;
- both backends give the same report.

Bounded for CI: a fixed number of examples, a few resources a file, one database per backend for
the whole test (each example in a workspace of its own).
"""

from __future__ import annotations

import copy
import gzip
import itertools
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.report import ImportReport
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store
from tests.conftest import POSTGRES_DSN, new_schema
from tests.paths import FIXTURES

pytestmark = pytest.mark.postgres

CANARY = "PHI-CANARY"
SOURCE = "fuzz"
POSITION = re.compile(r"^(entry\[\d+\]|line \d+|file|transaction|end of file)$")
KINDS = ("transaction", "batch", "collection", "ndjson")
#: Keys whose values are names, not data: messages may show them (ids, references, types).
_NAMING = {"id", "reference", "resourceType", "fullUrl", "url", "system", "code", "use"}


def _seeds() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((FIXTURES / "synthea").glob("*.json")):
        found += [e["resource"] for e in json.loads(path.read_text())["entry"]]
    for path in sorted((FIXTURES / "fhir").glob("*.json")):
        found.append(json.loads(path.read_text()))
    return found


SEEDS = _seeds()


def _leaves(
    node: Any, where: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every scalar under ``node`` with where it is."""
    pairs = node.items() if isinstance(node, dict) else enumerate(node)
    for step, value in pairs:
        if isinstance(value, dict | list):
            yield from _leaves(value, (*where, step))
        else:
            yield (*where, step), value


def _set(node: Any, where: tuple[str | int, ...], value: Any) -> None:
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value


def _has_references(resource: dict[str, Any]) -> bool:
    return any(where[-1] == "reference" for where, _ in _leaves(resource))


@dataclass
class Plan:
    """A file to import, and what is known of its entries."""

    kind: str
    resources: list[dict[str, Any]]
    intact: list[bool]  #: per entry: not mutated
    markers: dict[str, bytes] = field(default_factory=dict)  #: placeholder -> raw JSON
    damaged: bool = False  #: the bytes were broken after serialising
    #: how each entry, then the file, was broken (for a short repr when a case fails)
    how: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        types = [f"{r.get('resourceType')}/{r.get('id')}" for r in self.resources]
        return f"Plan({self.kind}, {types}, {self.how})"


@st.composite
def mutated(
    draw: st.DrawFn, resource: dict[str, Any], earlier: list[dict[str, Any]], n: int
) -> tuple[dict[str, Any], dict[str, bytes], str]:
    """``resource`` mutated one way (or not): the resource, raw JSON to splice in, and how."""
    out = copy.deepcopy(resource)
    how = draw(
        st.sampled_from(
            [
                "none",
                "none",
                "wrong_type",
                "nul",
                "deep",
                "duplicate",
                "reference",
                "huge",
                "no_type",
                "no_id",
            ]
        )
    )
    leaves = [(w, v) for w, v in _leaves(out) if not (set(map(str, w)) & _NAMING)]
    markers: dict[str, bytes] = {}
    if how == "wrong_type" and leaves:
        where, _ = draw(st.sampled_from(leaves))
        _set(
            out,
            where,
            draw(st.sampled_from([12345, True, {"x": CANARY}, [CANARY, 2], None, CANARY, 1.5])),
        )
    elif how == "nul":
        strings = [(w, v) for w, v in leaves if isinstance(v, str)]
        where = draw(st.sampled_from(strings))[0] if strings else ("text",)
        _set(out, where, f"{CANARY}\x00{CANARY}")
    elif how == "deep":
        depth = draw(st.sampled_from([40, 98, 99, 100, 101, 300, 900, 1100]))
        marker = f"@@deep-{n}@@"
        markers[marker] = b"[" * depth + b'"x"' + b"]" * depth
        out["extension"] = marker
    elif how == "duplicate" and earlier:
        twin = draw(st.sampled_from(earlier))
        out["resourceType"] = twin.get("resourceType", "Patient")
        out["id"] = twin.get("id", "x")
        out["text"] = {"status": "generated", "div": f"<div>{CANARY}</div>"}
    elif how == "reference":
        target = draw(st.sampled_from(["Patient/nowhere", "urn:uuid:0000-dead", "#contained", "x"]))
        refs = [w for w, _ in _leaves(out) if w[-1] == "reference"]
        if refs:
            _set(out, draw(st.sampled_from(refs)), target)
        else:
            out["subject"] = {"reference": target}
    elif how == "huge":
        marker = f"@@huge-{n}@@"
        markers[marker] = draw(
            st.sampled_from([b"1" + b"0" * 40, b"1e400", b"-1e999", b"18446744073709551616"])
        )
        out["valueQuantity"] = {"value": marker}
    elif how == "no_type":
        out.pop("resourceType", None)
    elif how == "no_id":
        out.pop("id", None)
    else:
        how = "none"
    return out, markers, how


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    kind = draw(st.sampled_from(KINDS))
    chosen = draw(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=5))
    resources: list[dict[str, Any]] = []
    intact: list[bool] = []
    markers: dict[str, bytes] = {}
    hows: list[str] = []
    for n, seed in enumerate(chosen):
        resource, spliced, how = draw(mutated(seed, resources, n))
        resources.append(resource)
        intact.append(how == "none")
        hows.append(how)
        markers |= spliced
    return Plan(kind=kind, resources=resources, intact=intact, markers=markers, how=hows)


def serialise(plan: Plan) -> bytes:
    if plan.kind == "ndjson":
        raw = b"".join(orjson.dumps(r) + b"\n" for r in plan.resources)
    else:
        entry = [
            {
                "fullUrl": f"urn:uuid:{r.get('id', n)}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r.get('resourceType')}/{r.get('id', n)}"},
            }
            for n, r in enumerate(plan.resources)
        ]
        raw = orjson.dumps({"resourceType": "Bundle", "type": plan.kind, "entry": entry})
    for marker, value in plan.markers.items():
        raw = raw.replace(orjson.dumps(marker), value)
    return raw


@dataclass
class File:
    """A file to import: its plan, name and bytes (shown short)."""

    plan: Plan
    name: str
    raw: bytes

    def __repr__(self) -> str:
        return f"File({self.name}, {self.plan!r}, {len(self.raw)} bytes)"


def _parses(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


@st.composite
def files(draw: st.DrawFn) -> File:
    """A plan, the file's name and its bytes (maybe broken)."""
    plan = draw(plans())
    raw = serialise(plan)
    # A Bundle with a part the JSON parser refuses (nesting past its limit of 1024, a number
    # that is infinite as a double) cannot be read at all: a file error, so its good entries go
    # with it; an NDJSON file loses that line only.
    plan.damaged = plan.kind != "ndjson" and not all(map(_parses, plan.markers.values()))
    name = "fuzz.ndjson" if plan.kind == "ndjson" else "fuzz.json"
    how = draw(st.sampled_from(["none", "none", "bom", "gzip", "truncate", "utf8", "gzip_cut"]))
    if how == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif how == "gzip":
        raw, name = gzip.compress(raw), name + ".gz"
    elif how == "truncate":
        raw, plan.damaged = raw[: draw(st.integers(1, len(raw) - 1))], True
    elif how == "utf8":
        at = draw(st.integers(0, len(raw)))
        raw, plan.damaged = raw[:at] + b"\xff\xc3" + raw[at:], True
    elif how == "gzip_cut":
        packed = gzip.compress(raw)
        raw, plan.damaged = packed[: draw(st.integers(1, len(packed) - 1))], True
        name += ".gz"
    plan.how.append(f"file: {how}")
    return File(plan=plan, name=name, raw=raw)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """A SQLite and a PostgreSQL store, for the whole test (examples use workspaces of their
    own)."""
    from ehrbridge.storage.postgres.worldmodel import PostgresStore

    sqlite = await SQLiteStore.open(tmp_path / "fuzz.db")
    postgres = await PostgresStore.open(POSTGRES_DSN, schema=new_schema())
    try:
        yield sqlite, postgres
    finally:
        await sqlite.close()
        await postgres.drop_schema()
        await postgres.close()


_workspaces = itertools.count()


def _shape(report: ImportReport) -> tuple[Any, ...]:
    counts = {t: dict(c) for t, c in report.counts.items()}
    return counts, [str(e) for e in report.errors], report.events


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(file=files())
async def test_a_mutated_file_imports_the_same_safe_way_on_both_backends(
    stores: tuple[Store, Store], tmp_path: Path, file: File
) -> None:
    plan, name, raw = file.plan, file.name, file.raw
    path = tmp_path / name
    path.write_bytes(raw)
    workspace = f"fuzz-{next(_workspaces)}"
    event(f"{plan.kind}{', damaged' if plan.damaged else ''}")
    reports = []
    for store in stores:
        model = WorldModel(store, workspace)
        report = await Importer(model, source=SOURCE).import_paths([path])  # nothing escapes
        reports.append(report)
        for error in report.errors:
            assert error.file == str(path)
            assert POSITION.match(error.position), error
            assert CANARY not in error.reason and "\x00" not in error.reason, error
        events = (await store.counts(workspace)).events
        assert events == report.events
        if plan.kind == "transaction" and report.errors:
            assert events == 0  # all or nothing
        if not plan.damaged and plan.kind != "transaction":
            records = [(r.get("resourceType"), r.get("id")) for r in plan.resources]
            for resource, ok in zip(plan.resources, plan.intact, strict=True):
                alone = records.count((resource.get("resourceType"), resource.get("id"))) == 1
                if ok and alone and not _has_references(resource) and resource.get("id"):
                    key = RecordKey(
                        data_source=SOURCE,
                        resource_type=resource["resourceType"],
                        external_id=resource["id"],
                    )
                    assert await store.get_record(workspace, key) is not None, (key, report.errors)
                    event("an intact entry was checked")
    event("some entry failed" if reports[0].errors else "every entry imported")
    assert _shape(reports[0]) == _shape(reports[1])
