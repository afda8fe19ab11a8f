"""A client generated from the served ``/openapi.json`` works (issue 10, third-party clients):
openapi-python-client (a generator nobody here wrote) makes a package from the schema a live
server publishes; the test imports it and makes the main voice write and an ambient call.

The generator runs in its own virtual environment: it pins typer below the version the CLI
needs, so it cannot share the project's (see docs/dependencies.md). Its version is pinned here.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import venv
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ehrbridge.api.http import create_app
from ehrbridge.api.service import AgentService
from ehrbridge.sample import sample_bundle
from ehrbridge.storage import Backend
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.store import Store
from tests.integration.api.test_mcp import serving
from tests.integration.api.test_service import SLOTS, WS, _import

#: the generator, pinned
GENERATOR = "openapi-python-client==0.29.1"
PACKAGE = "ehrbridge_generated_client"


@pytest.fixture(scope="session")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generator's command, installed once per session in a virtual environment of its
    own."""
    home = tmp_path_factory.mktemp("openapi-generator")
    venv.create(home, with_pip=True)
    bin_dir = home / ("Scripts" if sys.platform == "win32" else "bin")
    subprocess.run(  # noqa: S603 (fixed arguments)
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", GENERATOR],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return bin_dir / "openapi-python-client"


@pytest.fixture
async def server(
    store: Store, backend: Backend, clock: FakeClock
) -> AsyncIterator[tuple[str, str, dict[str, str]]]:
    """The sample clinic's API on a loopback socket: its URL, an agent key, the sample ids."""
    ids = await _import(store, WS, [sample_bundle(), SLOTS])
    security = backend.security
    key, _ = await security.create_key(WS, "agent", name="generated client")
    app = create_app(AgentService.on_store(store, security, clock=clock), security)
    async with serving(app, path="") as url:
        yield url, key, ids


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


async def test_a_generated_client_makes_the_voice_write_and_the_ambient_call(
    generator: Path, server: tuple[str, str, dict[str, str]], on_path: Path
) -> None:
    url, key, ids = server
    async with httpx.AsyncClient(base_url=url) as http:
        schema = (await http.get("/openapi.json")).text
    (on_path / "openapi.json").write_text(schema, encoding="utf-8")
    generated = await asyncio.to_thread(
        subprocess.run,
        [
            *(str(generator), "generate", "--path", str(on_path / "openapi.json")),
            *("--output-path", str(on_path / PACKAGE), "--meta", "none"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Unable to parse" not in generated.stdout + generated.stderr  # every schema made it

    client_module: Any = importlib.import_module(PACKAGE)
    models: Any = importlib.import_module(f"{PACKAGE}.models")
    # operation ids read as names: the functions are called what the routes (and tools) are
    write_observation: Any = importlib.import_module(f"{PACKAGE}.api.extracted.write_observation")
    ambient_context: Any = importlib.import_module(f"{PACKAGE}.api.ambient.ambient_context")

    client = client_module.AuthenticatedClient(base_url=url, token=key)
    async with client:
        body = models.ObservationWrite(
            entity_type="Patient",
            entity_id=ids["pat-1001"],
            fields=models.ObservationWriteFields.from_dict({"language": "pt"}),
            level=models.ObservationWriteLevel.MENTIONED,
            call_id="call-1",
        )
        written = await write_observation.asyncio_detailed(client=client, body=body)
        assert written.status_code == 200, written.content
        assert written.parsed.status == "recorded"
        # the EHR's value stays; the voice fact is pending, as the service answers it
        (pending,) = written.parsed.entity.to_dict()["pending"]["language"]
        assert (pending["value"], pending["confidence"]) == ("pt", 0.3)

        ambient = await ambient_context.asyncio_detailed(
            client=client, body=models.AmbientRequest(phone="(617) 555-0142")
        )
        assert ambient.status_code == 200, ambient.content
        assert ambient.parsed.match == "matched"
        assert ambient.parsed.context.patient.entity_id == ids["pat-1001"]
