"""OAuth2 access tokens from a token endpoint, cached (RFC 6749 §4.4, §5).

Both client-credentials flows ehrbridge speaks use it: SMART Backend Services for FHIR servers
(a signed JWT client assertion) and plain client credentials for REST sources (a client secret).
They differ only in the form and headers they post; the caching, the one-fetch-at-a-time lock,
the renewal after a 401 and the reading of the token response are here once.

Failures raise the bare :class:`~ehrbridge.errors.SourceAuthError` (the endpoint refused us, or
answered without a usable token) and :class:`~ehrbridge.errors.SourceUnavailable` (it could not be
reached); the auth that owns the token cache turns them into its family's kind at its boundary
(:func:`~ehrbridge.errors.fhir_errors`, :func:`~ehrbridge.errors.rest_errors`), so no error class
is passed in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from ehrbridge.errors import SourceAuthError, SourceUnavailable


class AccessTokens:
    """The current access token of one token endpoint: fetched when there is none or it expires
    within ``refresh_margin`` seconds (halfway through a shorter life), by one caller at a time.
    """

    def __init__(
        self,
        *,
        token_url: str,
        request: Callable[[], tuple[dict[str, str], dict[str, str]]],
        operation: str,
        credential: str,
        default_lifetime: float,
        refresh_margin: float = 60.0,
        timeout: httpx.Timeout | float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_url = token_url
        #: the form and the headers of the next token request (credentials read now)
        self._request = request
        #: ``SMART token POST /oauth/token``: how errors name the request
        self.operation = f"{operation} POST {httpx.URL(token_url).path}"
        #: what a refusal says was refused: ``client assertion``, ``client credentials``
        self.credential = credential
        #: ``expires_in`` when the response has none
        self.default_lifetime = default_lifetime
        #: fetch a new token this many seconds before the current one expires
        self.refresh_margin = refresh_margin
        #: how many tokens have been fetched
        self.tokens_fetched = 0
        self._clock = clock
        self._timeout, self._transport = timeout, transport
        self._http: httpx.AsyncClient | None = None  # opened on the first token request
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    async def current(self) -> str:
        """The access token, fetched when there is none or it expires soon."""
        if self._token is None or self._clock() >= self._refresh_at:
            async with self._lock:
                # Concurrent callers wait here; the first fetches, the rest reuse its token.
                if self._token is None or self._clock() >= self._refresh_at:
                    await self._fetch()
        assert self._token is not None
        return self._token

    async def renew(self, rejected: str | None) -> None:
        """The server refused ``rejected``: fetch a new token unless one came meanwhile."""
        async with self._lock:
            if rejected == self._token or self._token is None:
                await self._fetch()

    async def aclose(self) -> None:
        """Close the connections to the token endpoint."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _fetch(self) -> None:
        form, headers = self._request()
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)
        try:
            response = await self._http.post(
                self.token_url, data=form, headers={"Accept": "application/json", **headers}
            )
        except httpx.TransportError as exc:
            raise SourceUnavailable(
                f"the token endpoint is unreachable ({type(exc).__name__})",
                operation=self.operation,
            ) from exc
        body = _json_object(response)
        status = response.status_code
        if status != 200:
            # OAuth errors (RFC 6749 §5.2) name the problem; they carry no secrets.
            error = str(body.get("error", "no error code"))
            description = body.get("error_description")
            reason = f"{error}: {description}" if description else error
            raise SourceAuthError(
                f"the token endpoint refused the {self.credential} ({reason})",
                operation=self.operation,
                status=status,
            )
        token = body.get("access_token")
        expires_in = body.get("expires_in", self.default_lifetime)
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise SourceAuthError(
                "the token response has no access_token or a bad expires_in",
                operation=self.operation,
                status=status,
            )
        # A token shorter-lived than twice the margin is renewed halfway through its life.
        margin = min(self.refresh_margin, expires_in / 2)
        self._token = token
        self._refresh_at = self._clock() + expires_in - margin
        self.tokens_fetched += 1


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}
