"""How the FHIR client authenticates: none, HTTP Basic, a bearer token, SMART Backend Services.

SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html) is what EHR
vendors require for system-to-system access: the client signs a short-lived JWT with its private
key (RS384 or ES384), trades it at the token endpoint for an access token
(``client_credentials`` grant), caches that token and fetches a new one shortly before it expires.

No secret (password, token, key, assertion) appears in a ``repr``, a message or a log line.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from uuid import uuid4

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ehrbridge.errors import InvalidInput, fhir_errors
from ehrbridge.http.oauth import AccessTokens

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
    """SMART Backend Services: access tokens for a signed JWT client assertion, cached.

    A refusal of the token endpoint raises :class:`~ehrbridge.errors.FhirAuthError`, an
    unreachable one :class:`~ehrbridge.errors.FhirUnavailable` (translated here from the shared
    token cache's ``Source*`` kinds)."""

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
        self._key = load_private_key(private_key, algorithm)
        self._clock = clock
        self._tokens = AccessTokens(
            token_url=token_url,
            request=self._token_request,
            operation="SMART token",
            credential="client assertion",
            default_lifetime=300,
            refresh_margin=refresh_margin,
            timeout=timeout,
            transport=transport,
            clock=clock,
        )

    def __repr__(self) -> str:
        return (
            f"SmartBackendAuth(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"algorithm={self.algorithm!r}, kid={self.kid!r}, scope={self.scope!r})"
        )

    @property
    def tokens_fetched(self) -> int:
        """How many tokens this object has fetched."""
        return self._tokens.tokens_fetched

    async def authorization(self) -> str | None:
        """``Bearer <access token>``, fetching a token when there is none or it expires soon."""
        with fhir_errors():
            return f"Bearer {await self._tokens.current()}"

    async def refresh(self, rejected: str | None) -> bool:
        """The FHIR server refused ``rejected``: fetch a new token unless one already came."""
        with fhir_errors():
            await self._tokens.renew(rejected.removeprefix("Bearer ") if rejected else None)
        return True

    async def aclose(self) -> None:
        """Close the connections to the token endpoint."""
        await self._tokens.aclose()

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

    def _token_request(self) -> tuple[dict[str, str], dict[str, str]]:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        return form, {}
