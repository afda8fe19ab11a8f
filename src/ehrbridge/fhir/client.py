"""An async FHIR R4 client (https://hl7.org/fhir/R4/http.html).

::

    async with FhirClient("https://ehr.example.org/fhir/R4", auth=smart) as fhir:
        patient = await fhir.read("Patient", "123")
        async for obs in fhir.search("Observation", {"patient": "Patient/123"}):
            ...

Reads (read, vread, search, history and their pages) are retried on 429, 5xx and connection
errors, honouring ``Retry-After``; writes (create, update, patch, delete, batch, transaction)
are sent once, and a failure says whether the write may have reached the server. The transport
is swappable: unit tests pass an ``httpx.MockTransport``, integration tests a real server.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import httpx
import orjson

from ehrbridge.errors import FhirProtocolError, FhirUnavailable, InvalidInput, fhir_errors
from ehrbridge.fhir.auth import Auth, NoAuth
from ehrbridge.fhir.http import Resource, decode_resource, describe, error_for
from ehrbridge.fhir.search import SearchInput, SearchParams
from ehrbridge.http.retry import RETRY_STATUSES, Retries, RetryPolicy, transport_problem

#: Timeouts unless the caller gives others: 10 s to connect, 30 s for each read, write and pool.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
FHIR_JSON = "application/fhir+json"
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}", re.ASCII)
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)
_ETAG = re.compile(r'^(?:W/)?"([^"]*)"$')


@dataclass(frozen=True, kw_only=True)
class WriteResult:
    """What a create, update or patch returned."""

    #: 201 when a resource was created, 200 otherwise (also a conditional create that matched)
    status: int
    #: the resource as stored, when the server returned it
    resource: Resource | None
    #: the new version id, from ``ETag`` or ``meta.versionId``
    version_id: str | None
    #: the raw ``ETag`` header, e.g. ``W/"3"``
    etag: str | None
    #: the ``Location`` header (``.../Patient/1/_history/3``), when sent
    location: str | None

    @property
    def created(self) -> bool:
        """Whether the server created a resource (a conditional create may find one instead)."""
        return self.status == 201

    @property
    def id(self) -> str | None:
        """The resource's id, from the body or the ``Location``."""
        if self.resource is not None and isinstance(self.resource.get("id"), str):
            return str(self.resource["id"])
        if self.location:
            parts = httpx.URL(self.location).path.split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            return parts[-1] or None
        return None


def version_from_etag(etag: str | None) -> str | None:
    """The version id in an ETag.

    >>> version_from_etag('W/"3"'), version_from_etag('"abc"'), version_from_etag(None)
    ('3', 'abc', None)
    """
    if not etag:
        return None
    match = _ETAG.match(etag.strip())
    return match.group(1) if match else None


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise InvalidInput(f"not a FHIR {what}: {value[:70]!r}")
    return value


