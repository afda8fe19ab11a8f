"""Backfilling a FHIR data source through Bulk Data ``$export``, resumable file by file.

https://hl7.org/fhir/uv/bulkdata/export.html. One backfill of a data source: kick off an export
(``_type`` = the types asked for, else the source's polled types; ``_since`` = the
``transactionTime`` of the previous backfill of those types, unless ``full``), wait for the
manifest, then stream each output file into the FHIR importer, Organizations and Practitioners
before Patients before the resources that refer to them.

The job's state is kept through the :class:`~ehrbridge.connectors.source.Cursors` port under the
resource type :data:`EXPORT_CURSOR`, as JSON, and saved at each step: the status URL once
kicked off, the manifest once done, and each file once its import committed. A restart with an
unfinished job resumes it: it polls the same status URL (or reuses the saved manifest) and
imports only the files not completed yet. When the server no longer knows the job (404: deleted
or expired), a new export with the same ``_since`` starts; files already imported cost reads
only (unchanged records write no events).

A file is **completed** only when every entry in it was imported. A file with failed entries
keeps its good entries (as the importer does) and stays pending; after the other files, pending
files are imported again while that makes progress (a reference to a type exported later then
resolves). What still fails ends the backfill with an error and leaves the job unfinished: the
next run imports just those files again, and neither ``_since`` nor the poll cursors move past
data that was not stored, as with the FHIR poller's cursor.

With :class:`~ehrbridge.leases.Leases`, a run holds the lease ``backfill:<source>``, so
two backfills of one source never interleave their saved state.

When every file is completed: the ``transactionTime`` becomes the ``_since`` of the next
backfill, each exported type's poll cursor (the
:class:`~ehrbridge.connectors.fhir.poller.FhirPoller`'s cursor) moves up to the
``transactionTime`` if it is unset or older, and the job is deleted on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from ehrbridge.budget import BudgetRegistry
from ehrbridge.connectors.fhir.auth import fhir_auth
from ehrbridge.connectors.fhir.versions import EntryKey, Versioned, remember, unchanged, versioned
from ehrbridge.connectors.source import DataSourceConfig, Polled, PollState
from ehrbridge.errors import EhrbridgeError, ExportFailed, FhirNotFound, InvalidInput
from ehrbridge.fhir.bulk import BulkClient, Manifest, OutputFile
from ehrbridge.fhir.importer import TYPE_ORDER, Importer
from ehrbridge.fhir.reader import CHUNK, Unit
from ehrbridge.fhir.report import ImportReport
from ehrbridge.leases import Leases, new_holder
from ehrbridge.times import utc
from ehrbridge.worldmodel.model import WorldModel

log = logging.getLogger(__name__)

#: the resource type under which a source's backfill state is kept in the cursors table
EXPORT_CURSOR = "$export"
#: how long the ``backfill:<source>`` lease lasts; renewed every third of it while a run goes on
LEASE_TTL = timedelta(minutes=5)
#: how often a job the server forgot is started again within one run
MAX_RESTARTS = 2


@dataclass(kw_only=True)
class ExportJob:
    """An export in flight, as saved."""

    status_url: str
    #: the ``_since`` it was asked with (ISO instant), or None for everything
    since: str | None
    #: the ``_type`` it was asked with (empty: every type)
    types: list[str]
    manifest: dict[str, Any] | None = None
    #: URLs of the files whose every entry is imported
    completed: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class BackfillState:
    """A source's backfill state: the saved JSON under :data:`EXPORT_CURSOR`."""

    #: per resource type (``*`` for a backfill of every type), the ``transactionTime`` of the
    #: last complete backfill that exported it: the next one's ``_since``
    since: dict[str, str] = field(default_factory=dict)
    job: ExportJob | None = None

    def since_for(self, types: Sequence[str]) -> str | None:
        """The ``_since`` of a backfill of ``types`` (all types when empty): the oldest of their
        last ``transactionTime`` s, or None when one of them was never backfilled.

        >>> state = BackfillState(since={"Patient": "2026-01-02T00:00:00Z", "*": "2026-01-01Z"})
        >>> state.since_for(["Patient"]), state.since_for(["Patient", "Encounter"])
        ('2026-01-02T00:00:00Z', None)
        """
        found = [self.since.get(t) for t in (types or ["*"])]
        if any(when is None for when in found):
            return None
        return min(found, key=lambda when: datetime.fromisoformat(str(when)))

    @classmethod
    def loads(cls, text: str | None) -> BackfillState:
        """The state from its JSON (an empty state for None)."""
        if not text:
            return cls()
        try:
            raw = orjson.loads(text)
            job = raw.get("job")
            return cls(since=dict(raw.get("since") or {}), job=ExportJob(**job) if job else None)
        except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"the saved backfill state is not readable: {exc}") from None

    def dumps(self) -> str:
        """The state as JSON."""
        job = None
        if self.job is not None:
            j = self.job
            job = {
                "status_url": j.status_url,
                "since": j.since,
                "types": j.types,
                "manifest": j.manifest,
                "completed": j.completed,
            }
        return orjson.dumps({"since": self.since, "job": job}).decode()


