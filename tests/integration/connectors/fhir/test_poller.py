"""The FHIR poller against a real FHIR server (Medplum): cursor, overlap, re-polls, failures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from ehrbridge.audit import WriteAudit
from ehrbridge.connectors.fhir.poller import FhirPoller
from ehrbridge.connectors.source import DataSourceConfig, ResourceConfig
from ehrbridge.errors import StorageError
from ehrbridge.fhir.client import FhirClient
from ehrbridge.runner.polling import poll_once
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.planner import AppendResult, Submission
from ehrbridge.worldmodel.store import Store
from tests.fhir_server import MedplumServer

pytestmark = pytest.mark.fhir_server
PATIENTS = [("Santos", "Ana", "555-0101"), ("Okafor", "Chidi", "555-0102"), ("Lee", "Min", "")]


class FailingAppends:
    """The real store, except that the next ``failures`` appends fail like a lost database."""

    def __init__(self, store: Store, failures: int = 0) -> None:
        self.store = store
        self.failures = failures

    async def append(
        self, workspace: str, items: Sequence[Submission], *, audit: WriteAudit | None = None
    ) -> list[AppendResult]:
        if self.failures:
            self.failures -= 1
            raise StorageError("append failed: OperationalError")
        return await self.store.append(workspace, items, audit=audit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def patient(family: str, given: str, phone: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "birthDate": "1980-01-02",
        "gender": "female",
    }
    if phone:
        resource["telecom"] = [{"system": "phone", "value": f"617-{phone}"}]
    return resource


def source(base_url: str) -> DataSourceConfig:
    return DataSourceConfig(id="ehr", kind="fhir", base_url=base_url, overlap=timedelta(minutes=5))


PATIENT = ResourceConfig(type="Patient", every=timedelta(seconds=30), page_size=2)


async def test_poll_imports_then_repolls_write_nothing_and_updates_arrive(
    medplum: MedplumServer, store: Store, backend: Backend
) -> None:
    await medplum.reset()
    cursors = backend.runner
    async with FhirClient(medplum.base_url) as fhir:
        created = [(await fhir.create(patient(*p))).resource for p in PATIENTS]
        poller = FhirPoller(WorldModel(store, "clinic"), cursors)
        try:
            first = await poll_once(
                poller,
                source(medplum.base_url),
                PATIENT,
                workspace=poller.model.workspace,
                clock=poller.clock,
            )
            assert first.ok, first.error
            assert first.fetched == 3 and first.events > 0 and first.unchanged == 0
            assert (await store.counts("clinic")).entities == {"Patient": 3}
            cursor = await cursors.get_cursor("clinic", "ehr", "Patient")
            newest = max(str(r["meta"]["lastUpdated"]) for r in created if r)
            assert cursor is not None and cursor[:23] == newest[:23]

            # Inside the overlap window everything is read again: same versions, so nothing is
            # mapped or written.
            again = await poll_once(
                poller,
                source(medplum.base_url),
                PATIENT,
                workspace=poller.model.workspace,
                clock=poller.clock,
            )
            assert again.ok and again.fetched == 3 and again.unchanged == 3 and again.events == 0

            changed = dict(created[0] or {})
            changed["birthDate"] = "1981-03-04"
            await fhir.update(changed)
            update = await poll_once(
                poller,
                source(medplum.base_url),
                PATIENT,
                workspace=poller.model.workspace,
                clock=poller.clock,
            )
            assert update.ok and update.events > 0 and update.unchanged == 2
            moved = await cursors.get_cursor("clinic", "ehr", "Patient")
            assert moved is not None and moved > cursor
        finally:
            await poller.aclose()


async def test_the_cursor_never_passes_data_that_was_not_stored(
    medplum: MedplumServer, store: Store, backend: Backend
) -> None:
    await medplum.reset()
    cursors = backend.runner
    failing = FailingAppends(store, failures=1)
    async with FhirClient(medplum.base_url) as fhir:
        for p in PATIENTS:
            await fhir.create(patient(*p))
        poller = FhirPoller(WorldModel(failing, "clinic"), cursors)
        try:
            failed = await poll_once(
                poller,
                source(medplum.base_url),
                PATIENT,
                workspace=poller.model.workspace,
                clock=poller.clock,
            )
            assert not failed.ok and failed.error == "StorageError: append failed: OperationalError"
            assert await cursors.get_cursor("clinic", "ehr", "Patient") is None
            assert (await store.counts("clinic")).entities == {}

            retried = await poll_once(
                poller,
                source(medplum.base_url),
                PATIENT,
                workspace=poller.model.workspace,
                clock=poller.clock,
            )
            assert retried.ok and retried.fetched == 3 and retried.events > 0
            assert (await store.counts("clinic")).entities == {"Patient": 3}
            assert await cursors.get_cursor("clinic", "ehr", "Patient") is not None
        finally:
            await poller.aclose()


async def test_an_entry_that_fails_holds_the_cursor_before_it(
    medplum: MedplumServer, store: Store, backend: Backend
) -> None:
    await medplum.reset()
    cursors = backend.runner
    encounters = ResourceConfig(type="Encounter", every=timedelta(seconds=30))
    async with FhirClient(medplum.base_url) as fhir:
        first = (await fhir.create(patient(*PATIENTS[0]))).resource
        assert first is not None
        await fhir.create(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{first['id']}"},
            }
        )
        poller = FhirPoller(WorldModel(store, "clinic"), cursors)
        try:
            # The Encounter's Patient has not been polled yet: the entry fails, the cursor stays.
            early = await poll_once(
                poller,
                source(medplum.base_url),
                encounters,
                workspace=poller.model.workspace,
                clock=poller.clock,
            )
            assert not early.ok and early.error is not None and "1 entries" in early.error
            assert await cursors.get_cursor("clinic", "ehr", "Encounter") is None
            assert (
                await poll_once(
                    poller,
                    source(medplum.base_url),
                    PATIENT,
                    workspace=poller.model.workspace,
                    clock=poller.clock,
                )
            ).ok
            # The failed entry's version was not remembered: it is imported now, not skipped.
            late = await poll_once(
                poller,
                source(medplum.base_url),
                encounters,
                workspace=poller.model.workspace,
                clock=poller.clock,
            )
            assert late.ok and late.events > 0 and late.unchanged == 0
            assert await cursors.get_cursor("clinic", "ehr", "Encounter") is not None
        finally:
            await poller.aclose()
