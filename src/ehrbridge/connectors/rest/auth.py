"""How a REST data source is authenticated: none, basic, bearer, an API-key header, or OAuth2
client credentials (https://www.rfc-editor.org/rfc/rfc6749#section-4.4).

Secrets are read from their references when a header is built (so a rotated secret file is
picked up without a restart) and never kept in a ``repr``, a message or a log line. An OAuth2
access token is cached until shortly before it expires, and fetched again once when the source
answers 401 to it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

import httpx

from ehrbridge.connectors.source import AuthConfig, SecretRef
from ehrbridge.errors import InvalidInput, rest_errors
from ehrbridge.http.oauth import AccessTokens


class RestAuth(Protocol):
    """Supplies the credential headers of each request to a REST data source."""

    async def headers(self) -> dict[str, str]:
        """The headers to add to the next request (empty for none)."""
        ...

    async def refresh(self, rejected: dict[str, str]) -> bool:
        """The source answered 401 to ``rejected``: get new credentials; False if none."""
        ...

    async def aclose(self) -> None:
        """Release the token endpoint's connections."""
        ...


class HeaderAuth:
    """A header built from a secret at each use: basic, bearer or an API key."""

    def __init__(self, header: str, build: Callable[[], str], *, kind: str) -> None:
        self.header = header
        self.kind = kind
        self._build = build

    def __repr__(self) -> str:
        return f"HeaderAuth(kind={self.kind!r}, header={self.header!r})"

    async def headers(self) -> dict[str, str]:
        """``{header: value}``, the secret read now."""
        return {self.header: self._build()}

    async def refresh(self, rejected: dict[str, str]) -> bool:
        """A fixed credential cannot be renewed, except by changing the secret it is read from."""
        return await self.headers() != rejected

    async def aclose(self) -> None:
        """Nothing to close."""


class NoAuth:
    """No credentials."""

    async def headers(self) -> dict[str, str]:
        """No headers."""
        return {}

    async def refresh(self, rejected: dict[str, str]) -> bool:
        """Nothing to refresh."""
        return False

    async def aclose(self) -> None:
        """Nothing to close."""

    def __repr__(self) -> str:
        return "NoAuth()"


def basic_header(username: str, password: str) -> str:
    """``Basic <base64(user:password)>`` (https://www.rfc-editor.org/rfc/rfc7617).

    >>> basic_header("ehrbridge", "s3cret")
    'Basic ZWhyYnJpZGdlOnMzY3JldA=='
    """
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class ClientCredentialsAuth:
    """OAuth2 client credentials: an access token from the token endpoint, cached.

    The client authenticates with HTTP Basic (``client_secret_basic``, RFC 6749 §2.3.1) unless
    ``client_auth`` is ``body`` (``client_secret_post``). A refusal of the token endpoint raises
    :class:`~ehrbridge.errors.RestAuthError`, an unreachable one
    :class:`~ehrbridge.errors.RestUnavailable` (translated here from the shared token cache's
    ``Source*`` kinds)."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: SecretRef,
        scope: str | None = None,
        client_auth: str = "basic",
        refresh_margin: float = 60.0,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.client_auth = client_auth
        self._secret = client_secret
        self._tokens = AccessTokens(
            token_url=token_url,
            request=self._token_request,
            operation="OAuth2 token",
            credential="client credentials",
            default_lifetime=3600,
            refresh_margin=refresh_margin,
            timeout=timeout,
            transport=transport,
            clock=clock,
        )

    def __repr__(self) -> str:
        return (
            f"ClientCredentialsAuth(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"scope={self.scope!r})"
        )

    @property
    def tokens_fetched(self) -> int:
        """How many tokens this object has fetched."""
        return self._tokens.tokens_fetched

    async def headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>``, fetching a token when none is fresh."""
        with rest_errors():
            return {"Authorization": f"Bearer {await self._tokens.current()}"}

    async def refresh(self, rejected: dict[str, str]) -> bool:
        """The source refused the token: fetch another unless one came meanwhile."""
        sent = rejected.get("Authorization")
        with rest_errors():
            await self._tokens.renew(sent.removeprefix("Bearer ") if sent else None)
        return True

    async def aclose(self) -> None:
        """Close the token endpoint's connections."""
        await self._tokens.aclose()

    def _token_request(self) -> tuple[dict[str, str], dict[str, str]]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        headers = {}
        secret = self._secret.resolve()
        if self.client_auth == "body":
            form |= {"client_id": self.client_id, "client_secret": secret}
        else:
            # RFC 6749 §2.3.1: form-encode the id and secret before the Basic encoding.
            headers["Authorization"] = basic_header(
                quote(self.client_id, safe=""), quote(secret, safe="")
            )
        return form, headers


def rest_auth(auth: AuthConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> RestAuth:
    """The auth of a REST source's config (secrets stay references until a request needs them)."""
    s, secret = auth.settings, auth.secrets
    if auth.kind == "none":
        return NoAuth()
    if auth.kind == "basic":
        user, password = s["username"], secret["password"]
        return HeaderAuth(
            "Authorization", lambda: basic_header(user, password.resolve()), kind="basic"
        )
    if auth.kind == "bearer":
        token = secret["token"]
        return HeaderAuth("Authorization", lambda: f"Bearer {token.resolve()}", kind="bearer")
    if auth.kind == "api_key":
        key = secret["key"]
        return HeaderAuth(s.get("header", "X-API-Key"), key.resolve, kind="api_key")
    if auth.kind == "oauth2":
        return ClientCredentialsAuth(
            token_url=s["token_url"],
            client_id=s["client_id"],
            client_secret=secret["client_secret"],
            scope=s.get("scope"),
            client_auth=s.get("client_auth", "basic"),
            transport=transport,
        )
    raise InvalidInput(
        f"a rest data source takes none, basic, bearer, api_key or oauth2 auth, not {auth.kind}"
    )
