"""Patient search against the world model, on every backend, and the query's FHIR shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ehrbridge.errors import InvalidInput
from ehrbridge.worldmodel.events import Observation, RecordKey
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.queries import PatientQuery, search_patients
from ehrbridge.worldmodel.store import Store

WS = "clinic"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
PEOPLE: dict[str, dict[str, Any]] = {
    "maria": {
        "name.family": "Santos",
        "name.given": ["María", "Luisa"],
        "birth_date": "1984-03-12",
        "gender": "female",
        "phone.mobile": "+16175550142",
        "mrn": "MRN-1001",
        "identifiers": ["urn:oid:1.2.3|MRN-1001", "http://hl7.org/fhir/sid/us-ssn|999-11-2222"],
        "address.line": ["12 Oak Street"],
        "address.city": "Cambridge",
        "address.postal_code": "02139",
    },
    "mario": {
        "name.family": "Santos",
        "name.given": ["Mario"],
        "birth_date": "1984-07-01",
        "gender": "male",
        "phone.home": "+16175550143",
        "address.city": "Boston",
    },
    "lucia": {
        "name.family": "Okafor",
        "name.given": ["Lucia"],
        "birth_date": "1990-01-05",
        "gender": "female",
        "phone.mobile": "+16175550142",
        "address.city": "Cambridge",
    },
}


async def seed(store: Store) -> tuple[WorldModel, dict[str, str]]:
    model = WorldModel(store, WS)
    results = await model.ingest(
        [
            Observation(
                workspace=WS,
                record=RecordKey(data_source="ehr", resource_type="Patient", external_id=name),
                entity_type="Patient",
                data=data,
                effective_at=T0,
            )
            for name, data in PEOPLE.items()
        ],
        resolve=False,
    )
    return model, {name: r.result.entity_id for name, r in zip(PEOPLE, results, strict=True)}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (PatientQuery(name="santos"), {"maria", "mario"}),
        (PatientQuery(name="Maria Santos"), {"maria"}),
        (PatientQuery(name="MARÍA"), {"maria"}),
        (PatientQuery(name="Santos", gender="male"), {"mario"}),
        (PatientQuery(name="Santos", birth_date="1984"), {"maria", "mario"}),
        (PatientQuery(name="Santos", birth_date="1984-07"), {"mario"}),
        (PatientQuery(birth_date="1990-01-05"), {"lucia"}),
        (PatientQuery(identifier="MRN-1001"), {"maria"}),
        (PatientQuery(identifier="urn:oid:1.2.3|MRN-1001"), {"maria"}),
        (PatientQuery(identifier="urn:oid:9.9|MRN-1001"), set()),
        (PatientQuery(phone="(617) 555-0142"), {"maria", "lucia"}),
        (PatientQuery(phone="617.555.0142", address="cambridge"), {"maria", "lucia"}),
        (PatientQuery(phone="+16175550142", address="12 oak"), {"maria"}),
        (PatientQuery(name="santos", address="0213"), {"maria"}),
        (PatientQuery(name="Santos", phone="6175550143"), {"mario"}),
        (PatientQuery(name="Nobody"), set()),
    ],
)
async def test_search_patients(store: Store, query: PatientQuery, expected: set[str]) -> None:
    model, ids = await seed(store)
    found = await search_patients(model, query)
    assert {next(n for n, i in ids.items() if i == s.entity_id) for s in found} == expected


async def test_search_returns_the_survivor_of_a_merge(store: Store) -> None:
    model, ids = await seed(store)
    before = await search_patients(model, PatientQuery(phone="+16175550142"))
    assert {s.entity_id for s in before} == {ids["maria"], ids["lucia"]}
    await model.merge("Patient", ids["maria"], ids["lucia"], operator="op")
    after = await search_patients(model, PatientQuery(phone="+16175550142"))
    assert [s.entity_id for s in after] == [ids["maria"]]


async def test_search_is_scoped_to_the_workspace(store: Store) -> None:
    await seed(store)
    other = WorldModel(store, "elsewhere")
    assert await search_patients(other, PatientQuery(name="Santos")) == []


async def test_a_search_needs_an_indexed_criterion(store: Store) -> None:
    model, _ = await seed(store)
    with pytest.raises(InvalidInput, match="needs a name"):
        await search_patients(model, PatientQuery(gender="female"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one criterion"),
        ({"name": " "}, "name: expected a non-empty string"),
        ({"birth_date": "12/03/1984"}, "birth_date: expected"),
        ({"gender": "F"}, "gender: expected one of"),
        ({"phone": "call me"}, "phone: not a phone number"),
    ],
)
def test_bad_queries_are_refused_with_the_criterion_named(
    kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        PatientQuery(**kwargs)


def test_the_same_query_as_fhir_search_parameters() -> None:
    query = PatientQuery(
        name="Santos",
        birth_date="1984-03-12",
        identifier="urn:oid:1.2.3|MRN-1001",
        phone="617 555 0142",
        gender="female",
        address="Cambridge",
    )
    assert query.fhir_params() == {
        "name": "Santos",
        "birthdate": "1984-03-12",
        "identifier": "urn:oid:1.2.3|MRN-1001",
        "phone": "617 555 0142",
        "gender": "female",
        "address": "Cambridge",
    }