@dataclass(kw_only=True)
class BackfillResult:
    """What one backfill did."""

    source: str
    #: the export's snapshot instant, once known
    transaction_time: str | None = None
    #: whether every file is imported (then ``_since`` and the poll cursors moved)
    complete: bool = False
    #: files in the manifest; files imported in this run; files skipped as done before a restart
    files: int = 0
    imported_files: int = 0
    skipped_files: int = 0
    #: whether an unfinished job was resumed; how often a forgotten job was started again
    resumed: bool = False
    restarts: int = 0
    #: poll cursors moved: resource type -> new cursor
    cursors: dict[str, str] = field(default_factory=dict)
    #: per type what the last import of each file did, the failed entries of files still
    #: pending, and every event written in this run
    report: ImportReport = field(default_factory=ImportReport)
    #: resources read in this run (a file imported again counts again)
    read: int = 0
    #: issues of the manifest's error files: resources the server could not export
    server_errors: list[str] = field(default_factory=list)
    #: why it is not complete (no patient data)
    error: str | None = None


class BackfillProgress(Protocol):
    """What a backfill tells its watcher (the CLI's progress display)."""

    def exporting(self, progress: str | None) -> None:
        """The server is still exporting; ``progress`` is its ``X-Progress``."""

    def importing(self, manifest: Manifest, pending: Sequence[OutputFile]) -> None:
        """The export is done; ``pending`` files are to be imported."""

    def unit(self, output: OutputFile, unit: Unit, resources: int) -> None:
        """A unit of ``output`` was imported; ``resources`` read in this run so far."""


class _Quiet:
    def exporting(self, progress: str | None) -> None:
        pass

    def importing(self, manifest: Manifest, pending: Sequence[OutputFile]) -> None:
        pass

    def unit(self, output: OutputFile, unit: Unit, resources: int) -> None:
        pass


