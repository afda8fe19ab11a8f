"""REST auth: the headers of each kind, OAuth2 token caching and refresh, no secret shown."""

from __future__ import annotations

import httpx
import pytest

from ehrbridge.connectors.rest.auth import ClientCredentialsAuth, rest_auth
from ehrbridge.connectors.source import AuthConfig, SecretRef
from ehrbridge.errors import InvalidInput, RestAuthError
from tests.rest_sources import BETA_CLIENT, BETA_SECRET, RestSources

TOKEN_URL = "http://sources.test/beta/oauth/token"


def ref(name: str) -> SecretRef:
    return SecretRef(env=name, where=f"config.yaml:7: data_sources[0].auth.{name.lower()}")


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSWORD", "pa:ss")
    monkeypatch.setenv("TOKEN", "tok-1")
    monkeypatch.setenv("KEY", "key-1")
    monkeypatch.setenv("SECRET", BETA_SECRET)


BASIC = AuthConfig(
    kind="basic", settings={"username": "ehr"}, secrets={"password": ref("PASSWORD")}
)
BEARER = AuthConfig(kind="bearer", secrets={"token": ref("TOKEN")})
API_KEY = AuthConfig(kind="api_key", settings={"header": "X-Api-Key"}, secrets={"key": ref("KEY")})


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (AuthConfig(), {}),
        (BASIC, {"Authorization": "Basic ZWhyOnBhOnNz"}),
        (BEARER, {"Authorization": "Bearer tok-1"}),
        (API_KEY, {"X-Api-Key": "key-1"}),
        (AuthConfig(kind="api_key", secrets={"key": ref("KEY")}), {"X-API-Key": "key-1"}),
    ],
)
async def test_the_headers_of_each_kind(auth: AuthConfig, expected: dict[str, str]) -> None:
    built = rest_auth(auth)
    assert await built.headers() == expected
    assert "tok-1" not in repr(built) and "key-1" not in repr(built) and "pa:ss" not in repr(built)


async def test_a_secret_is_read_at_use_so_a_rotated_one_is_picked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = rest_auth(AuthConfig(kind="bearer", secrets={"token": ref("TOKEN")}))
    first = await built.headers()
    monkeypatch.setenv("TOKEN", "tok-2")
    assert await built.headers() == {"Authorization": "Bearer tok-2"}
    # after a 401, a changed secret is worth one more try; the same one is not
    assert await built.refresh(first) is True
    assert await built.refresh(await built.headers()) is False


async def test_a_missing_secret_names_the_reference_not_a_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOKEN")
    built = rest_auth(AuthConfig(kind="bearer", secrets={"token": ref("TOKEN")}))
    with pytest.raises(InvalidInput) as caught:
        await built.headers()
    assert str(caught.value) == (
        "config.yaml:7: data_sources[0].auth.token: environment variable TOKEN is not set"
    )


def test_smart_auth_is_for_fhir_sources() -> None:
    with pytest.raises(InvalidInput, match="a rest data source takes none, basic, bearer"):
        rest_auth(AuthConfig(kind="smart"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oauth(sources: RestSources, clock: Clock, env: str = "SECRET") -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        token_url=TOKEN_URL,
        client_id=BETA_CLIENT,
        client_secret=ref(env),
        scope="visits.read",
        transport=httpx.ASGITransport(app=sources.app()),
        clock=clock,
    )


async def test_oauth2_tokens_are_cached_until_shortly_before_they_expire() -> None:
    sources, clock = RestSources(), Clock()
    auth = oauth(sources, clock)
    try:
        assert await auth.headers() == {"Authorization": "Bearer beta-token-1"}
        clock.now += 3600 - 61  # the token lives 3600 s; renewed 60 s before the end
        assert await auth.headers() == {"Authorization": "Bearer beta-token-1"}
        clock.now += 1
        assert await auth.headers() == {"Authorization": "Bearer beta-token-2"}
        assert auth.tokens_fetched == 2
        assert BETA_SECRET not in repr(auth)
    finally:
        await auth.aclose()


async def test_oauth2_refresh_fetches_once_for_a_rejected_token() -> None:
    sources, clock = RestSources(), Clock()
    auth = oauth(sources, clock)
    try:
        rejected = await auth.headers()
        assert await auth.refresh(rejected) is True
        assert await auth.refresh(rejected) is True  # a second caller with the old token
        assert auth.tokens_fetched == 2
        assert await auth.headers() == {"Authorization": "Bearer beta-token-2"}
    finally:
        await auth.aclose()


async def test_a_refused_client_says_so_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG", "not-the-secret")
    auth = oauth(RestSources(), Clock(), env="WRONG")
    try:
        with pytest.raises(RestAuthError) as caught:
            await auth.headers()
    finally:
        await auth.aclose()
    assert str(caught.value) == (
        "OAuth2 token POST /beta/oauth/token: HTTP 401: "
        "the token endpoint refused the client credentials (invalid_client)"
    )
    assert "not-the-secret" not in str(caught.value)
