"""Reading FHIR resources from files: Bundles and NDJSON, plain or gzipped, one by one.

:func:`read_units` turns paths (files or folders) into :class:`Unit` s: the entries that are
imported or pushed together. A transaction Bundle is one atomic unit; a batch, collection or
searchset Bundle and an NDJSON file are cut into chunks whose entries stand alone, so one bad entry
never takes the good ones with it.

Memory stays bounded: NDJSON is read a line at a time (a line longer than
:data:`MAX_LINE_BYTES` is reported and skipped without being held), and a Bundle file, which must
be parsed whole, is refused above :data:`MAX_BUNDLE_BYTES` with a message that says to use NDJSON.
A file that cannot be read at all becomes a unit with a file-level ``error`` and no entries.

What the world model cannot store is refused here, as that entry's error naming where: a resource
nested deeper than :data:`MAX_DEPTH`, a NUL character (``\\u0000``) or a lone surrogate in any
text. A UTF-8 byte-order mark at the start of a file is skipped. Positions are 1-based:
``entry[0]`` is a Bundle's first entry, ``line 3`` the file's third line (blank lines counted).
Each NDJSON line is parsed by :func:`ndjson_entry`, which the Bulk Data client shares for its
downloads.

A file holds each record (resource type and id) once: a later entry with the same record and the
same content is imported once, quietly; with different content it fails, naming the first copy's
position (so which one is right is never chosen silently). The first copy is taken (imported if
it is valid), except in a transaction, which then fails whole (FHIR: a transaction's entries may
not overlap).
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson

from ehrbridge.worldmodel.canonical import Location, path_text, text_problem

#: The deepest a resource may nest (objects and arrays, the resource itself being level 1): a
#: few levels under what the world model stores (:data:`ehrbridge.worldmodel.canonical.MAX_DEPTH`),
#: for the levels mapping adds. FHIR resources nest about 10 levels; a Questionnaire's items a few
#: more each.
MAX_DEPTH = 100
#: The deepest orjson writes (it refuses deeper documents); see :func:`_shallow`.
_ORJSON_DEPTH = 254
#: Records remembered per NDJSON file to find duplicates; past this, the rest of the file is not
#: checked (about 150 bytes each).
MAX_TRACKED = 1_000_000
#: The largest Bundle file read (uncompressed): a Bundle is parsed whole, NDJSON is streamed.
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
#: The longest NDJSON line (one resource) read.
MAX_LINE_BYTES = 64 * 1024 * 1024
#: Entries per unit for non-atomic input.
CHUNK = 500

UnitKind = Literal["transaction", "batch", "collection", "searchset", "ndjson"]
BUNDLE_TYPES: frozenset[str] = frozenset({"transaction", "batch", "collection", "searchset"})
_NDJSON_SUFFIXES = (".ndjson", ".jsonl")
_BOM = b"\xef\xbb\xbf"
#: orjson's position at the end of its messages: about the line parsed, not the file's line
_JSON_AT = re.compile(r": line (\d+) column (\d+) \(char \d+\)$")
_JSON_SUFFIXES = (".json",)


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One resource read from a file, or the reason it could not be read."""

    position: str  #: where it is, for messages: ``entry[12]`` or ``line 34``
    resource: dict[str, Any] | None = None
    full_url: str | None = None  #: the Bundle entry's ``fullUrl``
    request: dict[str, Any] | None = None  #: the Bundle entry's ``request`` (method, url, ...)
    error: str | None = None  #: why the entry is unusable (then ``resource`` is None)
    resource_type: str = ""  #: for an unusable entry, its resource's type when known


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
    seen = _Seen()
    try:
        with stream, raw:
            for number, line in _lines(stream):
                entry = ndjson_entry(number, line, limit=MAX_LINE_BYTES)
                if entry is not None:
                    entries.append(seen.check(entry))
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
        if number == 1:
            line = line.removeprefix(_BOM)
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(io.DEFAULT_BUFFER_SIZE * 16)) and not rest.endswith(
                b"\n"
            ):
                pass
            yield number, None
            continue
        yield number, line


