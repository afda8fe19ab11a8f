"""The sandbox EHR on a real socket for the tests (``ehrbridge.sandbox``).

The session-scoped ``sandbox`` fixture serves an unseeded :class:`SandboxApp` over a SQLite file
with uvicorn on 127.0.0.1, from a background thread; :meth:`SandboxServer.reset` empties it and
clears its faults, like the Medplum server's reset (``tests/fhir_server.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ehrbridge.sandbox.app import SandboxApp
from ehrbridge.sandbox.serve import running_sandbox


@dataclass(frozen=True, kw_only=True)
class SandboxServer:
    """A running sandbox EHR."""

    #: the FHIR base, e.g. ``http://127.0.0.1:41234/fhir/R4``
    base_url: str
    #: the app behind it, for its fault plan and store
    app: SandboxApp

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: where ``/$reset`` and ``/$faults`` live."""
        return self.base_url.removesuffix("/fhir/R4")

    async def reset(self) -> None:
        """Forget every resource and fault (over HTTP, as a client would)."""
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{self.origin}/$reset")
        response.raise_for_status()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    """The sandbox EHR, empty (not seeded), one for the whole session; reset it per test."""
    app = SandboxApp(tmp_path_factory.mktemp("sandbox") / "sandbox.db", seed=False)
    try:
        with running_sandbox(app) as base_url:
            yield SandboxServer(base_url=base_url, app=app)
    finally:
        app.close()
