"""How the FHIR client authenticates: none, HTTP Basic, a bearer token, SMART Backend Services.

SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html) is what EHR
vendors require for system-to-system access: the client signs a short-lived JWT with its private
key (RS384 or ES384), trades it at the token endpoint for an access token
(``client_credentials`` grant), caches that token and fetches a new one shortly before it expires.

No secret (password, token, key, assertion) appears in a ``repr``, a message or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from uuid import uuid4

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ehrbridge.errors import FhirAuthError, FhirUnavailable, InvalidInput

#: https://datatracker.ietf.org/doc/html/rfc7523#section-2.2
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: The longest lifetime SMART allows for a client assertion, in seconds.
MAX_ASSERTION_LIFETIME = 300


class Auth(Protocol):
    """Supplies the ``Authorization`` header of each FHIR request."""

    async def authorization(self) -> str | None:
        """The header value for the next request, or None to send none."""
        ...

    async def refresh(self, rejected: str | None) -> bool:
        """The server answered 401 to ``rejected``: get new credentials; False if there are none."""
        ...

    async def aclose(self) -> None:
        """Release any connections (the token endpoint's)."""
        ...


class NoAuth:
    """No authentication (an open test server)."""

    async def authorization(self) -> str | None:
        """No header."""
        return None

    async def refresh(self, rejected: str | None) -> bool:
        """Nothing to refresh."""
        return False

    async def aclose(self) -> None:
        """Nothing to close."""

    def __repr__(self) -> str:
        return "NoAuth()"


class BasicAuth(NoAuth):
    """HTTP Basic authentication (https://www.rfc-editor.org/rfc/rfc7617)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._header = f"Basic {token}"

    async def authorization(self) -> str | None:
        """``Basic <base64(user:password)>``."""
        return self._header

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password=***)"


class BearerAuth(NoAuth):
    """A fixed bearer token obtained elsewhere."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    async def authorization(self) -> str | None:
        """``Bearer <token>``."""
        return self._header

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def load_private_key(pem: bytes | str | Path, algorithm: str) -> PrivateKey:
    """A private key from PEM bytes or text, or a PEM file's path, checked to suit ``algorithm``."""
    if isinstance(pem, str) and pem.lstrip().startswith("-----BEGIN"):
        data = pem.encode("ascii")
    elif isinstance(pem, str | Path):
        data = Path(pem).read_bytes()
    else:
        data = pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # The library's message says what is wrong with the PEM, not what is in it.
        raise InvalidInput(f"cannot load the SMART private key: {exc}") from None
    if algorithm == "RS384" and isinstance(key, rsa.RSAPrivateKey):
        return key
    if (
        algorithm == "ES384"
        and isinstance(key, ec.EllipticCurvePrivateKey)
        and isinstance(key.curve, ec.SECP384R1)
    ):
        return key
    want = {"RS384": "an RSA key", "ES384": "an EC P-384 key"}.get(algorithm)
    if want is None:
        raise InvalidInput(f"SMART Backend Services signs with RS384 or ES384, not {algorithm}")
    raise InvalidInput(f"{algorithm} needs {want}; the SMART private key is another kind")


class SmartBackendAuth:
    """SMART Backend Services: access tokens for a signed JWT client assertion, cached."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        private_key: bytes | str | Path,
        algorithm: str = "RS384",
        kid: str | None = None,
        scope: str = "system/*.read",
        refresh_margin: float = 60.0,
        timeout: httpx.Timeout | float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: the authorization server's token endpoint; also the assertion's ``aud``
        self.token_url = token_url
        self.client_id = client_id
        self.algorithm = algorithm
        #: the key id in the JWKS the EHR holds for us, sent as the assertion's ``kid`` header
        self.kid = kid
        self.scope = scope
        #: fetch a new token this many seconds before the current one expires
        self.refresh_margin = refresh_margin
        #: how many tokens this object has fetched
        self.tokens_fetched = 0
        self._key = load_private_key(private_key, algorithm)
        self._clock = clock
        self._timeout, self._transport = timeout, transport
        self._http: httpx.AsyncClient | None = None  # opened on the first token request
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def __repr__(self) -> str:
        return (
            f"SmartBackendAuth(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"algorithm={self.algorithm!r}, kid={self.kid!r}, scope={self.scope!r})"
        )

    async def authorization(self) -> str | None:
        """``Bearer <access token>``, fetching a token when there is none or it expires soon."""
        if self._token is None or self._clock() >= self._refresh_at:
            async with self._lock:
                # Concurrent callers wait here; the first fetches, the rest reuse its token.
                if self._token is None or self._clock() >= self._refresh_at:
                    await self._fetch_token()
        return f"Bearer {self._token}"

    async def refresh(self, rejected: str | None) -> bool:
        """The FHIR server refused ``rejected``: fetch a new token unless one already came."""
        async with self._lock:
            if rejected == f"Bearer {self._token}" or self._token is None:
                await self._fetch_token()
        return True

    async def aclose(self) -> None:
        """Close the connections to the token endpoint."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def client_assertion(self) -> str:
        """A fresh signed JWT: iss = sub = client_id, aud = token URL, unique jti, exp <= 5 min."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "jti": uuid4().hex,
            "iat": now,
            "exp": now + MAX_ASSERTION_LIFETIME,
        }
        headers = {"kid": self.kid} if self.kid else None
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)

    async def _fetch_token(self) -> None:
        operation = f"SMART token POST {httpx.URL(self.token_url).path}"
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)
        try:
            response = await self._http.post(
                self.token_url, data=form, headers={"Accept": "application/json"}
            )
        except httpx.TransportError as exc:
            raise FhirUnavailable(
                f"the token endpoint is unreachable ({type(exc).__name__})", operation=operation
            ) from exc
        body = _json_object(response)
        status = response.status_code
        if status != 200:
            # OAuth errors (RFC 6749 §5.2) name the problem; they carry no secrets.
            error = str(body.get("error", "no error code"))
            description = body.get("error_description")
            reason = f"{error}: {description}" if description else error
            raise FhirAuthError(
                f"the token endpoint refused the client assertion ({reason})",
                operation=operation,
                status=status,
            )
        token, expires_in = body.get("access_token"), body.get("expires_in", 300)
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise FhirAuthError(
                "the token response has no access_token or a bad expires_in",
                operation=operation,
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