def ndjson_entry(number: int, line: bytes | None, *, limit: int) -> Entry | None:
    """NDJSON line ``number`` (1-based, blank lines counted; a file's byte-order mark already
    cut) as an entry at ``line <number>``: the resource, or why it is unusable (not JSON, where
    and why; not a JSON object; no ``resourceType``; what :func:`resource_entry` refuses). None
    for a blank line; ``line`` None stands for a line over ``limit`` bytes that the caller
    skipped without holding it.

    The one line parser of NDJSON input: files (:func:`read_ndjson`, which then checks for a
    record given twice) and Bulk Data downloads (:meth:`ehrbridge.fhir.bulk.BulkClient.units`,
    which does not: the importer deduplicates an export). Each puts its entries in units named
    by the file or the URL path, so an error reads ``<file>: line 3: not JSON at column 2: ...``.
    """
    position = f"line {number}"
    if line is None:
        return Entry(position=position, error=f"longer than {limit} bytes")
    if not line.strip():
        return None
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Entry(position=position, error=_not_json(exc, line=False))
    return resource_entry(position, resource, raw=line)


def _not_json(exc: orjson.JSONDecodeError, *, line: bool) -> str:
    """orjson's message, its position made the file's: for an NDJSON line (``line=False``) the
    column only, since orjson counts lines of the text it was given, which is one line."""
    message = str(exc)
    if "not valid UTF-8" in message:
        return "not JSON: not UTF-8 text"
    at = _JSON_AT.search(message)
    if at is None or line:
        return f"not JSON: {message}"
    return f"not JSON at column {at.group(2)}: {message[: at.start()]}"


def resource_entry(
    position: str, resource: object, full_url: str | None = None, *, raw: bytes | None = None
) -> Entry:
    """The entry of a parsed resource, or why it is unusable (not an object, no resourceType,
    nested deeper than :data:`MAX_DEPTH`, a NUL or lone surrogate in a text), naming where;
    ``raw`` is its JSON text when the caller has it (an NDJSON line). Every reader of FHIR input
    makes its entries here (files, Bulk Data downloads, search pages)."""
    if not isinstance(resource, dict):
        return Entry(position=position, error="not a JSON object")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return Entry(position=position, error="resourceType: missing")
    if raw is None:
        try:
            raw = orjson.dumps(resource)
        except TypeError:  # nested past orjson's limit, or a lone surrogate: _locate says which
            raw = None
    problem = _unstorable(resource, raw)
    if problem is not None:
        where, what = problem
        known = resource_type if text_problem(resource_type) is None else ""
        at = path_text(where)
        return Entry(
            position=position,
            error=f"{known or 'resource'}{'' if at[:1] == '[' else '.'}{at}: {what}",
            resource_type=known,
        )
    return Entry(position=position, resource=resource, full_url=full_url)


