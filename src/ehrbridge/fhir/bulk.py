"""A FHIR Bulk Data export client (https://hl7.org/fhir/uv/bulkdata/export.html).

::

    async with BulkClient("https://ehr.example.org/fhir/R4", auth=smart) as bulk:
        status_url = await bulk.kick_off(types=["Patient", "Encounter"], since=last_time)
        manifest = await bulk.wait(status_url)
        for output in manifest.output:
            async with aclosing(bulk.units(output, manifest)) as units:
                async for unit in units:            # 500 resources at a time, streamed
                    await importer.import_unit(unit, report)

Status polling honours ``Retry-After`` (seconds or an HTTP date), capped at
:attr:`PollPolicy.max_wait`, and backs off exponentially when the server sends none. 429, 502-504,
and a 5xx whose OperationOutcome says ``transient`` are retried under the :class:`RetryPolicy`;
any other error status of the status URL means the job failed, and raises
:class:`ExportFailed` with the server's OperationOutcome issues. 404 on the status URL or a file
(the job is unknown, deleted or expired) raises :class:`FhirNotFound`, so a caller can start a
new export.

Files are streamed: lines are cut from the response's bytes as they arrive and parsed one by one
into :class:`Unit` s of ``chunk`` entries, so memory holds one unit, never a file. Each line is
parsed by :func:`~ehrbridge.fhir.reader.ndjson_entry`, as files given to ``ehrbridge fhir import``
are, so a bad line reads the same from both; unlike a file, a download is not checked for a record
given twice (the importer deduplicates an export). Credentials go to file URLs only when the
manifest says ``requiresAccessToken``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from ehrbridge.errors import ExportFailed, FhirProtocolError, FhirUnavailable, fhir_errors
from ehrbridge.fhir.auth import Auth, NoAuth
from ehrbridge.fhir.client import DEFAULT_TIMEOUT, FHIR_JSON
from ehrbridge.fhir.http import describe, error_for, outcome_issues
from ehrbridge.fhir.reader import CHUNK, MAX_LINE_BYTES, Entry, Unit, ndjson_entry
from ehrbridge.http.retry import (
    RETRY_STATUSES,
    Retries,
    RetryPolicy,
    retry_after_seconds,
    transport_problem,
)

NDJSON = "application/fhir+ndjson"
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, kw_only=True)
class PollPolicy:
    """How the status URL is polled while the export runs."""

    #: the first wait when the server sends no ``Retry-After``; it doubles up to ``max_wait``
    first_wait: float = 1.0
    #: the longest single wait, whatever ``Retry-After`` asks
    max_wait: float = 60.0
    #: give up (FhirUnavailable) when the job has not finished after this many seconds
    timeout: float = 24 * 3600.0

    def wait(self, polls: int, retry_after: float | None) -> float:
        """Seconds to wait before poll number ``polls + 1``.

        >>> policy = PollPolicy()
        >>> policy.wait(1, None), policy.wait(3, None), policy.wait(9, None), policy.wait(1, 5.0)
        (1.0, 4.0, 60.0, 5.0)
        >>> policy.wait(1, 3600.0), policy.wait(1, 0.0)
        (60.0, 0.0)
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_wait)
        return min(self.first_wait * 2.0 ** max(polls - 1, 0), self.max_wait)


@dataclass(frozen=True, kw_only=True)
class OutputFile:
    """One file of a finished export."""

    #: its resource type (``OperationOutcome`` for an error file)
    type: str
    url: str
    #: resources in it, when the server says
    count: int | None = None


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The complete-status body (https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status)."""

    #: the instant the export is a snapshot of, as the server wrote it
    transaction_time: str
    #: the kick-off URL
    request: str
    #: whether file downloads need the access token
    requires_access_token: bool
    output: tuple[OutputFile, ...]
    #: NDJSON files of OperationOutcomes about resources that could not be exported
    error: tuple[OutputFile, ...] = ()

    @property
    def transaction_instant(self) -> datetime:
        """``transactionTime`` as an aware datetime."""
        return _parse_instant(self.transaction_time)

    @classmethod
    def from_json(cls, body: object, operation: str = "manifest") -> Manifest:
        """Read a manifest; FhirProtocolError when it is not one.

        >>> m = Manifest.from_json({"transactionTime": "2026-01-02T03:04:05Z", "request": "x",
        ...     "output": [{"type": "Patient", "url": "u", "count": 2}]})
        >>> m.output[0].count, m.transaction_instant.isoformat()
        (2, '2026-01-02T03:04:05+00:00')
        """
        problem = "the manifest is not valid: "
        if not isinstance(body, dict):
            raise FhirProtocolError(problem + "not a JSON object", operation=operation)
        when = body.get("transactionTime")
        if not isinstance(when, str) or _instant_or_none(when) is None:
            raise FhirProtocolError(
                problem + "transactionTime: not an instant", operation=operation
            )
        files: dict[str, tuple[OutputFile, ...]] = {}
        for key in ("output", "error"):
            items = body.get(key) or []
            if not isinstance(items, list):
                raise FhirProtocolError(problem + f"{key}: not a list", operation=operation)
            found = []
            for i, item in enumerate(items):
                if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                    raise FhirProtocolError(problem + f"{key}[{i}]: no url", operation=operation)
                count = item.get("count")
                found.append(
                    OutputFile(
                        type=str(item.get("type") or ""),
                        url=item["url"],
                        count=count if isinstance(count, int) else None,
                    )
                )
            files[key] = tuple(found)
        return cls(
            transaction_time=when,
            request=str(body.get("request") or ""),
            requires_access_token=bool(body.get("requiresAccessToken")),
            output=files["output"],
            error=files["error"],
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON again (to keep it)."""

        def files(items: Iterable[OutputFile]) -> list[dict[str, Any]]:
            return [
                {"type": f.type, "url": f.url, **({} if f.count is None else {"count": f.count})}
                for f in items
            ]

        return {
            "transactionTime": self.transaction_time,
            "request": self.request,
            "requiresAccessToken": self.requires_access_token,
            "output": files(self.output),
            "error": files(self.error),
        }


