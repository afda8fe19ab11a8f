"""HTTP pieces shared by the FHIR clients, the REST connector and the outbound sinks.

:mod:`~ehrbridge.http.retry` retries idempotent requests; :mod:`~ehrbridge.http.oauth` caches
OAuth2 access tokens.
"""
