"""Bulk Data export: ``$export`` kick-off, status polling, NDJSON files (FHIR Bulk Data IG v2).

https://hl7.org/fhir/uv/bulkdata/export.html. The flow, as the sandbox serves it::

    GET [base]/$export?_type=Patient,Encounter&_since=...   Prefer: respond-async
        -> 202, Content-Location: [base]/$export-poll/<job>
    GET [base]/$export-poll/<job>
        -> 202, X-Progress, Retry-After       while the job runs
        -> 200, the manifest (application/json) once it is done
        -> 500 + OperationOutcome             the job failed
        -> 404 + OperationOutcome             unknown, cancelled or expired
    DELETE [base]/$export-poll/<job>          -> 202: cancelled, files removed
    GET [base]/$export-file/<job>/<name>      -> 200 application/fhir+ndjson

``GET [base]/Patient/$export`` exports the Patient compartment: Patients, and resources of the
compartment's types that refer to a Patient.

The export is a consistent snapshot: ``transactionTime`` is reserved at kick-off (every write
before it is at or before it, every later one after it), and each resource is exported as its
newest version at or before ``transactionTime`` (and after ``_since``), however the store changes
while the job runs. Jobs run as tasks on the server's event loop, a page of resources at a time,
off the request path; files live in a temporary folder of the sandbox, removed when a job is
cancelled or expires and when the sandbox closes. Each type is written to one file per
``file_size`` resources, so a client can resume file by file.

Test hooks: :attr:`ExportJobs.paused` holds running jobs (to see them in progress),
:attr:`ExportJobs.fail_next` makes the next jobs fail, :attr:`ExportJobs.downloads` counts the
requests per file URL.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlencode

import orjson

from ehrbridge.fhir.mapping.resource_types import R4_RESOURCE_TYPES
from ehrbridge.sandbox.messages import FhirRequest, FhirResponse
from ehrbridge.sandbox.outcome import OperationFailed, operation_outcome
from ehrbridge.sandbox.store import INSTANT_FORMAT, ResourceStore, Version, format_instant

NDJSON = "application/fhir+ndjson"
#: ``_outputFormat`` values taken (the IG's abbreviations included)
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
#: resources per output file, by default
FILE_SIZE = 10_000
#: resources read from the store per step of a job
PAGE = 1000
_PARAMETERS = frozenset({"_type", "_since", "_outputFormat"})
#: the types of the Patient compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html)
PATIENT_COMPARTMENT = frozenset(
    """Account AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic
    BodyStructure CarePlan CareTeam ChargeItem Claim ClaimResponse ClinicalImpression
    Communication CommunicationRequest Composition Condition Consent Coverage
    CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue DeviceRequest
    DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference Encounter
    EnrollmentRequest EpisodeOfCare ExplanationOfBenefit FamilyMemberHistory Flag Goal Group
    ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation Invoice List
    MeasureReport Media MedicationAdministration MedicationDispense MedicationRequest
    MedicationStatement MolecularSequence NutritionOrder Observation Patient Person Procedure
    Provenance QuestionnaireResponse RelatedPerson RequestGroup ResearchSubject RiskAssessment
    Schedule ServiceRequest Specimen SupplyDelivery SupplyRequest VisionPrescription""".split()  # noqa: SIM905
)

JobState = Literal["running", "done", "failed"]


@dataclass(kw_only=True)
class Output:
    """One NDJSON file of a job."""

    #: the resource type in it
    type: str
    #: the file's name in the job's folder, e.g. ``Patient-2.ndjson``
    name: str
    #: resources in it
    count: int = 0


@dataclass(kw_only=True)
class ExportJob:
    """One export: what was asked, where it stands, and its files."""

    id: str
    #: the kick-off URL, as the manifest's ``request`` states it
    request: str
    #: the FHIR base the job's URLs are under
    base: str
    #: the snapshot's instant, in the store's form
    transaction_time: str
    #: only resources written after this instant (``_since``), or None for all
    since: str | None
    types: tuple[str, ...]
    #: ``Patient/$export``: the Patient compartment only
    patient_level: bool
    folder: Path
    state: JobState = "running"
    exported: int = 0
    #: the type being exported, for ``X-Progress``
    current: str = ""
    outputs: list[Output] = field(default_factory=list)
    #: why the job failed (no patient data)
    error: str | None = None
    #: when the job finished (monotonic clock), for expiry
    finished_at: float | None = None
    task: asyncio.Task[None] | None = None

    def url(self, output: Output) -> str:
        """Where a file is downloaded."""
        return f"{self.base}/$export-file/{self.id}/{output.name}"

    def manifest(self) -> dict[str, Any]:
        """The complete-status body (https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status)."""
        instant = datetime.strptime(self.transaction_time, INSTANT_FORMAT).replace(tzinfo=UTC)
        return {
            "transactionTime": instant.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "request": self.request,
            "requiresAccessToken": False,
            "output": [
                {"type": o.type, "url": self.url(o), "count": o.count} for o in self.outputs
            ],
            "error": [],
        }


class ExportJobs:
    """The export jobs of one sandbox and the folder of their files."""

    def __init__(
        self,
        store: ResourceStore,
        *,
        file_size: int = FILE_SIZE,
        page: int = PAGE,
        retry_after: int = 1,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        #: resources per output file; a type with more gets several files
        self.file_size = file_size
        self.page = page
        #: the ``Retry-After`` seconds sent while a job runs
        self.retry_after = retry_after
        #: seconds a finished job and its files are kept
        self.ttl = ttl
        self._clock = clock
        #: while True, running jobs wait before their next page (tests see them in progress)
        self.paused = False
        #: the next N jobs fail (their status answers 500 with an OperationOutcome)
        self.fail_next = 0
        #: GET requests per file URL
        self.downloads: Counter[str] = Counter()
        self._jobs: dict[str, ExportJob] = {}
        self._folder: Path | None = None
        self._lock = threading.Lock()

    # -- the interactions -------------------------------------------------------------------

    def kick_off(self, request: FhirRequest, *, patient_level: bool = False) -> FhirResponse:
        """Start a job on the running event loop; 202 with its status URL in ``Content-Location``.

        https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-kick-off-request
        """
        if "respond-async" not in request.headers.get("prefer", ""):
            raise OperationFailed(400, "$export needs the header Prefer: respond-async")
        types, since = self._parameters(request.query, patient_level=patient_level)
        self._sweep()
        job_id = uuid.uuid4().hex
        folder = self._root() / job_id
        folder.mkdir()
        query = f"?{urlencode(request.query)}" if request.query else ""
        job = ExportJob(
            id=job_id,
            request=f"{request.base}/{request.path}{query}",
            base=request.base,
            transaction_time=self.store.reserve_instant(),
            since=since,
            types=types,
            patient_level=patient_level,
            folder=folder,
        )
        with self._lock:
            self._jobs[job_id] = job
            failing = self.fail_next > 0
            self.fail_next -= int(failing)
        job.task = asyncio.get_running_loop().create_task(
            self._run(job, fail=failing), name=f"sandbox-export-{job_id}"
        )
        accepted = operation_outcome("export started", severity="information", code="informational")
        location = f"{request.base}/$export-poll/{job_id}"
        return FhirResponse(status=202, body=accepted, headers={"Content-Location": location})

    def status(self, job_id: str) -> FhirResponse:
        """The job's status: 202 while it runs, 200 and the manifest when done, 500 if it failed.

        https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-status-request
        """
        job = self._job(job_id)
        if job.state == "running":
            where = f" ({job.current})" if job.current else ""
            return FhirResponse(
                status=202,
                headers={
                    "X-Progress": f"{job.exported} resources exported{where}",
                    "Retry-After": str(self.retry_after),
                },
            )
        if job.state == "failed":
            raise OperationFailed(500, f"the export failed: {job.error}", code="exception")
        expires = datetime.now(UTC).timestamp() + self._left(job)
        headers = {
            "Content-Type": "application/json",
            "Expires": format_datetime(datetime.fromtimestamp(expires, UTC), usegmt=True),
        }
        return FhirResponse(status=200, body=job.manifest(), headers=headers)

    def cancel(self, job_id: str) -> FhirResponse:
        """Stop the job and remove its files; later requests for it get 404.

        https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-delete-request
        """
        job = self._job(job_id)
        self._forget(job)
        ok = operation_outcome("export deleted", severity="information", code="informational")
        return FhirResponse(status=202, body=ok)

    def file(self, job_id: str, name: str) -> Path:
        """The path of one of a done job's files (404 for any other), counted in
        :attr:`downloads`."""
        job = self._job(job_id)
        for output in job.outputs:
            if output.name == name and job.state == "done":
                self.downloads[job.url(output)] += 1
                return job.folder / name
        raise OperationFailed(404, "no such file in this export")

    # -- housekeeping -----------------------------------------------------------------------

    def clear(self) -> None:
        """Cancel every job, remove their files, reset the hooks and counts."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            self._forget(job)
        self.paused, self.fail_next = False, 0
        self.downloads.clear()

    def close(self) -> None:
        """Cancel every job and remove the sandbox's export folder."""
        self.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def jobs(self) -> list[ExportJob]:
        """The jobs known now."""
        with self._lock:
            return list(self._jobs.values())

    def _root(self) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="ehrbridge-sandbox-export-"))
        return self._folder

    def _job(self, job_id: str) -> ExportJob:
        self._sweep()
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise OperationFailed(404, "no such export job (unknown, deleted or expired)")
        return job

    def _left(self, job: ExportJob) -> float:
        return 0.0 if job.finished_at is None else job.finished_at + self.ttl - self._clock()

    def _sweep(self) -> None:
        """Forget the jobs that finished more than :attr:`ttl` seconds ago."""
        with self._lock:
            expired = [j for j in self._jobs.values() if j.finished_at and self._left(j) <= 0]
        for job in expired:
            self._forget(job)

    def _forget(self, job: ExportJob) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
        task = job.task
        if task is not None and not task.done():
            loop = task.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)
        shutil.rmtree(job.folder, ignore_errors=True)

    # -- the work ---------------------------------------------------------------------------

    def _parameters(
        self, query: tuple[tuple[str, str], ...], *, patient_level: bool
    ) -> tuple[tuple[str, ...], str | None]:
        types: list[str] = []
        since: str | None = None
        for name, value in query:
            if name not in _PARAMETERS:
                raise OperationFailed(400, f"$export does not support the parameter {name}")
            if name == "_outputFormat" and value not in OUTPUT_FORMATS:
                raise OperationFailed(400, "_outputFormat: only application/fhir+ndjson")
            if name == "_since":
                since = _instant(value)
            if name == "_type":
                for part in value.split(","):
                    part = part.strip()
                    if part not in R4_RESOURCE_TYPES:
                        raise OperationFailed(400, "_type: not a FHIR R4 resource type")
                    if patient_level and part not in PATIENT_COMPARTMENT:
                        raise OperationFailed(400, "_type: not in the Patient compartment")
                    if part not in types:
                        types.append(part)
        if not types:
            types = [t for t in self.store.types() if not patient_level or t in PATIENT_COMPARTMENT]
        return tuple(types), since

    async def _run(self, job: ExportJob, *, fail: bool) -> None:
        try:
            if fail:
                raise RuntimeError("injected export failure")
            for resource_type in job.types:
                job.current = resource_type
                await self._export_type(job, resource_type)
            job.current = ""
            job.state = "done"
        except asyncio.CancelledError:
            job.state, job.error = "failed", "cancelled"
            raise
        except Exception as exc:  # the job fails, the server goes on
            job.state, job.error = "failed", type(exc).__name__ + (f": {exc}" if fail else "")
        finally:
            job.finished_at = self._clock()

    async def _export_type(self, job: ExportJob, resource_type: str) -> None:
        with _Files(job, resource_type, self.file_size) as files:
            after = ""
            while True:
                # A test hook, set from another thread: polled.
                while self.paused:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                page = self.store.as_of(
                    resource_type,
                    job.transaction_time,
                    since=job.since,
                    after_id=after,
                    limit=self.page,
                )
                if not page:
                    return
                for version in page:
                    if not job.patient_level or _in_compartment(version):
                        files.write(version)
                after = page[-1].id
                # One page per turn of the event loop: requests are answered meanwhile.
                await asyncio.sleep(0)


