"""One patient query, two places: the real FHIR server and the world model agree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehrbridge.cli.main import app
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.patients import search_fhir_patients
from ehrbridge.fhir.push import Pusher
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.queries import PatientQuery, search_patients
from ehrbridge.worldmodel.store import Store
from tests.fhir_server import MedplumServer
from tests.paths import FIXTURES

pytestmark = pytest.mark.fhir_server
BUNDLES = [
    FIXTURES / "synthea" / "Clemente_Kreiger.json",
    FIXTURES / "synthea" / "Luigi_Wiegand.json",
]
QUERIES = [
    PatientQuery(name="Kreiger"),
    PatientQuery(name="Luigi"),
    PatientQuery(birth_date="1984-07-02"),
    PatientQuery(name="Wiegand", birth_date="2020"),
    PatientQuery(name="Kreiger", gender="female"),
    PatientQuery(phone="555-655-8611"),
    PatientQuery(identifier="http://hl7.org/fhir/sid/us-ssn|999-48-8934"),
    PatientQuery(name="Kreiger", address="Wilmington"),
    PatientQuery(name="Nobody"),
]


@pytest.fixture
async def fhir(medplum: MedplumServer) -> AsyncIterator[FhirClient]:
    await medplum.reset()
    async with FhirClient(medplum.base_url) as client:
        report = await Pusher(client).push_paths(BUNDLES)
        assert not report.errors
        yield client


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: str(q.fhir_params()))
async def test_the_same_query_finds_the_same_patients_on_a_server_and_in_the_world_model(
    fhir: FhirClient, store: Store, query: PatientQuery
) -> None:
    model = WorldModel(store, "clinic")
    assert not (await Importer(model).import_paths(BUNDLES)).errors
    on_server = {
        (r["name"][0]["family"], r["birthDate"]) for r in await search_fhir_patients(fhir, query)
    }
    in_model = {
        (s.values["name.family"], s.values["birth_date"])
        for s in await search_patients(model, query)
    }
    assert on_server == in_model


def test_the_patients_command_searches_either(fhir: FhirClient, tmp_path: Path) -> None:
    runner = CliRunner()
    db = f"sqlite:///{tmp_path}/cli.db"
    assert runner.invoke(app, ["import", *map(str, BUNDLES), "--db", db]).exit_code == 0
    local = runner.invoke(app, ["patients", "--name", "Kreiger", "--db", db])
    remote = runner.invoke(app, ["patients", "--name", "Kreiger", "--server", fhir.base_url])
    for result in (local, remote):
        assert result.exit_code == 0, result.output
        assert "Clemente Kreiger" in result.output and "1984-07-02" in result.output
        assert "Wiegand" not in result.output
    bad = runner.invoke(app, ["patients", "--birth-date", "07/02/1984"])
    assert bad.exit_code == 2 and "birth_date: expected" in bad.output
