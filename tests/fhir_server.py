"""A real FHIR R4 server for the tests: Medplum's router in Node (``tests/fhirserver``).

The session-scoped ``medplum`` fixture starts ``node tests/fhirserver/server.mjs --port 0`` once,
waits for its ``listening <base url>`` line and stops it at the end of the session. Tests that use
it are marked ``fhir_server``; call :meth:`MedplumServer.reset` (or ``reset_sync``) to start from
an empty server. ``./dev test`` installs the server's npm packages first.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import IO

import httpx
import pytest

SERVER_DIR = Path(__file__).resolve().parent / "fhirserver"
#: How long the server may take to index the R4 definitions and listen.
START_TIMEOUT = 60.0
_READY_PREFIX = "listening "


@dataclass(frozen=True, kw_only=True)
class MedplumServer:
    """A running test FHIR server."""

    #: the FHIR base, e.g. ``http://127.0.0.1:41234/fhir/R4``
    base_url: str
    #: ``POST`` here to forget every resource
    reset_url: str

    async def reset(self) -> None:
        """Forget every resource on the server."""
        async with httpx.AsyncClient() as client:
            response = await client.post(self.reset_url)
        response.raise_for_status()

    def reset_sync(self) -> None:
        """Forget every resource on the server (for sync code)."""
        request = urllib.request.Request(self.reset_url, method="POST")  # noqa: S310 (http, local)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            if response.status != 200:
                pytest.fail(f"the test FHIR server refused $reset: HTTP {response.status}")


def _read_lines(stream: IO[str], lines: Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put("")


class ServerUnavailable(Exception):
    """The test FHIR server cannot be started (missing packages, no Node.js, it crashed)."""


@contextmanager
def running_server() -> Iterator[MedplumServer]:
    """Start the test FHIR server, and stop it on exit (also used by ``bench``)."""
    if not (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        raise ServerUnavailable(
            "the test FHIR server's packages are missing: run `./dev test` "
            "(or `npm ci --prefix tests/fhirserver`)"
        )
    node = shutil.which("node")
    if node is None:
        raise ServerUnavailable("the test FHIR server needs Node.js 20 or newer (no `node`)")
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [node, str(SERVER_DIR / "server.mjs"), "--port", "0"],
        cwd=SERVER_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield MedplumServer(**_wait_until_listening(process))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="session")
def medplum() -> Iterator[MedplumServer]:
    """The test FHIR server (Medplum's FhirRouter over memory), one for the whole session."""
    try:
        with running_server() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(str(exc))


def _wait_until_listening(process: subprocess.Popen[str]) -> dict[str, str]:
    lines: Queue[str] = Queue()
    # A thread drains the output, so a chatty server never blocks on a full pipe.
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except Empty:
            process.kill()
            raise ServerUnavailable(
                f"the test FHIR server did not start in {START_TIMEOUT:.0f}s: {seen}"
            ) from None
        if not line:
            process.wait()
            output = "".join(seen)
            raise ServerUnavailable(
                f"the test FHIR server exited ({process.returncode}):\n{output}"
            )
        if line.startswith(_READY_PREFIX):
            base_url = line.removeprefix(_READY_PREFIX).strip()
            origin = base_url.removesuffix("/fhir/R4")
            return {"base_url": base_url, "reset_url": f"{origin}/$reset"}
        seen.append(line)
