"""The FHIR client auth for a data source's auth config, shared by the poller and the backfill."""

from __future__ import annotations

from ehrbridge.connectors.source import AuthConfig
from ehrbridge.errors import InvalidInput
from ehrbridge.fhir.auth import Auth, BasicAuth, BearerAuth, NoAuth, SmartBackendAuth


def fhir_auth(auth: AuthConfig) -> Auth:
    """The FHIR client auth for a source's auth config (secrets read now)."""
    s, secret = auth.settings, auth.secrets
    if auth.kind == "none":
        return NoAuth()
    if auth.kind == "basic":
        return BasicAuth(s["username"], secret["password"].resolve())
    if auth.kind == "bearer":
        return BearerAuth(secret["token"].resolve())
    if auth.kind == "smart":
        return SmartBackendAuth(
            token_url=s["token_url"],
            client_id=s["client_id"],
            private_key=secret["private_key"].resolve(),
            algorithm=s.get("algorithm", "RS384"),
            kid=s.get("key_id"),
            scope=s.get("scope", "system/*.read"),
        )
    raise InvalidInput(
        f"a fhir data source takes none, basic, bearer or smart auth, not {auth.kind}"
    )
