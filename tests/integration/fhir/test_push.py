"""Pushing FHIR files to the real test server (Medplum), and reading them back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from ehrbridge.cli.main import app
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.push import Pusher
from tests.fhir_server import MedplumServer
from tests.paths import FIXTURES

pytestmark = pytest.mark.fhir_server
CLEMENTE = FIXTURES / "synthea" / "Clemente_Kreiger.json"


@pytest.fixture
async def fhir(medplum: MedplumServer) -> AsyncIterator[FhirClient]:
    await medplum.reset()
    async with FhirClient(medplum.base_url) as client:
        yield client


async def count(fhir: FhirClient, resource_type: str) -> int:
    return len([r async for r in fhir.search(resource_type, {"_count": "50"})])


def write_ndjson(path: Path, *resources: dict[str, Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path


async def test_a_transaction_bundle_is_sent_whole(fhir: FhirClient) -> None:
    report = await Pusher(fhir).push_paths([CLEMENTE])
    assert not report.errors
    sent = orjson.loads(CLEMENTE.read_bytes())["entry"]
    assert report.total("created") == len(sent)
    assert await count(fhir, "Observation") == 48
    # The server resolved the bundle's urn:uuid references to the resources it created.
    (patient,) = [r async for r in fhir.search("Patient", {})]
    encounters = [r async for r in fhir.search("Encounter", {})]
    assert len(encounters) == 3
    assert {e["subject"]["reference"] for e in encounters} == {f"Patient/{patient['id']}"}


async def test_ndjson_is_sent_in_batches_of_puts_and_twice_is_still_once(
    fhir: FhirClient, tmp_path: Path
) -> None:
    path = write_ndjson(
        tmp_path / "Patient.ndjson",
        *({"resourceType": "Patient", "id": f"p{i}", "gender": "female"} for i in range(7)),
    )
    for _ in range(2):
        report = await Pusher(fhir, chunk=3).push_paths([path])
        assert not report.errors and report.total("failed") == 0
        assert report.total("created") + report.total("updated") == 7
    assert await count(fhir, "Patient") == 7
    assert (await fhir.read("Patient", "p4"))["gender"] == "female"


async def test_a_batch_keeps_good_entries_and_reports_the_server_reasons(
    fhir: FhirClient, tmp_path: Path
) -> None:
    path = write_ndjson(
        tmp_path / "mixed.ndjson",
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Patient", "id": "p2", "birthDate": "yesterday"},
        {"resourceType": "Observation", "id": "o1"},
    )
    (tmp_path / "mixed.ndjson").write_bytes(path.read_bytes() + b"{broken\n")
    report = await Pusher(fhir).push_paths([path])
    assert report.total("failed") == 3
    reasons = {e.position: e.reason for e in report.errors}
    assert "Patient.birthDate" in reasons["line 2"] and "yesterday" not in reasons["line 2"]
    assert "Observation.status" in reasons["line 3"]
    assert reasons["line 4"].startswith("not JSON")
    assert await count(fhir, "Patient") == 1


async def test_a_chunk_sent_as_a_transaction_fails_whole(fhir: FhirClient, tmp_path: Path) -> None:
    path = write_ndjson(
        tmp_path / "t.ndjson",
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Observation", "id": "o1"},
    )
    report = await Pusher(fhir, mode="transaction").push_paths([path])
    assert report.total("failed") == 2 and report.total("created") == 0
    (error,) = report.errors
    assert error.position == "line 1..line 2" and "HTTP 400" in error.reason
    assert await count(fhir, "Patient") == 0


async def test_collection_references_across_chunks_hold(fhir: FhirClient, tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "id": "p1"}
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "urn:uuid:aaa"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:aaa", "resource": patient},
            {"fullUrl": "urn:uuid:bbb", "resource": encounter},
        ],
    }
    path = tmp_path / "c.json"
    path.write_bytes(orjson.dumps(bundle))
    report = await Pusher(fhir, chunk=1).push_paths([path])
    assert not report.errors
    assert (await fhir.read("Encounter", "e1"))["subject"]["reference"] == "Patient/p1"


def test_the_push_command(medplum: MedplumServer, tmp_path: Path) -> None:
    medplum.reset_sync()
    runner = CliRunner()
    errors = tmp_path / "errors.ndjson"
    bad = write_ndjson(tmp_path / "bad.ndjson", {"resourceType": "Observation", "id": "o1"})
    result = runner.invoke(
        app,
        ["fhir", "push", str(CLEMENTE), str(bad), "--server", medplum.base_url],
        env={"COLUMNS": "150"},
    )
    assert result.exit_code == 1, result.output
    assert re.search(r"Observation\s+│\s+48\s+│\s+0\s+│\s+0\s+│\s+1", result.output), result.output
    assert "bad.ndjson: line 1: HTTP 400" in result.output
    result = runner.invoke(
        app,
        ["fhir", "push", str(bad), "--server", medplum.base_url, "--errors", str(errors)],
    )
    assert result.exit_code == 1 and b"Observation.status" in errors.read_bytes()
    no_token = runner.invoke(
        app,
        ["fhir", "push", str(CLEMENTE), "--server", medplum.base_url, "--auth", "bearer"],
        env={"EHRBRIDGE_FHIR_TOKEN": ""},
    )
    assert no_token.exit_code == 1 and "EHRBRIDGE_FHIR_TOKEN" in no_token.output