class _Files:
    """The NDJSON files of one type, a new one every ``size`` resources."""

    def __init__(self, job: ExportJob, resource_type: str, size: int) -> None:
        self.job, self.type, self.size = job, resource_type, max(size, 1)
        self._file: IO[bytes] | None = None
        self._output: Output | None = None

    def __enter__(self) -> _Files:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def write(self, version: Version) -> None:
        if self._output is None or self._output.count >= self.size:
            self._close()
            number = sum(1 for o in self.job.outputs if o.type == self.type) + 1
            self._output = Output(type=self.type, name=f"{self.type}-{number}.ndjson")
            self._file = (self.job.folder / self._output.name).open("wb")
        assert self._file is not None
        self._file.write(orjson.dumps(version.resource) + b"\n")
        self._output.count += 1
        self.job.exported += 1

    def _close(self) -> None:
        if self._file is not None and self._output is not None:
            self._file.close()
            # A file is in the manifest once it is complete.
            self.job.outputs.append(self._output)
        self._file, self._output = None, None


def _instant(value: str) -> str:
    """``_since`` in the store's form; 400 unless it is an instant with a time zone.

    >>> _instant("2026-01-02T03:04:05+01:00")
    '2026-01-02T02:04:05.000000Z'
    >>> _instant("2026-01-02")
    Traceback (most recent call last):
    ehrbridge.sandbox.outcome.OperationFailed: 400: _since must be an instant with a time zone
    """
    # A '+' in a query string arrives as a space.
    text = value.strip().replace(" ", "+")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or "T" not in text or when.tzinfo is None:
        raise OperationFailed(400, "_since must be an instant with a time zone")
    return format_instant(when)


def _in_compartment(version: Version) -> bool:
    if version.type == "Patient":
        return True
    return any(ref.startswith("Patient/") for ref in _references(version.resource))


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "reference" and isinstance(value, str):
                yield value
            elif isinstance(value, dict | list):
                yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)
