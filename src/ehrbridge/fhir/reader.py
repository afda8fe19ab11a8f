"""Reading FHIR resources from files: Bundles and NDJSON, plain or gzipped, one by one.

:func:`read_units` turns paths (files or folders) into :class:`Unit` s: the entries that are
imported or pushed together. A transaction Bundle is one atomic unit; a batch, collection or
searchset Bundle and an NDJSON file are cut into chunks whose entries stand alone, so one bad entry
never takes the good ones with it.

Memory stays bounded: NDJSON is read a line at a time (a line longer than
:data:`MAX_LINE_BYTES` is reported and skipped without being held), and a Bundle file, which must
be parsed whole, is refused above :data:`MAX_BUNDLE_BYTES` with a message that says to use NDJSON.
A file that cannot be read at all becomes a unit with a file-level ``error`` and no entries.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson

#: The largest Bundle file read (uncompressed): a Bundle is parsed whole, NDJSON is streamed.
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
#: The longest NDJSON line (one resource) read.
MAX_LINE_BYTES = 64 * 1024 * 1024
#: Entries per unit for non-atomic input.
CHUNK = 500

UnitKind = Literal["transaction", "batch", "collection", "searchset", "ndjson"]
BUNDLE_TYPES: frozenset[str] = frozenset({"transaction", "batch", "collection", "searchset"})
_NDJSON_SUFFIXES = (".ndjson", ".jsonl")
_JSON_SUFFIXES = (".json",)


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One resource read from a file, or the reason it could not be read."""

    position: str  #: where it is, for messages: ``entry[12]`` or ``line 34``
    resource: dict[str, Any] | None = None
    full_url: str | None = None  #: the Bundle entry's ``fullUrl``
    request: dict[str, Any] | None = None  #: the Bundle entry's ``request`` (method, url, ...)
    error: str | None = None  #: why the entry is unusable (then ``resource`` is None)


@dataclass(frozen=True, kw_only=True)
class Unit:
    """Entries imported (or pushed) together."""

    file: str  #: the file, as given, for messages
    kind: UnitKind
    entries: Sequence[Entry] = ()
    error: str | None = None  #: the whole file is unusable
    done: float = 1.0  #: the fraction of the file read once this unit is done, for progress
    #: every ``fullUrl`` of the Bundle -> (resource type, id), for references across chunks
    full_urls: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def atomic(self) -> bool:
        """All entries or none (a transaction Bundle)."""
        return self.kind == "transaction"


def entry_id(entry: Entry) -> str:
    """The resource's id, or for a resource created by the Bundle (no id yet) the last part of
    its ``fullUrl`` (``urn:uuid:<uuid>`` -> ``<uuid>``), so a re-import finds the same record."""
    assert entry.resource is not None
    rid = entry.resource.get("id")
    if isinstance(rid, str) and rid:
        return rid
    if entry.full_url:
        return entry.full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    return ""


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files named, and the Bundle/NDJSON files under folders named (sorted, recursive)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and is_fhir_file(p))
        else:
            out.append(path)
    return out


def is_fhir_file(path: Path) -> bool:
    """A Bundle or NDJSON file by name: ``.json``, ``.ndjson``, ``.jsonl``, optionally ``.gz``."""
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(_NDJSON_SUFFIXES + _JSON_SUFFIXES)


def is_ndjson(path: Path) -> bool:
    """NDJSON by name: ``.ndjson`` or ``.jsonl``, optionally ``.gz``."""
    return path.name.lower().removesuffix(".gz").endswith(_NDJSON_SUFFIXES)


def read_units(paths: Iterable[Path], *, chunk: int = CHUNK) -> Iterator[Unit]:
    """The units of every file under ``paths``, file by file, in order."""
    for path in expand(paths):
        if is_ndjson(path):
            yield from read_ndjson(path, chunk=chunk)
        else:
            yield from read_bundle(path, chunk=chunk)


def _open(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """``(stream, raw)``: the decompressed stream, and the file under it (for positions)."""
    raw: IO[bytes] = path.open("rb")
    if path.name.lower().endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw
    return raw, raw


def read_ndjson(path: Path, *, chunk: int = CHUNK) -> Iterator[Unit]:
    """One unit per ``chunk`` lines; blank lines are skipped, bad lines become entry errors."""
    name = str(path)
    try:
        stream, raw = _open(path)
        size = max(path.stat().st_size, 1)
    except OSError as exc:
        yield Unit(file=name, kind="ndjson", error=f"cannot read: {_reason(exc)}")
        return
    entries: list[Entry] = []
    try:
        with stream, raw:
            for number, line in _lines(stream):
                entry = _ndjson_entry(number, line)
                if entry is not None:
                    entries.append(entry)
                if len(entries) >= chunk:
                    yield Unit(file=name, kind="ndjson", entries=entries, done=raw.tell() / size)
                    entries = []
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        entries.append(Entry(position="end of file", error=f"cannot read further: {exc}"))
    if entries:
        yield Unit(file=name, kind="ndjson", entries=entries)


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line)``; ``None`` for a line over :data:`MAX_LINE_BYTES`, skipped whole."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(io.DEFAULT_BUFFER_SIZE * 16)) and not rest.endswith(
                b"\n"
            ):
                pass
            yield number, None
            continue
        yield number, line