def _shallow(resource: dict[str, Any], raw: bytes) -> bool:
    """True when ``resource`` (written as ``raw``) does not nest deeper than :data:`MAX_DEPTH`,
    measured in C.

    Most resources have fewer brackets than that in their JSON. For the others orjson measures:
    it refuses to write anything nested deeper than :data:`_ORJSON_DEPTH`, so the resource inside
    ``_ORJSON_DEPTH - MAX_DEPTH`` arrays is written exactly when it nests at most
    :data:`MAX_DEPTH` (the tests hold both edges, so a change of orjson's limit shows). A walk in
    Python costs about ten times as much on the large resources (claims, reports)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return True
    wrapped: Any = resource
    for _ in range(_ORJSON_DEPTH - MAX_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except TypeError:
        return False
    return True


def _unstorable(resource: dict[str, Any], raw: bytes | None) -> tuple[Location, str] | None:
    """Where ``resource`` nests deeper than :data:`MAX_DEPTH` or holds a text no store can (a
    NUL, a lone surrogate), and what; None when it is fine. Only a resource whose JSON could not
    be written, is deep, or has a ``\\u0000`` (a NUL, or a backslash before ``u0000``) is
    walked."""
    texts = raw is None or b"\\u0000" in raw
    if raw is not None and not texts and _shallow(resource, raw):
        return None
    return _locate(resource, 1, texts)


def _locate(node: Any, depth: int, texts: bool) -> tuple[Location, str] | None:
    """The first problem under ``node`` in document order (recursion stops at the limit)."""
    if depth > MAX_DEPTH:
        return (), f"nested deeper than {MAX_DEPTH} levels (the most a resource may nest)"
    pairs = node.items() if isinstance(node, dict) else enumerate(node)
    for step, value in pairs:
        if texts and isinstance(step, str) and (problem := text_problem(step)) is not None:
            return (step,), f"a key: {problem}"
        if isinstance(value, str):
            if texts and (problem := text_problem(value)) is not None:
                return (step,), problem
        elif isinstance(value, dict | list) and (found := _locate(value, depth + 1, texts)):
            return (step, *found[0]), found[1]
    return None


class _Seen:
    """The records of one file so far, to find a record given twice (see the module).

    A Bundle is in memory whole, so its copies are compared as parsed, only when a record comes
    again. An NDJSON file is not: each line leaves a digest of its resource (its JSON with sorted
    keys), at most :data:`MAX_TRACKED` of them."""

    def __init__(self, *, bundle: bool = False, transaction: bool = False) -> None:
        self.bundle = bundle
        self.transaction = transaction
        #: hash of (type, id) -> (position, the resource (Bundle) or its digest (NDJSON))
        self._seen: dict[int, tuple[str, object]] = {}

    def check(self, entry: Entry) -> Entry:
        """``entry``, or an error entry when its record came earlier with other content."""
        if entry.resource is None or len(self._seen) >= MAX_TRACKED:
            return entry
        record = (str(entry.resource["resourceType"]), entry_id(entry))
        if not record[1]:
            return entry
        content: object = (
            entry.resource
            if self.bundle
            else hash(orjson.dumps(entry.resource, option=orjson.OPT_SORT_KEYS))
        )
        first = self._seen.setdefault(hash(record), (entry.position, content))
        if first[0] == entry.position or first[1] == content:
            return entry
        rule = (
            "a transaction may hold a record once"
            if self.transaction
            else "only the first copy is taken"
        )
        return Entry(
            position=entry.position,
            full_url=entry.full_url,
            error=f"{record[0]}/{record[1]} is also at {first[0]}, with different content: {rule}",
            resource_type=record[0],
        )


def read_bundle(path: Path, *, chunk: int = CHUNK) -> Iterator[Unit]:
    """A transaction Bundle as one unit; other Bundles in chunks of ``chunk`` entries."""
    name = str(path)
    try:
        stream, handle = _open(path)
        with stream, handle:
            raw = stream.read(MAX_BUNDLE_BYTES + 1).removeprefix(_BOM)
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
        yield Unit(file=name, kind="batch", error=_not_json(exc, line=True))
        return
    del raw
    problem = _bundle_problem(doc)
    if problem:
        yield Unit(file=name, kind="batch", error=problem)
        return
    kind: UnitKind = doc["type"]
    seen = _Seen(bundle=True, transaction=kind == "transaction")
    read = (_bundle_entry(i, e) for i, e in enumerate(doc.get("entry") or []))
    entries = [seen.check(e) for e in read if e is not None]
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
    found = resource_entry(position, entry["resource"], full_url)
    if isinstance(request, dict) and found.resource is not None:
        return Entry(position=position, resource=found.resource, full_url=full_url, request=request)
    return found