def _instant_or_none(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _parse_instant(value: str) -> datetime:
    when = _instant_or_none(value)
    if when is None:
        raise FhirProtocolError("transactionTime: not an instant")
    return when


def _since_text(since: datetime | str) -> str:
    """``_since`` as an instant.

    >>> _since_text(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    '2026-01-02T03:04:05.000006Z'
    """
    if isinstance(since, str):
        return since
    return since.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class BulkClient:
    """Bulk Data export from one FHIR server; use it as an async context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        #: the server's base, without a trailing slash
        self.base_url = base_url.rstrip("/")
        self.auth: Auth = auth or NoAuth()
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()
        self._sleep = sleep
        self._now = now
        self._monotonic = monotonic
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(transport=transport, timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client opened (and the auth's)."""
        if self._owns_http:
            await self._http.aclose()
        await self.auth.aclose()

    # -- https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-kick-off-request ---------------

    async def kick_off(
        self,
        *,
        types: Iterable[str] = (),
        since: datetime | str | None = None,
        patient: bool = False,
    ) -> str:
        """Start an export (system level, or ``Patient/$export``); returns the status URL."""
        params: list[tuple[str, str]] = [("_outputFormat", NDJSON)]
        wanted = ",".join(types)
        if wanted:
            params.append(("_type", wanted))
        if since is not None:
            params.append(("_since", _since_text(since)))
        url = f"{self.base_url}/Patient/$export" if patient else f"{self.base_url}/$export"
        headers = {"Accept": FHIR_JSON, "Prefer": "respond-async"}
        response = await self._send(
            "export kick-off", "GET", url, params=tuple(params), headers=headers
        )
        location = response.headers.get("content-location")
        if response.status_code != 202 or not location:
            raise FhirProtocolError(
                "expected 202 Accepted with a Content-Location status URL",
                operation=describe(response.request, "export kick-off"),
                status=response.status_code,
            )
        return str(httpx.URL(self.base_url).join(location))

    # -- https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-status-request -----------------

    async def status(self, status_url: str) -> Manifest | tuple[str | None, float | None]:
        """One status request: the manifest when done, else ``(X-Progress, Retry-After)``."""
        response = await self._send(
            "export status", "GET", status_url, headers=_ACCEPT_JSON, failure="the export failed"
        )
        operation = describe(response.request, "export status")
        if response.status_code == 202:
            after = retry_after_seconds(response.headers.get("retry-after"), self._now())
            return response.headers.get("x-progress"), after
        if response.status_code != 200:
            raise FhirProtocolError(
                "expected 200 or 202", operation=operation, status=response.status_code
            )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise FhirProtocolError(
                "the manifest is not valid JSON", operation=operation, status=200
            ) from None
        return Manifest.from_json(body, operation)

    async def wait(
        self, status_url: str, *, on_progress: Callable[[str | None], None] | None = None
    ) -> Manifest:
        """Poll the status URL until the export is done; ``on_progress`` gets ``X-Progress``."""
        started = self._monotonic()
        polls = 0
        while True:
            found = await self.status(status_url)
            if isinstance(found, Manifest):
                return found
            progress, retry_after = found
            polls += 1
            if on_progress is not None:
                on_progress(progress)
            delay = self.poll.wait(polls, retry_after)
            if self._monotonic() + delay - started > self.poll.timeout:
                raise FhirUnavailable(
                    f"the export did not finish within {self.poll.timeout:.0f} s",
                    operation=f"export status GET {httpx.URL(status_url).path}",
                )
            await self._sleep(delay)

    async def cancel(self, status_url: str) -> None:
        """Ask the server to stop the export and delete its files (``DELETE`` the status URL)."""
        await self._send("export delete", "DELETE", status_url, headers=_ACCEPT_JSON)

    # -- https://hl7.org/fhir/uv/bulkdata/export.html#file-request ----------------------------

    async def units(
        self, output: OutputFile, manifest: Manifest, *, chunk: int = CHUNK
    ) -> AsyncGenerator[Unit, None]:
        """The resources of one output file as NDJSON units of ``chunk`` entries, streamed.

        Each unit's ``file`` is the URL's path; its ``done`` the share of the file read (when
        the server sends ``Content-Length``). Use it with :func:`contextlib.aclosing` when you
        may stop early, so the connection is released.
        """
        name = httpx.URL(output.url).path
        headers = {"Accept": NDJSON}
        response = await self._send(
            "export file",
            "GET",
            output.url,
            headers=headers,
            stream=True,
            credentials=manifest.requires_access_token,
        )
        operation = describe(response.request, "export file")
        size = int(response.headers.get("content-length") or 0)
        try:
            entries: list[Entry] = []
            number = 0
            async for line in _lines(response.aiter_bytes()):
                number += 1
                if number == 1 and line is not None:
                    line = line.removeprefix(_BOM)  # a byte-order mark, as files may have
                entry = ndjson_entry(number, line, limit=MAX_LINE_BYTES)
                if entry is not None:
                    entries.append(entry)
                if len(entries) >= chunk:
                    done = min(response.num_bytes_downloaded / size, 1.0) if size else 0.0
                    yield Unit(file=name, kind="ndjson", entries=entries, done=done)
                    entries = []
            if entries:
                yield Unit(file=name, kind="ndjson", entries=entries)
        except httpx.TransportError as exc:
            raise FhirUnavailable(
                f"the download broke off: {type(exc).__name__}", operation=operation
            ) from exc
        finally:
            await response.aclose()

    async def error_issues(self, manifest: Manifest) -> list[str]:
        """The issue texts of the manifest's error files (OperationOutcomes, one per line)."""
        texts: list[str] = []
        for output in manifest.error:
            async for unit in self.units(output, manifest):
                for entry in unit.entries:
                    if entry.resource is None:
                        texts.append(f"{unit.file}: {entry.position}: {entry.error}")
                        continue
                    texts += [str(issue) for issue in outcome_issues(entry.resource)]
        return texts

    # -- plumbing --------------------------------------------------------------------------

    async def _send(
        self,
        name: str,
        method: str,
        url: str,
        *,
        params: tuple[tuple[str, str], ...] | None = None,
        headers: dict[str, str],
        stream: bool = False,
        credentials: bool = True,
        failure: str | None = None,
    ) -> httpx.Response:
        """Send one request, retrying transient failures; a 2xx response or an error (with
        ``failure`` as its message for a status other than 404/410 that is not transient)."""
        operation = f"{name} {method} {httpx.URL(url).path}"
        retries = Retries(self.retry, operation, sleep=self._sleep, now=self._now)
        refreshed = False
        while True:
            request_headers = dict(headers)
            authorization = await self.auth.authorization() if credentials else None
            if authorization is not None:
                request_headers["Authorization"] = authorization
            request = self._http.build_request(method, url, params=params, headers=request_headers)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                with fhir_errors():
                    await retries.wait(transport_problem(exc))
                continue
            status = response.status_code
            if response.is_success:
                return response
            await response.aread()
            await response.aclose()
            if status == 401 and credentials and not refreshed:
                refreshed = True
                if await self.auth.refresh(authorization):
                    continue
            if not _transient(response):
                error = error_for(response, describe(response.request, name), write=False)
                if failure is None or status in (401, 403, 404, 410):
                    raise error
                raise ExportFailed(
                    failure, operation=error.operation, status=status, issues=error.issues
                )
            with fhir_errors():
                await retries.wait(f"HTTP {status}", response)


_ACCEPT_JSON = {"Accept": "application/json"}


def _issues(response: httpx.Response) -> list[Any]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return []
    return [i for i in body.get("issue") or () if isinstance(i, dict)]


def _transient(response: httpx.Response) -> bool:
    """429, 502-504, and a 500 whose OperationOutcome is ``transient`` or absent."""
    status = response.status_code
    if status not in RETRY_STATUSES:
        return False
    if status != 500:
        return True
    issues = _issues(response)
    return not issues or any(i.get("code") == "transient" for i in issues)


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes | None]:
    """The lines of a byte stream, without their ends; None for a line over
    :data:`MAX_LINE_BYTES` (skipped, never held whole)."""
    pending = bytearray()
    skipping = False
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if skipping:
                skipping = False
                yield None
            elif pending:
                pending += chunk[start:end]
                yield bytes(pending) if len(pending) <= MAX_LINE_BYTES else None
                pending.clear()
            else:
                yield chunk[start:end] if end - start <= MAX_LINE_BYTES else None
            start = end + 1
        if not skipping:
            pending += chunk[start:]
            if len(pending) > MAX_LINE_BYTES:
                pending.clear()
                skipping = True
    if skipping:
        yield None
    elif pending:
        yield bytes(pending) if len(pending) <= MAX_LINE_BYTES else None
