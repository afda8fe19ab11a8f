"""The workflow step kinds of the FHIR sink (``create``, ``notify``) against the sandbox EHR and
the Medplum server (docs/workflows.md): each is a conditional create on its own ehrbridge
identifier, so sending it again finds the first, and an in-doubt lookup finds it by that
identifier. Items are built directly, with payloads as :mod:`ehrbridge.outbound.steps` resolves
them (references already the sink's records)."""

from __future__ import annotations

from typing import Any

import pytest

from ehrbridge.errors import SinkError
from ehrbridge.fhir.client import FhirClient
from ehrbridge.outbound.outbox import OutboxItem
from ehrbridge.outbound.sinks import IDENTIFIER_SYSTEM
from ehrbridge.outbound.sinks.fhir import FhirSink, sink_client
from ehrbridge.testing import outbox_item
from tests.fhir_server import MedplumServer
from tests.sandbox_server import SandboxServer


def step(
    operation: str, entity_type: str, payload: dict[str, Any], *, key: str, index: int
) -> OutboxItem:
    return outbox_item(
        id=f"item-{index}",
        key=key,
        lane="Appointment/a1",
        position=index,
        entity_type=entity_type,
        entity_id="a1",
        operation=operation,
        payload=payload,
        workflow="book/a1",
        step=index,
    )


def appointment(patient: str, practitioner: str) -> OutboxItem:
    values = {
        "status": "booked",
        "patient": patient,
        "practitioner": practitioner,
        "start": "2026-12-10T09:30:00+00:00",
        "end": "2026-12-10T10:00:00+00:00",
    }
    return step("create", "Appointment", {"fields": values, "entity": values}, key="k-a", index=0)


def notice(about: str, recipient: str, subject: str | None) -> OutboxItem:
    payload = {"about": about, "recipient": recipient, "subject": subject}
    return step("notify", "Communication", payload, key="k-n", index=2)


async def holding(fhir: FhirClient, resource_type: str, key: str) -> list[dict[str, Any]]:
    query = {"identifier": f"{IDENTIFIER_SYSTEM}|{key}"}
    return [r async for r in fhir.search(resource_type, query)]


async def booked_and_notified(base_url: str) -> None:
    """Create the Appointment and the notice, each twice; one of each at the server."""
    sink = FhirSink("ehr", sink_client("ehr", base_url))
    async with FhirClient(base_url) as fhir:
        patient = await fhir.create({"resourceType": "Patient", "gender": "female"})
        doctor = await fhir.create({"resourceType": "Practitioner", "gender": "male"})
        patient_ref, doctor_ref = f"Patient/{patient.id}", f"Practitioner/{doctor.id}"
        try:
            first = await sink.send(appointment(patient_ref, doctor_ref))
            again = await sink.send(appointment(patient_ref, doctor_ref))
            assert first.created and not again.created and again.ref == first.ref
            assert first.ref.startswith("Appointment/")
            sent = notice(first.ref, doctor_ref, patient_ref)
            told = await sink.send(sent)
            assert told.ref.startswith("Communication/") and told.record is not None
            assert (await sink.send(sent)).ref == told.ref
            found = await sink.lookup(sent)
            assert found is not None and found.ref == told.ref
            assert await sink.read_back(sent)
            (made,) = await holding(fhir, "Appointment", "k-a")
            actors = {p["actor"]["reference"] for p in made["participant"]}
            assert actors == {patient_ref, doctor_ref}
            (said,) = await holding(fhir, "Communication", "k-n")
            assert said["about"] == [{"reference": first.ref}]
            assert said["recipient"] == [{"reference": doctor_ref}]
            assert said["subject"] == {"reference": patient_ref}
        finally:
            await sink.aclose()


async def test_the_sandbox_takes_each_step_once(sandbox: SandboxServer) -> None:
    await sandbox.reset()
    await booked_and_notified(sandbox.base_url)


async def test_a_notice_not_sent_is_not_found(sandbox: SandboxServer) -> None:
    await sandbox.reset()
    sink = FhirSink("ehr", sink_client("ehr", sandbox.base_url))
    try:
        sent = notice("Appointment/1", "Practitioner/2", None)
        assert await sink.lookup(sent) is None
        assert not await sink.read_back(sent)
    finally:
        await sink.aclose()


async def test_a_notice_without_its_references_is_refused_for_good(
    sandbox: SandboxServer,
) -> None:
    sink = FhirSink("ehr", sink_client("ehr", sandbox.base_url))
    try:
        with pytest.raises(SinkError, match="recipient must be a FHIR reference") as caught:
            await sink.send(notice("Appointment/1", "Dr Osei", None))
        assert not caught.value.transient
        with pytest.raises(SinkError, match="a create has no ref"):
            await sink.send(
                step(
                    "create",
                    "Appointment",
                    {"fields": {"status": "booked"}, "ref": "Appointment/9"},
                    key="k",
                    index=0,
                )
            )
    finally:
        await sink.aclose()


@pytest.fixture
async def medplum_url(medplum: MedplumServer) -> str:
    await medplum.reset()
    return medplum.base_url


@pytest.mark.fhir_server
async def test_medplum_takes_each_step_once(medplum_url: str) -> None:
    await booked_and_notified(medplum_url)
