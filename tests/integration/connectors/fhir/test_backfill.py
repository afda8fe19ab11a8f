"""Backfills through Bulk Data ``$export`` from the sandbox on a real socket, into the world model
on SQLite and PostgreSQL: import, poll cursors, resume per file after a crash, ``_since``, a job
the server forgot, files whose entries fail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from ehrbridge.budget import BudgetRegistry
from ehrbridge.connectors.fhir.backfill import EXPORT_CURSOR, Backfill, BackfillState, ExportFirst
from ehrbridge.connectors.fhir.poller import FhirPoller
from ehrbridge.connectors.source import DataSourceConfig, ResourceConfig
from ehrbridge.errors import EhrbridgeError
from ehrbridge.fhir.bulk import BulkClient, OutputFile, PollPolicy
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.http import Resource
from ehrbridge.runner.polling import poll_once
from ehrbridge.sandbox.export import FILE_SIZE
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store
from tests.sandbox_server import SandboxServer

TYPES = ("Organization", "Patient", "Encounter", "Observation")


class Crash(Exception):
    """Stands for the process dying."""


async def no_sleep(delay: float) -> None:
    pass


def source(server: SandboxServer) -> DataSourceConfig:
    every = timedelta(minutes=5)
    return DataSourceConfig(
        id="ehr",
        kind="fhir",
        base_url=server.base_url,
        resources=tuple(ResourceConfig(type=t, every=every) for t in TYPES),
    )


def backfill(backend: Backend, workspace: str = "clinic", **options: Any) -> Backfill:
    return Backfill(
        WorldModel(backend.worldmodel, workspace),
        backend.runner,
        client_for=lambda s: BulkClient(s.base_url, sleep=no_sleep, poll=PollPolicy()),
        **options,
    )


@pytest.fixture
async def server(sandbox: SandboxServer) -> AsyncIterator[SandboxServer]:
    await sandbox.reset()
    sandbox.app.exports.file_size = 2
    yield sandbox
    sandbox.app.exports.file_size = FILE_SIZE


async def load(server: SandboxServer, patients: int = 3) -> list[str]:
    """An Organization, Patients, an Encounter and an Observation each; the Patient ids."""
    ids = []
    async with FhirClient(server.base_url) as fhir:
        org = await fhir.create({"resourceType": "Organization", "name": "Clinic"})
        for i in range(patients):
            created = await fhir.create(
                {
                    "resourceType": "Patient",
                    "name": [{"family": f"Family{i}", "given": [f"Given{i}"]}],
                    "birthDate": f"19{50 + i}-01-02",
                    "gender": "female",
                    "managingOrganization": {"reference": f"Organization/{org.id}"},
                }
            )
            pid = str(created.id)
            ids.append(pid)
            enc = await fhir.create(
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": f"Patient/{pid}"},
                }
            )
            await fhir.create(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "Heart rate"},
                    "subject": {"reference": f"Patient/{pid}"},
                    "encounter": {"reference": f"Encounter/{enc.id}"},
                    "valueQuantity": {"value": 60 + i, "unit": "/min"},
                }
            )
    return ids


async def test_a_backfill_imports_every_file_and_hands_over_to_polling(
    server: SandboxServer, store: Store, backend: Backend
) -> None:
    patients = await load(server)
    cursors = backend.runner
    result = await backfill(backend).run(source(server))
    assert result.complete and result.error is None, result.error
    # 1 Organization, 3 Patients, 3 Encounters, 3 Observations at two per file: 7 files.
    assert result.files == result.imported_files == 7 and result.read == 10
    assert result.report.total("created") == 10 and result.report.events > 0
    entities = (await store.counts("clinic")).entities
    assert sum(entities.values()) == 10 and entities["Patient"] == 3

    assert result.transaction_time is not None
    when = datetime.fromisoformat(result.transaction_time)
    for resource_type in TYPES:
        cursor = await cursors.get_cursor("clinic", "ehr", resource_type)
        assert cursor is not None and datetime.fromisoformat(cursor) == when
    state = BackfillState.loads(await cursors.get_cursor("clinic", "ehr", EXPORT_CURSOR))
    assert state.job is None
    assert state.since == dict.fromkeys(TYPES, result.transaction_time)
    assert server.app.exports.jobs() == []  # deleted on the server once done

    # The backfill remembered each record's version, as a poll does.
    versions = await cursors.known_versions("clinic", "ehr", "Patient", patients)
    assert sorted(versions) == sorted(patients)
    assert all(v.startswith("v:") for v in versions.values())
    # Polling goes on from the transactionTime: everything it reads again (the overlap) is
    # skipped by version, before mapping.
    poller = FhirPoller(WorldModel(store, "clinic"), cursors)
    try:
        outcome = await poll_once(
            poller,
            source(server),
            source(server).resources[1],
            workspace=poller.model.workspace,
            clock=poller.clock,
        )
    finally:
        await poller.aclose()
    assert outcome.ok and outcome.events == 0
    assert outcome.fetched == outcome.unchanged == 3


async def test_a_poll_cursor_already_past_the_transaction_time_stays(
    server: SandboxServer, backend: Backend
) -> None:
    await load(server, patients=1)
    cursors = backend.runner
    later = "2999-01-01T00:00:00.000000+00:00"
    await cursors.set_cursor("clinic", "ehr", "Patient", later)
    result = await backfill(backend).run(source(server))
    assert result.complete
    assert await cursors.get_cursor("clinic", "ehr", "Patient") == later
    assert "Patient" not in result.cursors and "Encounter" in result.cursors


async def test_a_crashed_backfill_resumes_with_the_files_not_yet_imported(
    server: SandboxServer, store: Store, backend: Backend
) -> None:
    await load(server)
    straight = await backfill(backend, "straight").run(source(server))
    assert straight.complete

    finished: list[str] = []

    async def crash_after_the_first(output: OutputFile) -> None:
        finished.append(output.url)
        raise Crash

    with pytest.raises(Crash):
        await backfill(backend, "crashed", after_file=crash_after_the_first).run(source(server))
    cursors = backend.runner
    state = BackfillState.loads(await cursors.get_cursor("crashed", "ehr", EXPORT_CURSOR))
    assert state.job is not None and state.job.completed == finished
    assert await cursors.get_cursor("crashed", "ehr", "Patient") is None

    resumed = await backfill(backend, "crashed").run(source(server))
    assert resumed.complete and resumed.resumed
    assert resumed.skipped_files == 1 and resumed.imported_files == 6
    # Each file of the crashed job was downloaded once: the completed one was not again.
    downloads = server.app.exports.downloads
    crashed_files = [url for url in downloads if url.split("/")[-2] in finished[0]]
    assert len(crashed_files) == 7 and {downloads[u] for u in crashed_files} == {1}
    assert await store.counts("crashed") == await store.counts("straight")


async def test_the_next_backfill_exports_only_what_changed_since(
    server: SandboxServer, backend: Backend
) -> None:
    ids = await load(server)
    first = await backfill(backend).run(source(server))
    assert first.complete
    async with FhirClient(server.base_url) as fhir:
        changed = await fhir.read("Patient", ids[0])
        await fhir.update({**changed, "birthDate": "1949-12-31"})
    second = await backfill(backend).run(source(server))
    assert second.complete and second.read == 1 and second.files == 1
    assert second.report.total("updated") == 1 and second.report.events > 0
    assert second.transaction_time is not None and first.transaction_time is not None
    assert second.transaction_time > first.transaction_time
    full = await backfill(backend).run(source(server), full=True)
    assert full.read == 10 and full.report.events == 0


async def test_a_job_the_server_forgot_starts_again_with_the_same_since(
    server: SandboxServer, backend: Backend
) -> None:
    ids = await load(server)
    assert (await backfill(backend).run(source(server))).complete
    async with FhirClient(server.base_url) as fhir:
        for pid in ids:
            found = await fhir.read("Patient", pid)
            await fhir.update({**found, "gender": "male"})

    async def crash(output: OutputFile) -> None:
        raise Crash

    with pytest.raises(Crash):
        await backfill(backend, after_file=crash).run(source(server))
    server.app.exports.clear()  # the server forgets every job (as when they expire)
    resumed = await backfill(backend).run(source(server))
    assert resumed.complete and resumed.resumed and resumed.restarts == 1
    # The new export asked the same _since: only the three changed Patients, the two imported
    # before the crash now unchanged.
    assert resumed.read == 3 and resumed.files == 2
    assert resumed.report.counts == {"Patient": {"unchanged": 2, "updated": 1}}


def generic(resource_type: str, id: str, **refs: str) -> Resource:
    resource: Resource = {"resourceType": resource_type, "id": id}
    for name, ref in refs.items():
        resource[name] = {"reference": ref}
    return resource


async def test_a_file_whose_entries_fail_waits_for_what_it_refers_to(
    server: SandboxServer, store: Store, backend: Backend
) -> None:
    async with FhirClient(server.base_url) as fhir:
        # Basic files come before Flag files, but a Basic refers to a Flag: a second pass.
        await fhir.update(generic("Flag", "f1") | {"status": "active", "code": {"text": "y"}})
        await fhir.update(generic("Basic", "b1", author="Flag/f1") | {"code": {"text": "x"}})
    result = await backfill(backend).run(source(server), types=["Basic", "Flag"])
    assert result.complete, result.error
    assert result.imported_files == 3  # Basic twice
    assert (await store.counts("clinic")).entities == {"Basic": 1, "Flag": 1}


async def test_entries_that_never_import_leave_the_job_unfinished(
    server: SandboxServer, backend: Backend
) -> None:
    async with FhirClient(server.base_url) as fhir:
        await fhir.update(generic("Basic", "b1", author="Flag/missing") | {"code": {"text": "x"}})
        await fhir.update(generic("Flag", "f1") | {"status": "active", "code": {"text": "y"}})
    cursors = backend.runner
    result = await backfill(backend).run(source(server), types=["Basic", "Flag"])
    assert not result.complete
    assert result.error is not None and "1 entries in 1 files not imported" in result.error
    assert "Flag/missing" in result.error
    assert result.report.total("failed") == 1
    assert await cursors.get_cursor("clinic", "ehr", "Basic") is None
    # the version of what was stored is remembered, never that of what failed
    assert list(await cursors.known_versions("clinic", "ehr", "Flag", ["f1"])) == ["f1"]
    assert await cursors.known_versions("clinic", "ehr", "Basic", ["b1"]) == {}
    state = BackfillState.loads(await cursors.get_cursor("clinic", "ehr", EXPORT_CURSOR))
    assert state.job is not None and len(state.job.completed) == 1 and state.since == {}

    # The next run imports only the failing file again.
    again = await backfill(backend).run(source(server), types=["Basic", "Flag"])
    assert again.resumed and again.skipped_files == 1 and again.imported_files == 1
    assert not again.complete


async def test_one_backfill_of_a_source_at_a_time(server: SandboxServer, backend: Backend) -> None:
    await load(server, patients=1)
    leases = backend.runner
    holds = await leases.acquire("clinic", "backfill:ehr", "someone-else", timedelta(minutes=5))
    assert holds is not None
    with pytest.raises(EhrbridgeError, match="another backfill of ehr is running"):
        await backfill(backend, leases=leases).run(source(server))
    assert server.app.exports.jobs() == []
    await leases.release("clinic", "backfill:ehr", "someone-else")
    assert (await backfill(backend, leases=leases, holder="me").run(source(server))).complete
    assert await leases.holder("clinic", "backfill:ehr") is None


@pytest.mark.parametrize("paced", [False, True], ids=["unpaced", "paced"])
async def test_a_source_with_backfill_export_starts_with_an_export_then_polls(
    server: SandboxServer, store: Store, backend: Backend, paced: bool
) -> None:
    """``backfill: export``: the first poll of a type without a cursor runs the backfill for
    every such type of the source; the polls after it read only what changed since."""
    await load(server)
    state = backend.runner
    model = WorldModel(store, "clinic")
    with_export = DataSourceConfig(
        id="ehr",
        kind="fhir",
        base_url=server.base_url,
        backfill="export",
        resources=tuple(ResourceConfig(type=t, every=timedelta(minutes=5)) for t in TYPES),
    )
    # ehrbridge run paces the export (kick-off, status polls, downloads) under the source's budget
    budgets = BudgetRegistry(state, "clinic") if paced else None
    backfill = ExportFirst(model, state, budgets=budgets)
    poller = FhirPoller(model, state, budgets=budgets, backfill=backfill)
    try:
        first = await poll_once(
            poller,
            with_export,
            with_export.resources[1],
            workspace=poller.model.workspace,
            clock=poller.clock,
        )
        assert first.ok, first.error
        # the export brought every type (one event per resource) and handed each its cursor;
        # the Patient poll then read its type again from there (within the overlap), each
        # record skipped by the version the export remembered
        assert first.events == 1 + 3 * 3 and first.fetched == first.events + 3
        assert first.unchanged == 3
        for resource_type in TYPES:
            assert await state.get_cursor("clinic", "ehr", resource_type) is not None
        done = BackfillState.loads(await state.get_cursor("clinic", "ehr", EXPORT_CURSOR))
        assert done.job is None and set(done.since) == set(TYPES)
        # the other types poll from the export's instant: what they read is already stored
        for resource in with_export.resources:
            again = await poll_once(
                poller, with_export, resource, workspace=poller.model.workspace, clock=poller.clock
            )
            assert again.ok and again.events == 0
        assert (await store.counts("clinic")).entities["Patient"] == 3
    finally:
        await poller.aclose()
