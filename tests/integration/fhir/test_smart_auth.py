"""SMART Backend Services against a local authorization server that checks everything.

The server (stdlib ``http.server`` in a thread) verifies each client assertion with the client's
**public** key, its ``aud``, ``iss``, ``sub``, ``exp`` (at most five minutes ahead) and that its
``jti`` is new, then issues short-lived tokens; its ``/fhir`` side serves a Patient to a valid
bearer token only. Both sides read the test's clock, so expiry is tested without waiting.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from uuid import uuid4

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ehrbridge.errors import FhirAuthError, InvalidInput
from ehrbridge.fhir.auth import CLIENT_ASSERTION_TYPE, BasicAuth, BearerAuth, SmartBackendAuth
from ehrbridge.fhir.client import FhirClient

CLIENT_ID = "ehrbridge-test-client"
KID = "key-1"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class Clock:
    """Wall time that the test moves forward by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class AuthServer:
    """What the token endpoint and the FHIR side saw and decided."""

    clock: Clock
    public_key: Any
    algorithm: str
    expires_in: int = 300
    token_url: str = ""
    fhir_url: str = ""
    #: every token request: (time, the assertion's claims or None when refused)
    token_requests: list[tuple[float, dict[str, Any] | None]] = field(default_factory=list)
    #: access token -> when it expires
    tokens: dict[str, float] = field(default_factory=dict)
    jtis: set[str] = field(default_factory=set)
    fhir_requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Checks a token request the way an EHR's authorization server does."""
        now = self.clock()
        try:
            if form.get("grant_type") != "client_credentials":
                raise ValueError("grant_type must be client_credentials")
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                raise ValueError("wrong client_assertion_type")
            assertion = form["client_assertion"]
            if jwt.get_unverified_header(assertion).get("kid") != KID:
                raise ValueError("unknown kid")
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=[self.algorithm],
                audience=self.token_url,
                # exp and iat are checked below against the test's clock, not the wall clock
                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "jti"]},
            )
            if claims["iss"] != CLIENT_ID or claims["sub"] != CLIENT_ID:
                raise ValueError("iss and sub must be the client id")
            if not now < claims["exp"] <= now + 300:
                raise ValueError("exp must be in the future and at most 5 minutes ahead")
            with self.lock:
                if claims["jti"] in self.jtis:
                    raise ValueError("jti reused")
                self.jtis.add(claims["jti"])
        except (ValueError, KeyError, jwt.InvalidTokenError) as exc:
            self.token_requests.append((now, None))
            return 401, {"error": "invalid_client", "error_description": str(exc)}
        self.token_requests.append((now, claims))
        token = uuid4().hex
        self.tokens[token] = now + self.expires_in
        body = {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in}
        return 200, {**body, "scope": form.get("scope", "")}

    def serve_fhir(self, authorization: str) -> tuple[int, dict[str, Any]]:
        token = authorization.removeprefix("Bearer ")
        self.fhir_requests.append(token)
        if self.tokens.get(token, 0.0) <= self.clock():
            issue = {"severity": "error", "code": "login", "details": {"text": "bad token"}}
            return 401, {"resourceType": "OperationOutcome", "issue": [issue]}
        return 200, {"resourceType": "Patient", "id": "p1"}

    def revoke_all(self) -> None:
        self.tokens.clear()


def start(server: AuthServer) -> Iterator[AuthServer]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            kind = "application/json" if self.path == "/token" else "application/fhir+json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path == "/token":
                self._reply(*server.issue(form))
            else:
                self._reply(*server.serve_fhir(self.headers.get("Authorization", "")))

        def do_GET(self) -> None:
            self._reply(*server.serve_fhir(self.headers.get("Authorization", "")))

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output quiet

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    origin = f"http://127.0.0.1:{httpd.server_address[1]}"
    server.token_url, server.fhir_url = f"{origin}/token", f"{origin}/fhir"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def new_key(algorithm: str) -> PrivateKey:
    if algorithm == "RS384":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP384R1())


def pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
def wall_clock() -> Clock:
    return Clock()


@pytest.fixture(params=["RS384", "ES384"])
def algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def key(algorithm: str) -> PrivateKey:
    return new_key(algorithm)


@pytest.fixture
def auth_server(wall_clock: Clock, key: PrivateKey, algorithm: str) -> Iterator[AuthServer]:
    yield from start(AuthServer(clock=wall_clock, public_key=key.public_key(), algorithm=algorithm))


def smart(
    server: AuthServer, clock: Clock, private_key: bytes | Path, **options: Any
) -> SmartBackendAuth:
    return SmartBackendAuth(
        token_url=server.token_url,
        client_id=CLIENT_ID,
        private_key=private_key,
        algorithm=server.algorithm,
        kid=KID,
        scope="system/Patient.read",
        clock=clock,
        **options,
    )


async def test_one_token_serves_many_requests(
    auth_server: AuthServer, wall_clock: Clock, key: PrivateKey, tmp_path: Path
) -> None:
    key_file = tmp_path / "client.pem"
    key_file.write_bytes(pem(key))
    auth = smart(auth_server, wall_clock, key_file)
    async with FhirClient(auth_server.fhir_url, auth=auth) as fhir:
        for _ in range(5):
            assert (await fhir.read("Patient", "p1"))["id"] == "p1"

    assert len(auth_server.token_requests) == 1
    claims = auth_server.token_requests[0][1]
    assert claims is not None
    assert claims["aud"] == auth_server.token_url
    assert len(set(auth_server.fhir_requests)) == 1
    assert auth.tokens_fetched == 1


