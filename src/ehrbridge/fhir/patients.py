"""Patient search on a FHIR server, with the world model's query shape (see
:mod:`ehrbridge.worldmodel.queries`)."""

from __future__ import annotations

from typing import Any

from ehrbridge.fhir.client import FhirClient
from ehrbridge.worldmodel.queries import DEFAULT_LIMIT, PatientQuery


async def search_fhir_patients(
    client: FhirClient, query: PatientQuery, *, limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """The Patient resources the server matches to ``query``, at most ``limit``."""
    found: list[dict[str, Any]] = []
    params = {**query.fhir_params(), "_count": str(min(limit, 100))}
    async for resource in client.search("Patient", params):
        found.append(resource)
        if len(found) >= limit:
            break
    return found