def _ndjson_entry(number: int, line: bytes | None) -> Entry | None:
    position = f"line {number}"
    if line is None:
        return Entry(position=position, error=f"longer than {MAX_LINE_BYTES} bytes")
    if not line.strip():
        return None
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Entry(position=position, error=f"not JSON: {exc}")
    return _resource_entry(position, resource, None)


def _resource_entry(position: str, resource: object, full_url: str | None) -> Entry:
    if not isinstance(resource, dict):
        return Entry(position=position, error="not a JSON object")
    if not isinstance(resource.get("resourceType"), str) or not resource["resourceType"]:
        return Entry(position=position, error="resourceType: missing")
    return Entry(position=position, resource=resource, full_url=full_url)


def read_bundle(path: Path, *, chunk: int = CHUNK) -> Iterator[Unit]:
    """A transaction Bundle as one unit; other Bundles in chunks of ``chunk`` entries."""
    name = str(path)
    try:
        stream, handle = _open(path)
        with stream, handle:
            raw = stream.read(MAX_BUNDLE_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        yield Unit(file=name, kind="batch", error=f"cannot read: {_reason(exc)}")
        return
    if len(raw) > MAX_BUNDLE_BYTES:
        yield Unit(
            file=name,
            kind="batch",
            error=f"a Bundle over {MAX_BUNDLE_BYTES // 2**20} MB is not read whole; "
            "export it as NDJSON (one resource per line), which is streamed",
        )
        return
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        yield Unit(file=name, kind="batch", error=f"not JSON: {exc}")
        return
    del raw
    problem = _bundle_problem(doc)
    if problem:
        yield Unit(file=name, kind="batch", error=problem)
        return
    kind: UnitKind = doc["type"]
    read = (_bundle_entry(i, e) for i, e in enumerate(doc.get("entry") or []))
    entries = [e for e in read if e is not None]
    full_urls = {
        e.full_url: (str(e.resource["resourceType"]), entry_id(e))
        for e in entries
        if e.full_url and e.resource is not None
    }
    if kind == "transaction":
        yield Unit(file=name, kind=kind, entries=entries, full_urls=full_urls)
        return
    for start in range(0, len(entries), chunk):
        yield Unit(
            file=name,
            kind=kind,
            entries=entries[start : start + chunk],
            full_urls=full_urls,
            done=min(start + chunk, len(entries)) / len(entries),
        )


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def _bundle_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "not a FHIR resource (expected a JSON object)"
    kind = doc.get("resourceType")
    if kind != "Bundle":
        what = f"a {kind}" if isinstance(kind, str) and kind else "no resourceType"
        return f"resourceType: expected a Bundle, found {what} (single resources go in NDJSON)"
    if doc.get("type") not in BUNDLE_TYPES:
        return f"type: a {doc.get('type')!r} Bundle is not imported; expected one of " + ", ".join(
            sorted(BUNDLE_TYPES)
        )
    if not isinstance(doc.get("entry", []), list):
        return "entry: expected a list"
    return None


def _bundle_entry(index: int, entry: object) -> Entry | None:
    position = f"entry[{index}]"
    if not isinstance(entry, dict):
        return Entry(position=position, error="not a JSON object")
    search = entry.get("search")
    if isinstance(search, dict) and search.get("mode") == "outcome":
        return None  # a searchset's OperationOutcome is about the search, not data
    full_url = entry.get("fullUrl")
    full_url = full_url if isinstance(full_url, str) and full_url else None
    if "resource" not in entry:
        request = entry.get("request")
        method = request.get("method") if isinstance(request, dict) else None
        why = f" (a {method} is not imported)" if method in ("DELETE", "GET", "HEAD") else ""
        return Entry(position=position, full_url=full_url, error=f"resource: missing{why}")
    request = entry.get("request")
    found = _resource_entry(position, entry["resource"], full_url)
    if isinstance(request, dict) and found.resource is not None:
        return Entry(position=position, resource=found.resource, full_url=full_url, request=request)
    return found
