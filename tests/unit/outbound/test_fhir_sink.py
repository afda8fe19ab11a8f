"""The FHIR sink's pure parts: the error table (:func:`sink_error`) and the update that changes
only what the changed fields map to (:func:`changed_resource`)."""

from __future__ import annotations

from typing import Any

import pytest

from ehrbridge.errors import (
    FhirAuthError,
    FhirError,
    FhirNotFound,
    FhirProtocolError,
    FhirUnavailable,
    OutcomeIssue,
)
from ehrbridge.fhir.mapping import to_entity
from ehrbridge.outbound.sinks.fhir_changes import changed_resource
from ehrbridge.outbound.sinks.fhir_errors import sink_error

OP = "update PUT /fhir/R4/Patient/7"
QUOTING = OutcomeIssue(
    severity="error",
    code="invalid",
    text="Invalid date '1980-13-45', the phone +16175550142 of ana@example.org",
    expression=("Patient.birthDate",),
)


def test_a_throttle_is_transient_with_its_retry_after_and_did_not_reach_the_sink() -> None:
    error = sink_error(FhirUnavailable(operation=OP, status=429, retry_after=7.0), write=True)
    assert (error.transient, error.retry_after, error.status) == (True, 7.0, 429)
    assert not error.may_have_reached_sink


def test_a_write_that_may_have_reached_the_server_may_have_reached_the_sink() -> None:
    cut = FhirUnavailable("ReadTimeout", operation=OP, may_have_reached_server=True)
    assert sink_error(cut, write=True).may_have_reached_sink
    # A read that broke off reached nothing worth looking up.
    assert not sink_error(cut, write=False).may_have_reached_sink
    assert sink_error(cut, write=False).transient


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_permanent(status: int) -> None:
    error = sink_error(FhirAuthError(operation=OP, status=status), write=True)
    assert (error.transient, error.may_have_reached_sink, error.status) == (False, False, status)
    assert "refused our credentials" in str(error)


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_a_refusal_is_permanent_with_its_diagnostics_but_no_values(status: int) -> None:
    kind = FhirNotFound if status == 404 else FhirError
    error = sink_error(kind(operation=OP, status=status, issues=(QUOTING,)), write=True)
    assert (error.transient, error.may_have_reached_sink) == (False, False)
    text = str(error)
    assert f"HTTP {status}" in text and "error invalid at Patient.birthDate: Invalid date" in text
    for value in ("1980-13-45", "+16175550142", "ana@example.org", "6175550142"):
        assert value not in text


def test_an_unreadable_answer_to_a_write_may_have_reached_the_sink() -> None:
    accepted = FhirProtocolError("expected FHIR JSON, got text/html", operation=OP, status=200)
    error = sink_error(accepted, write=True)
    assert error.transient and error.may_have_reached_sink
    refused = FhirProtocolError("an error without an OperationOutcome", operation=OP, status=400)
    assert not sink_error(refused, write=True).transient


READ: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "7",
    "meta": {"versionId": "3"},
    "name": [
        {"use": "official", "family": "Rivera", "given": ["Ana"], "period": {"start": "2001"}},
        {"use": "nickname", "given": ["Annie"]},
    ],
    "address": [
        {
            "use": "home",
            "line": ["1 Main St"],
            "city": "Boston",
            "district": "Suffolk",
            "postalCode": "02110",
        },
        {"use": "work", "city": "Cambridge"},
    ],
    "telecom": [{"system": "phone", "value": "+16175550142", "use": "mobile"}],
    "birthDate": "1980-02-03",
}


def test_a_changed_address_field_keeps_the_district_and_the_other_address() -> None:
    new = changed_resource(READ, "Patient", {"address.city": "Somerville"})
    home, work = new["address"]
    assert (home["city"], home["district"]) == ("Somerville", "Suffolk")
    assert home["line"] == ["1 Main St"]
    assert work == READ["address"][1]
    assert {k: v for k, v in new.items() if k != "address"} == {
        k: v for k, v in READ.items() if k != "address"
    }


def test_a_changed_given_name_keeps_the_nickname_and_the_period() -> None:
    new = changed_resource(READ, "Patient", {"name.given": ["Ana", "Maria"]})
    official, nickname = new["name"]
    assert official["given"] == ["Ana", "Maria"] and official["period"] == {"start": "2001"}
    assert nickname == READ["name"][1]


def test_a_removed_field_removes_its_element_and_an_added_one_appends_an_entry() -> None:
    new = changed_resource(READ, "Patient", {"phone.mobile": None, "email": "a@b.example"})
    assert new["telecom"] == [{"system": "email", "value": "a@b.example"}]
    assert "birthDate" not in changed_resource(READ, "Patient", {"birth_date": None})


def test_every_change_reads_back_as_the_fields_written() -> None:
    fields = {"address.city": "Somerville", "gender": "female", "phone.home": "+16175550199"}
    data = to_entity(changed_resource(READ, "Patient", fields)).data
    assert all(data.get(path) == value for path, value in fields.items())
    assert data["name.given"] == ["Ana"] and data["birth_date"] == "1980-02-03"


def test_no_change_is_the_resource_as_read() -> None:
    assert changed_resource(READ, "Patient", {"birth_date": "1980-02-03"}) == READ
