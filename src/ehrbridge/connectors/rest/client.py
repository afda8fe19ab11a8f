"""The REST connector's HTTP boundary: GET with retries, credentials, and JSON or a clear error.

Reads are retried on 429, 5xx and connection errors, honouring ``Retry-After``, with the FHIR
client's :class:`~ehrbridge.http.retry.RetryPolicy`; a 401 makes the auth fetch new credentials
once. This is the one place where an HTTP response becomes JSON or a
:class:`~ehrbridge.errors.RestSourceError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from ehrbridge.connectors.rest.auth import NoAuth, RestAuth
from ehrbridge.errors import (
    RestAuthError,
    RestProtocolError,
    RestSourceError,
    rest_errors,
)
from ehrbridge.http.retry import RETRY_STATUSES, Retries, RetryPolicy, transport_problem


@dataclass(frozen=True, kw_only=True)
class Response:
    """A successful response: its parsed JSON body, its headers and the URL asked."""

    body: Any
    headers: httpx.Headers
    url: httpx.URL


class RestClient:
    """GETs JSON from one REST data source."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: RestAuth | None = None,
        headers: Sequence[tuple[str, str]] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        #: the base URL, without a trailing slash; resource paths are appended to it
        self.base_url = base_url.rstrip("/")
        self.auth: RestAuth = auth or NoAuth()
        self.retry = retry or RetryPolicy()
        self._headers = {"Accept": "application/json", **dict(headers)}
        self._sleep, self._now = sleep, now
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

    def __repr__(self) -> str:
        return f"RestClient({self.base_url!r}, auth={self.auth!r})"

    async def aclose(self) -> None:
        """Close the connections (and the auth's)."""
        await self._http.aclose()
        await self.auth.aclose()

    def url(self, path: str) -> httpx.URL:
        """The URL of a resource path under the base URL."""
        return httpx.URL(f"{self.base_url}/{path.lstrip('/')}")

    def same_origin(self, url: httpx.URL) -> bool:
        """Whether ``url`` is on the source's own scheme, host and port (our credentials go
        nowhere else)."""
        base = httpx.URL(self.base_url)
        return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)

    async def get(self, url: httpx.URL, params: Sequence[tuple[str, str]] = ()) -> Response:
        """GET ``url`` with ``params``; the JSON body, or a :class:`RestSourceError`."""
        operation = f"GET {url.path}"
        retries = Retries(self.retry, operation, sleep=self._sleep, now=self._now)
        refreshed = False
        while True:
            creds = await self.auth.headers()
            try:
                response = await self._http.get(
                    url, params=list(params) or None, headers={**self._headers, **creds}
                )
            except httpx.TransportError as exc:
                with rest_errors():
                    await retries.wait(transport_problem(exc))
                continue
            status = response.status_code
            if status == 401 and not refreshed:
                refreshed = True
                if await self.auth.refresh(creds):
                    continue
            if response.is_success:
                return Response(
                    body=_json(response, operation), headers=response.headers, url=response.url
                )
            if status not in RETRY_STATUSES:
                raise _error(response, operation)
            with rest_errors():
                await retries.wait(f"HTTP {status}", response)


def _kind(response: httpx.Response) -> str:
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "text/html":
        return "an HTML page"
    return media or "no Content-Type"


def _json(response: httpx.Response, operation: str) -> Any:
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    size = len(response.content)
    status = response.status_code
    if media != "application/json" and not media.endswith("+json"):
        raise RestProtocolError(
            f"expected JSON, got {_kind(response)} ({size} bytes)",
            operation=operation,
            status=status,
        )
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise RestProtocolError(
            f"the body is not valid JSON, perhaps truncated ({size} bytes)",
            operation=operation,
            status=status,
        ) from None


def _error(response: httpx.Response, operation: str) -> RestSourceError:
    status = response.status_code
    if status in (401, 403):
        return RestAuthError(operation=operation, status=status)
    if status == 404:
        return RestProtocolError(
            "not found: check the base_url and the resource path",
            operation=operation,
            status=status,
        )
    return RestSourceError(
        f"the source refused the request ({_kind(response)}, {len(response.content)} bytes)",
        operation=operation,
        status=status,
    )