class FhirClient:
    """An async FHIR R4 client for one server base URL; use it as an async context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        #: the server's base, without a trailing slash
        self.base_url = base_url.rstrip("/")
        self.auth: Auth = auth or NoAuth()
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._now = now
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(transport=transport, timeout=timeout)
        self._origin = httpx.URL(self.base_url).copy_with(path="/", query=None)

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r}, auth={self.auth!r})"

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

    # -- reads: https://hl7.org/fhir/R4/http.html#read, #vread, #search, #history -------------

    async def read(self, resource_type: str, id: str) -> Resource:
        """``GET [base]/[type]/[id]``; raises FhirNotFound for an unknown or deleted resource."""
        url = self._url(resource_type, id)
        response = await self._send("read", "GET", url)
        return decode_resource(response, self._op("read", response), (resource_type,))

    async def vread(self, resource_type: str, id: str, version_id: str) -> Resource:
        """``GET [base]/[type]/[id]/_history/[vid]``: one version of a resource."""
        url = self._url(resource_type, id, "_history", _check(_ID, version_id, "version id"))
        response = await self._send("vread", "GET", url)
        return decode_resource(response, self._op("vread", response), (resource_type,))

    async def search(
        self, resource_type: str, params: SearchInput = None
    ) -> AsyncIterator[Resource]:
        """``GET [base]/[type]?params``: every matching resource, following ``next`` links.

        Entries the server added with ``search.mode`` ``include`` or ``outcome`` are skipped; read
        them from :meth:`search_pages`.
        """
        async for page in self.search_pages(resource_type, params):
            for entry in page.get("entry") or ():
                mode = (entry.get("search") or {}).get("mode", "match")
                if mode == "match" and isinstance(entry.get("resource"), dict):
                    yield entry["resource"]

    async def search_pages(
        self, resource_type: str, params: SearchInput = None
    ) -> AsyncIterator[Resource]:
        """The searchset Bundles of a search, page by page."""
        query = SearchParams.of(params).pairs
        url = self._url(resource_type)
        async for page in self._pages("search", url, query, "searchset"):
            yield page

    async def history(self, resource_type: str, id: str) -> AsyncIterator[Resource]:
        """``GET [base]/[type]/[id]/_history``: the versions of a resource, newest first.

        Deleted versions (entries without a resource) are skipped.
        """
        url = self._url(resource_type, id, "_history")
        async for page in self._pages("history", url, (), "history"):
            for entry in page.get("entry") or ():
                if isinstance(entry.get("resource"), dict):
                    yield entry["resource"]

    # -- writes: https://hl7.org/fhir/R4/http.html#create, #update, #patch, #delete ------------

    async def create(
        self,
        resource: Resource,
        *,
        if_none_exist: str | Mapping[str, str] | None = None,
    ) -> WriteResult:
        """``POST [base]/[type]``; with ``if_none_exist`` a conditional create: when one resource
        matches the search, the server returns it (status 200) instead of creating another."""
        resource_type = _check(_TYPE, str(resource.get("resourceType", "")), "resource type")
        headers = {}
        if if_none_exist is not None:
            criteria = if_none_exist if isinstance(if_none_exist, str) else urlencode(if_none_exist)
            headers["If-None-Exist"] = criteria
        return await self._write("create", "POST", self._url(resource_type), resource, headers)

    async def update(self, resource: Resource, *, if_match: str | None = None) -> WriteResult:
        """``PUT [base]/[type]/[id]``; with ``if_match`` (a version id) only if that version is
        still current, else FhirPreconditionFailed."""
        resource_type = _check(_TYPE, str(resource.get("resourceType", "")), "resource type")
        url = self._url(resource_type, str(resource.get("id", "")))
        return await self._write("update", "PUT", url, resource, _if_match(if_match))

    async def patch(
        self,
        resource_type: str,
        id: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        """``PATCH [base]/[type]/[id]`` with a JSON Patch (https://www.rfc-editor.org/rfc/rfc6902)."""
        headers = {"Content-Type": "application/json-patch+json", **_if_match(if_match)}
        url = self._url(resource_type, id)
        return await self._write("patch", "PATCH", url, list(operations), headers)

    async def delete(self, resource_type: str, id: str, *, if_match: str | None = None) -> None:
        """``DELETE [base]/[type]/[id]``."""
        url = self._url(resource_type, id)
        await self._send("delete", "DELETE", url, headers=_if_match(if_match), write=True)

    async def batch(self, bundle: Resource) -> Resource:
        """``POST [base]`` a ``batch`` Bundle; each entry succeeds or fails on its own, so read
        ``entry[i].response.status`` of the returned ``batch-response``."""
        return await self._bundle("batch", bundle)

    async def transaction(self, bundle: Resource) -> Resource:
        """``POST [base]`` a ``transaction`` Bundle: all entries or none; ``urn:uuid`` references
        are resolved by the server. Returns the ``transaction-response``."""
        return await self._bundle("transaction", bundle)

    # -- plumbing --------------------------------------------------------------------------

    def _url(self, resource_type: str, *segments: str) -> str:
        parts = [_check(_TYPE, resource_type, "resource type")]
        parts += [s if s == "_history" else _check(_ID, s, "id") for s in segments]
        return "/".join([self.base_url, *parts])

    @staticmethod
    def _op(name: str, response: httpx.Response) -> str:
        return describe(response.request, name)

    async def _bundle(self, kind: str, bundle: Resource) -> Resource:
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != kind:
            raise InvalidInput(f"{kind} needs a Bundle of type {kind}")
        response = await self._send(kind, "POST", self.base_url, body=bundle, write=True)
        result = decode_resource(response, self._op(kind, response), ("Bundle",))
        if result.get("type") != f"{kind}-response":
            raise FhirProtocolError(
                f"expected a {kind}-response Bundle, got type {result.get('type')!r}",
                operation=self._op(kind, response),
                status=response.status_code,
            )
        return result

    async def _write(
        self,
        name: str,
        method: str,
        url: str,
        body: object,
        headers: Mapping[str, str],
    ) -> WriteResult:
        headers = {"Prefer": "return=representation", **headers}
        response = await self._send(name, method, url, body=body, headers=headers, write=True)
        resource = decode_resource(response, self._op(name, response)) if response.content else None
        etag = response.headers.get("etag")
        meta = (resource or {}).get("meta") or {}
        return WriteResult(
            status=response.status_code,
            resource=resource,
            version_id=version_from_etag(etag) or meta.get("versionId"),
            etag=etag,
            location=response.headers.get("location") or response.headers.get("content-location"),
        )

    async def _pages(
        self, name: str, url: str, query: tuple[tuple[str, str], ...], bundle_type: str
    ) -> AsyncIterator[Resource]:
        seen: set[str] = set()
        params: tuple[tuple[str, str], ...] | None = query
        next_url: str | None = url
        while next_url is not None:
            response = await self._send(name, "GET", next_url, params=params)
            op = self._op(name, response)
            page = decode_resource(response, op, ("Bundle",))
            if page.get("type") != bundle_type:
                got = page.get("type")
                raise FhirProtocolError(
                    f"expected a {bundle_type} Bundle, got type {got!r}",
                    operation=op,
                    status=response.status_code,
                )
            yield page
            seen.add(str(response.request.url))
            next_url, params = self._next_link(page, op), None
            if next_url is not None and next_url in seen:
                raise FhirProtocolError("the next link points to a page already read", operation=op)

    def _next_link(self, page: Resource, operation: str) -> str | None:
        for link in page.get("link") or ():
            if link.get("relation") == "next" and isinstance(link.get("url"), str):
                url = httpx.URL(self.base_url).join(link["url"])
                # Our credentials go to our server only, never to a host a page names.
                if url.copy_with(path="/", query=None, fragment=None) != self._origin:
                    raise FhirProtocolError(
                        "the next link points to another server", operation=operation
                    )
                return str(url)
        return None

    async def _send(
        self,
        name: str,
        method: str,
        url: str,
        *,
        params: tuple[tuple[str, str], ...] | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        write: bool = False,
    ) -> httpx.Response:
        """Sends one request; retries it if it is a read; returns a 2xx response or raises."""
        request_headers = {"Accept": FHIR_JSON, **(headers or {})}
        content = None
        if body is not None:
            content = orjson.dumps(body)
            request_headers.setdefault("Content-Type", FHIR_JSON)
        operation = f"{name} {method} {httpx.URL(url).path}"
        retries = Retries(self.retry, operation, sleep=self._sleep, now=self._now)
        refreshed = False
        while True:
            authorization = await self.auth.authorization()
            if authorization is not None:
                request_headers["Authorization"] = authorization
            try:
                response = await self._http.request(
                    method, url, params=params, content=content, headers=request_headers
                )
            except httpx.TransportError as exc:
                problem = transport_problem(exc)
                if write:
                    # A refused or timed-out connect, or no free connection in the pool, never
                    # reached the server; anything later may have.
                    unsent = httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                    sent = not isinstance(exc, unsent)
                    where = "the write may have reached the server" if sent else "nothing was sent"
                    raise FhirUnavailable(
                        f"{problem}; {where}", operation=operation, may_have_reached_server=sent
                    ) from exc
                with fhir_errors():
                    await retries.wait(problem)
                continue
            status = response.status_code
            if status == 401 and not write and not refreshed:
                refreshed = True
                if await self.auth.refresh(authorization):
                    continue
            if response.is_success:
                return response
            if write or status not in RETRY_STATUSES:
                raise error_for(response, describe(response.request, name), write=write)
            with fhir_errors():
                await retries.wait(f"HTTP {status}", response)


def _if_match(version_id: str | None) -> dict[str, str]:
    return {} if version_id is None else {"If-Match": f'W/"{version_id}"'}
