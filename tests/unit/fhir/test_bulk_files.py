"""Bulk Data files as the client streams them, from an in-process file server that sends its body
in awkward pieces: lines cut across chunks, blank and bad lines, an overlong line, error files,
credentials only when the manifest asks for them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import httpx
import orjson
import pytest

from ehrbridge.fhir import bulk
from ehrbridge.fhir.auth import BearerAuth
from ehrbridge.fhir.bulk import BulkClient, Manifest, OutputFile
from ehrbridge.fhir.reader import Unit, read_ndjson

BASE = "http://ehr.test/fhir"


def patient(i: int) -> bytes:
    return orjson.dumps({"resourceType": "Patient", "id": f"p{i}", "name": [{"family": "F"}]})


class FileServer:
    """Serves each file's body in chunks of ``piece`` bytes; records the Authorization header."""

    def __init__(self, files: dict[str, bytes], piece: int = 7) -> None:
        self.files = files
        self.piece = piece
        self.authorization: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.authorization.append(request.headers.get("authorization"))
        body = self.files.get(request.url.path)
        if body is None:
            return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})
        return httpx.Response(
            200,
            headers={"Content-Type": "application/fhir+ndjson"},
            stream=Pieces(body, self.piece),
        )


class Pieces(httpx.AsyncByteStream):
    def __init__(self, body: bytes, piece: int) -> None:
        self.body, self.piece = body, piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), self.piece):
            yield self.body[start : start + self.piece]


def manifest(urls: Iterable[str], *, token: bool = False, errors: Iterable[str] = ()) -> Manifest:
    return Manifest(
        transaction_time="2026-11-24T10:00:00Z",
        request=f"{BASE}/$export",
        requires_access_token=token,
        output=tuple(OutputFile(type="Patient", url=f"{BASE}{u}") for u in urls),
        error=tuple(OutputFile(type="OperationOutcome", url=f"{BASE}{u}") for u in errors),
    )


async def read(server: FileServer, m: Manifest, chunk: int = 2) -> list[Unit]:
    async with BulkClient(BASE, transport=httpx.MockTransport(server), auth=BearerAuth("t")) as c:
        return [u async for u in c.units(m.output[0], m, chunk=chunk)]


async def test_lines_cut_across_chunks_blank_and_bad_lines() -> None:
    body = patient(1) + b"\n\n" + patient(2) + b"\r\n{not json\n[1]\n" + patient(3)
    server = FileServer({"/fhir/f/1.ndjson": body}, piece=5)
    units = await read(server, manifest(["/f/1.ndjson"]))
    entries = [e for u in units for e in u.entries]
    assert [e.position for e in entries] == ["line 1", "line 3", "line 4", "line 5", "line 6"]
    assert [e.resource["id"] if e.resource else None for e in entries] == [
        "p1",
        "p2",
        None,
        None,
        "p3",
    ]
    assert entries[2].error is not None and entries[2].error.startswith("not JSON")
    assert entries[3].error == "not a JSON object"
    assert [len(u.entries) for u in units] == [2, 2, 1]
    assert units[0].file == "/fhir/f/1.ndjson"


@pytest.mark.parametrize("piece", [7, 1000])
async def test_an_overlong_line_is_an_entry_error_and_the_rest_is_read(
    monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    monkeypatch.setattr(bulk, "MAX_LINE_BYTES", 80)
    body = patient(1) + b"\n" + b"x" * 200 + b"\n" + patient(2) + b"\n" + b"y" * 81
    server = FileServer({"/fhir/f.ndjson": body}, piece=piece)
    units = await read(server, manifest(["/f.ndjson"]), chunk=10)
    entries = units[0].entries
    assert [e.position for e in entries] == ["line 1", "line 2", "line 3", "line 4"]
    assert [e.error for e in entries] == [
        None,
        "longer than 80 bytes",
        None,
        "longer than 80 bytes",
    ]
    assert entries[2].resource is not None and entries[2].resource["id"] == "p2"


@pytest.mark.parametrize(("token", "sent"), [(False, None), (True, "Bearer t")])
async def test_credentials_go_to_files_only_when_the_manifest_asks(
    token: bool, sent: str | None
) -> None:
    server = FileServer({"/fhir/f.ndjson": patient(1)})
    await read(server, manifest(["/f.ndjson"], token=token))
    assert server.authorization == [sent]


async def test_error_files_are_read_as_issues() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "details": {"text": "Patient/9"}}],
    }
    server = FileServer({"/fhir/e.ndjson": orjson.dumps(outcome) + b"\n"})
    m = manifest([], errors=["/e.ndjson"])
    async with BulkClient(BASE, transport=httpx.MockTransport(server)) as client:
        assert await client.error_issues(m) == ["error processing: Patient/9"]


async def test_a_bom_nul_and_deep_nesting_are_read_as_files_are() -> None:
    nul = b'{"resourceType": "Patient", "id": "n", "name": [{"family": "a\\u0000b"}]}'
    deep = b'{"resourceType": "Basic", "id": "d", "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    body = b"\xef\xbb\xbf" + patient(1) + b"\n" + nul + b"\n" + deep + b"\n" + patient(2)
    server = FileServer({"/fhir/f/1.ndjson": body}, piece=9)
    entries = [e for u in await read(server, manifest(["/f/1.ndjson"])) for e in u.entries]
    assert [e.resource["id"] if e.resource else e.error for e in entries] == [
        "p1",
        "Patient.name[0].family: a NUL character (U+0000) is not allowed",
        "Basic.x"
        + "[0]" * 11
        + "...: nested deeper than 100 levels (the most a resource may nest)",
        "p2",
    ]


async def test_a_bad_line_reads_as_in_a_file_and_a_download_keeps_a_record_given_twice(
    tmp_path: Path,
) -> None:
    changed = orjson.dumps({"resourceType": "Patient", "id": "p1", "name": [{"family": "G"}]})
    body = b"\xef\xbb\xbf" + patient(1) + b'\n{"a" 1}\n[1]\n{"id": "x"}\n\xff\n' + changed + b"\n"
    server = FileServer({"/fhir/f/1.ndjson": body})
    downloaded = [e for u in await read(server, manifest(["/f/1.ndjson"])) for e in u.entries]
    path = tmp_path / "1.ndjson"
    path.write_bytes(body)
    read_from_file = [e for u in read_ndjson(path) for e in u.entries]
    # the same line parser: the same positions and the same wording for every bad line
    assert [(e.position, e.error) for e in downloaded[:-1]] == [
        (e.position, e.error) for e in read_from_file[:-1]
    ]
    assert [e.error for e in downloaded[1:5]] == [
        "not JSON at column 6: unexpected character, expected ':' after key",
        "not a JSON object",
        "resourceType: missing",
        "not JSON: not UTF-8 text",
    ]
    # a file takes a record once; a download keeps both copies (the importer deduplicates it)
    assert read_from_file[-1].error is not None and "also at line 1" in read_from_file[-1].error
    assert downloaded[-1].error is None and downloaded[-1].resource == orjson.loads(changed)