class Backfill:
    """Backfills FHIR data sources into one workspace of the world model."""

    def __init__(
        self,
        model: WorldModel,
        cursors: PollState,
        *,
        client_for: Callable[[DataSourceConfig], BulkClient] | None = None,
        budgets: BudgetRegistry | None = None,
        progress: BackfillProgress | None = None,
        after_file: Callable[[OutputFile], Awaitable[None]] | None = None,
        leases: Leases | None = None,
        holder: str | None = None,
        lease_ttl: timedelta = LEASE_TTL,
        chunk: int = CHUNK,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.model = model
        #: poll cursors, and the versions of the records stored (as the poller remembers them)
        self.cursors = cursors
        #: with leases, one backfill of a source at a time (lease ``backfill:<source>``)
        self.leases = leases
        self.holder = holder or new_holder()
        self.lease_ttl = lease_ttl
        self.progress: BackfillProgress = progress or _Quiet()
        #: awaited after each file's import and saved state (tests stage a crash here)
        self.after_file = after_file
        self.chunk = chunk
        self.clock = clock
        #: each source's request budget, for the default ``client_for`` (none: not paced)
        self.budgets = budgets
        self._client_for = client_for or self._client

    def _client(self, source: DataSourceConfig) -> BulkClient:
        budgets = self.budgets
        transport = None if budgets is None else budgets.transport(source.id, source.budget)
        return BulkClient(source.base_url, auth=fhir_auth(source.auth), transport=transport)

    async def state(self, source: str) -> BackfillState:
        """The saved state of a source's backfill."""
        ws = self.model.workspace
        return BackfillState.loads(await self.cursors.get_cursor(ws, source, EXPORT_CURSOR))

    async def _save(self, source: str, state: BackfillState) -> None:
        await self.cursors.set_cursor(self.model.workspace, source, EXPORT_CURSOR, state.dumps())

    async def run(
        self, source: DataSourceConfig, *, types: Sequence[str] = (), full: bool = False
    ) -> BackfillResult:
        """Backfill ``source`` (resuming its unfinished job if it asked the same); FHIR and
        storage failures raise, entries that cannot be imported end in ``result.error``. With
        :attr:`leases`, a backfill of the same source running elsewhere is an error."""
        if source.kind != "fhir":
            raise InvalidInput(f"data source {source.id} is a {source.kind} source, not fhir")
        if self.leases is None:
            return await self._run(source, types, full)
        lease, ws = f"backfill:{source.id}", self.model.workspace
        if await self.leases.acquire(ws, lease, self.holder, self.lease_ttl) is None:
            raise EhrbridgeError(f"another backfill of {source.id} is running (lease {lease})")
        renewal = asyncio.create_task(self._renew(lease), name=f"renew:{lease}")
        try:
            return await self._run(source, types, full)
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            with contextlib.suppress(EhrbridgeError):
                await self.leases.release(ws, lease, self.holder)

    async def _renew(self, lease: str) -> None:
        """Keep the lease while the backfill runs (a third of its time to live at a time)."""
        assert self.leases is not None
        while True:
            await asyncio.sleep(self.lease_ttl.total_seconds() / 3)
            try:
                await self.leases.acquire(self.model.workspace, lease, self.holder, self.lease_ttl)
            except EhrbridgeError as exc:
                log.warning("could not renew lease %s: %s", lease, exc)

    async def _run(
        self, source: DataSourceConfig, types: Sequence[str], full: bool
    ) -> BackfillResult:
        wanted = list(types) or [r.type for r in source.resources]
        state = await self.state(source.id)
        since = None if full else state.since_for(wanted)
        result = BackfillResult(source=source.id)
        client = self._client_for(source)
        try:
            job = state.job
            if job is not None and (job.since != since or job.types != wanted):
                # Another backfill was asked for: the unfinished one is given up.
                with contextlib.suppress(EhrbridgeError):
                    await client.cancel(job.status_url)
                job = state.job = None
            result.resumed = job is not None
            while True:
                if job is None:
                    job = await self._kick_off(client, source.id, state, since, wanted)
                try:
                    manifest = await self._manifest(client, source.id, state, job)
                    await self._import(client, source, state, job, manifest, result)
                    break
                except FhirNotFound:
                    # The server forgot the job (deleted or expired): a new one, same _since.
                    result.restarts += 1
                    if result.restarts > MAX_RESTARTS:
                        raise
                    job = state.job = None
                except ExportFailed:
                    # The job failed on the server: the next run starts a new one.
                    state.job = None
                    await self._save(source.id, state)
                    raise
            if result.error is None:
                await self._finish(client, source.id, state, job, manifest, wanted, result)
        finally:
            await client.aclose()
        return result

    async def _kick_off(
        self,
        client: BulkClient,
        source: str,
        state: BackfillState,
        since: str | None,
        types: list[str],
    ) -> ExportJob:
        status_url = await client.kick_off(types=types, since=since)
        job = ExportJob(status_url=status_url, since=since, types=types)
        state.job = job
        await self._save(source, state)
        return job

    async def _manifest(
        self, client: BulkClient, source: str, state: BackfillState, job: ExportJob
    ) -> Manifest:
        if job.manifest is not None:
            return Manifest.from_json(job.manifest)
        manifest = await client.wait(job.status_url, on_progress=self.progress.exporting)
        job.manifest = manifest.to_json()
        await self._save(source, state)
        return manifest

    async def _import(
        self,
        client: BulkClient,
        source: DataSourceConfig,
        state: BackfillState,
        job: ExportJob,
        manifest: Manifest,
        result: BackfillResult,
    ) -> None:
        result.transaction_time = manifest.transaction_time
        result.files = len(manifest.output)
        files = _ordered(manifest.output)
        pending = [f for f in files if f.url not in job.completed]
        result.skipped_files = len(files) - len(pending)
        self.progress.importing(manifest, pending)
        importer = Importer(self.model, source=source.id, chunk=self.chunk, clock=self.clock)
        last: dict[str, ImportReport] = {}
        before: int | None = None
        # Files with failed entries are imported again while that makes progress.
        while pending and (before is None or len(pending) < before):
            before = len(pending)
            for output in pending:
                report = await self._import_file(
                    client, importer, source.id, output, manifest, result
                )
                last[output.url] = report
                result.imported_files += 1
                result.report.events += report.events
                if report.errors:
                    continue
                job.completed.append(output.url)
                await self._save(source.id, state)
                if self.after_file is not None:
                    await self.after_file(output)
            pending = [f for f in pending if last[f.url].errors]
        for report in last.values():
            _merge(result.report, report)
        if pending:
            first = last[pending[0].url].errors[0]
            entries = sum(len(last[f.url].errors) for f in pending)
            result.error = (
                f"{entries} entries in {len(pending)} files not imported, first: {first}; "
                "the next backfill imports those files again"
            )
        result.server_errors = await client.error_issues(manifest)

    async def _import_file(
        self,
        client: BulkClient,
        importer: Importer,
        source: str,
        output: OutputFile,
        manifest: Manifest,
        result: BackfillResult,
    ) -> ImportReport:
        """One file, streamed in units; its own report (the run's report gets its counts). The
        versions of the entries stored are remembered, so the first polls after the backfill
        skip them by version (except where a newer version is remembered already)."""
        read: dict[EntryKey, Versioned] = {}

        def advance(unit: Unit, _: ImportReport) -> None:
            result.read += len(unit.entries)
            for entry in unit.entries:
                token = None if entry.resource is None else versioned(entry.resource)
                if token is not None:
                    read[(unit.file, entry.position)] = token
            self.progress.unit(output, unit, result.read)

        report = ImportReport(files=1)
        async with contextlib.aclosing(client.units(output, manifest, chunk=self.chunk)) as units:
            await importer.import_stream(units, report, advance)
        ws = self.model.workspace
        failed = {(e.file, e.position) for e in report.errors}
        kept = await unchanged(self.cursors, ws, source, read)
        await remember(self.cursors, ws, source, read, failed | kept)
        return report

    async def _finish(
        self,
        client: BulkClient,
        source: str,
        state: BackfillState,
        job: ExportJob,
        manifest: Manifest,
        wanted: list[str],
        result: BackfillResult,
    ) -> None:
        when = manifest.transaction_instant
        ws = self.model.workspace
        for resource_type in sorted({*wanted, *(f.type for f in manifest.output)}):
            stored = await self.cursors.get_cursor(ws, source, resource_type)
            if stored is None or datetime.fromisoformat(stored) < when:
                await self.cursors.set_cursor(ws, source, resource_type, utc(when))
                result.cursors[resource_type] = utc(when)
        for resource_type in {*(wanted or ["*"]), *(f.type for f in manifest.output)}:
            state.since[resource_type] = manifest.transaction_time
        state.job = None
        await self._save(source, state)
        result.complete = True
        with contextlib.suppress(EhrbridgeError):
            await client.cancel(job.status_url)


class ExportFirst:
    """The first load a :class:`~ehrbridge.connectors.fhir.poller.FhirPoller` runs for the types
    of a ``backfill: export`` source that have no cursor yet: a :class:`Backfill` of them. With
    ``budgets``, the export's kick-off, status polls and downloads go under the source's request
    budget too. What it read and wrote counts into the poll's; an unfinished backfill fails the
    poll."""

    def __init__(
        self,
        model: WorldModel,
        state: PollState,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        budgets: BudgetRegistry | None = None,
    ) -> None:
        self.model = model
        self.state = state
        self.clock = clock
        self.budgets = budgets

    async def __call__(self, source: DataSourceConfig, types: list[str], polled: Polled) -> None:
        """Backfill ``types`` of ``source``; raises when the backfill is unfinished."""
        backfill = Backfill(self.model, self.state, clock=self.clock, budgets=self.budgets)
        result = await backfill.run(source, types=types)
        polled.fetched += result.read
        polled.events += result.report.events
        if not result.complete:
            raise EhrbridgeError(
                f"the $export backfill of {', '.join(types)} is unfinished: {result.error}"
            )


def _ordered(files: Sequence[OutputFile]) -> list[OutputFile]:
    """Files by :data:`TYPE_ORDER` of their type (others after, by name), else as listed."""
    rank = {t: i for i, t in enumerate(TYPE_ORDER)}
    return sorted(
        files, key=lambda f: (rank.get(f.type, len(rank)), "" if f.type in rank else f.type)
    )


def _merge(into: ImportReport, report: ImportReport) -> None:
    """Add ``report``'s counts, errors and files to ``into`` (events are summed by the caller)."""
    for resource_type, counts in report.counts.items():
        into.counts.setdefault(resource_type, Counter()).update(counts)
    into.errors += report.errors
    into.files += report.files