async def test_concurrent_requests_share_one_token_request(
    auth_server: AuthServer, wall_clock: Clock, key: PrivateKey
) -> None:
    async with FhirClient(
        auth_server.fhir_url, auth=smart(auth_server, wall_clock, pem(key))
    ) as fhir:
        results = await asyncio.gather(*(fhir.read("Patient", "p1") for _ in range(20)))
    assert len(results) == 20
    assert len(auth_server.token_requests) == 1


async def test_the_token_is_refreshed_before_it_expires(
    auth_server: AuthServer, wall_clock: Clock, key: PrivateKey
) -> None:
    auth = smart(auth_server, wall_clock, pem(key), refresh_margin=60.0)
    async with FhirClient(auth_server.fhir_url, auth=auth) as fhir:
        await fhir.read("Patient", "p1")
        first_expires = next(iter(auth_server.tokens.values()))
        wall_clock.now += 200  # 100 s left: still cached
        await fhir.read("Patient", "p1")
        assert len(auth_server.token_requests) == 1
        wall_clock.now += 50  # 50 s left, inside the margin: a new token, the old one still valid
        await fhir.read("Patient", "p1")

    assert len(auth_server.token_requests) == 2
    refreshed_at = auth_server.token_requests[1][0]
    assert refreshed_at < first_expires
    assert len(set(auth_server.fhir_requests)) == 2
    jtis = [claims["jti"] for _, claims in auth_server.token_requests if claims]
    assert len(set(jtis)) == 2


async def test_a_401_on_a_read_refreshes_once_and_retries(
    auth_server: AuthServer, wall_clock: Clock, key: PrivateKey
) -> None:
    async with FhirClient(
        auth_server.fhir_url, auth=smart(auth_server, wall_clock, pem(key))
    ) as fhir:
        await fhir.read("Patient", "p1")
        auth_server.revoke_all()
        assert (await fhir.read("Patient", "p1"))["id"] == "p1"
        assert len(auth_server.token_requests) == 2

        auth_server.revoke_all()
        with pytest.raises(FhirAuthError) as caught:  # a write is not retried
            await fhir.create({"resourceType": "Patient"})
    assert caught.value.status == 401
    assert len(auth_server.token_requests) == 2


async def test_a_wrong_key_is_refused_with_a_clear_error(
    auth_server: AuthServer, wall_clock: Clock, algorithm: str
) -> None:
    impostor = pem(new_key(algorithm))
    auth = smart(auth_server, wall_clock, impostor)
    async with FhirClient(auth_server.fhir_url, auth=auth) as fhir:
        with pytest.raises(FhirAuthError) as caught:
            await fhir.read("Patient", "p1")
    message = str(caught.value)
    assert "token endpoint refused the client assertion" in message
    assert "invalid_client" in message
    assert caught.value.status == 401
    assert auth_server.token_requests == [(wall_clock.now, None)]
    assert auth_server.fhir_requests == []


def test_the_assertion_follows_smart(
    auth_server: AuthServer, wall_clock: Clock, key: PrivateKey
) -> None:
    auth = smart(auth_server, wall_clock, pem(key))
    first, second = auth.client_assertion(), auth.client_assertion()
    claims = [
        jwt.decode(
            a,
            key.public_key(),
            [auth_server.algorithm],
            options={"verify_exp": False, "verify_iat": False},
            audience=auth_server.token_url,
        )
        for a in (first, second)
    ]
    assert claims[0]["jti"] != claims[1]["jti"]
    assert claims[0]["iss"] == claims[0]["sub"] == CLIENT_ID
    assert 0 < claims[0]["exp"] - wall_clock.now <= 300
    header = jwt.get_unverified_header(first)
    assert (header["alg"], header["kid"]) == (auth_server.algorithm, KID)


def test_secrets_stay_out_of_reprs(
    auth_server: AuthServer, wall_clock: Clock, key: PrivateKey
) -> None:
    auth = smart(auth_server, wall_clock, pem(key))
    text = repr(auth) + str(auth) + repr(FhirClient("https://ehr.test/fhir", auth=auth))
    assert CLIENT_ID in text
    assert "PRIVATE KEY" not in text
    assert "hunter2" not in repr(BasicAuth("svc", "hunter2"))
    assert "s3cr3t-token" not in repr(BearerAuth("s3cr3t-token"))


@pytest.mark.parametrize(("wanted", "other"), [("RS384", "ES384"), ("ES384", "RS384")])
def test_a_key_of_the_wrong_kind_is_refused(wanted: str, other: str) -> None:
    with pytest.raises(InvalidInput, match=f"{wanted} needs"):
        SmartBackendAuth(
            token_url="https://auth.test/token",
            client_id=CLIENT_ID,
            private_key=pem(new_key(other)),
            algorithm=wanted,
        )


async def test_basic_and_bearer_headers() -> None:
    assert await BasicAuth("svc", "pw").authorization() == "Basic c3ZjOnB3"
    assert await BearerAuth("abc").authorization() == "Bearer abc"
