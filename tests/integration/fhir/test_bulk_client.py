"""The Bulk Data client against the sandbox on a real socket: polling honours ``Retry-After``,
transient failures are retried, a failed job is a clear error, files are streamed in units.

Sleeps are recorded, never waited: the client gets a fake ``sleep``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from ehrbridge.errors import ExportFailed, FhirError, FhirNotFound, FhirUnavailable
from ehrbridge.fhir.bulk import BulkClient, Manifest, OutputFile, PollPolicy
from ehrbridge.fhir.client import FhirClient
from ehrbridge.http.retry import RetryPolicy
from ehrbridge.sandbox.export import FILE_SIZE
from tests.sandbox_server import SandboxServer


class Sleeps:
    """A fake ``asyncio.sleep`` that records the delays (and lets the event loop run)."""

    def __init__(self, server: SandboxServer, *, unpause_after: int | None = None) -> None:
        self.server = server
        self.unpause_after = unpause_after
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.unpause_after is not None and len(self.delays) >= self.unpause_after:
            self.server.app.exports.paused = False


@pytest.fixture
async def server(sandbox: SandboxServer) -> AsyncIterator[SandboxServer]:
    await sandbox.reset()
    sandbox.app.exports.file_size = 3
    async with FhirClient(sandbox.base_url) as fhir:
        for i in range(7):
            await fhir.create({"resourceType": "Patient", "name": [{"family": f"P{i}"}]})
    yield sandbox
    sandbox.app.exports.paused = False
    sandbox.app.exports.file_size = FILE_SIZE


def client(server: SandboxServer, sleeps: Sleeps, **policy: float) -> BulkClient:
    return BulkClient(
        server.base_url,
        sleep=sleeps,
        retry=RetryPolicy(max_retries=4),
        poll=PollPolicy(**policy),
    )


async def test_polling_honours_retry_after_and_429s_on_the_status_url(
    server: SandboxServer,
) -> None:
    sleeps = Sleeps(server, unpause_after=4)
    server.app.exports.paused = True
    server.app.exports.retry_after = 2
    try:
        async with client(server, sleeps) as bulk:
            status_url = await bulk.kick_off(types=["Patient"])
            server.app.faults.set(throttle=2, retry_after=5)
            manifest = await bulk.wait(status_url)
    finally:
        server.app.exports.retry_after = 1
    # Two 429s (Retry-After 5), then 202s (Retry-After 2) until the job may finish.
    assert sleeps.delays[:4] == [5.0, 5.0, 2.0, 2.0]
    assert set(sleeps.delays[4:]) <= {2.0}
    assert server.app.faults.injected == {"throttle": 2}
    assert [(o.type, o.count) for o in manifest.output] == [("Patient", 3)] * 2 + [("Patient", 1)]


async def test_a_retry_after_over_the_cap_is_capped(server: SandboxServer) -> None:
    sleeps = Sleeps(server, unpause_after=1)
    server.app.exports.paused = True
    server.app.exports.retry_after = 3600
    try:
        async with client(server, sleeps, max_wait=10.0) as bulk:
            await bulk.wait(await bulk.kick_off())
    finally:
        server.app.exports.retry_after = 1
    assert sleeps.delays[0] == 10.0


async def test_transient_5xx_on_status_is_retried(server: SandboxServer) -> None:
    sleeps = Sleeps(server)
    async with client(server, sleeps) as bulk:
        status_url = await bulk.kick_off()
        server.app.faults.set(errors=2)
        manifest = await bulk.wait(status_url)
    assert server.app.faults.injected == {"error": 2}
    assert sum(o.count or 0 for o in manifest.output) == 7


async def test_a_failed_job_raises_with_the_servers_reason(server: SandboxServer) -> None:
    server.app.exports.fail_next = 1
    async with client(server, Sleeps(server)) as bulk:
        status_url = await bulk.kick_off()
        with pytest.raises(ExportFailed) as caught:
            await bulk.wait(status_url)
    assert caught.value.status == 500
    assert "the export failed" in str(caught.value)
    assert "injected export failure" in str(caught.value)


async def test_a_status_still_failing_after_the_retries_gives_up(server: SandboxServer) -> None:
    async with client(server, Sleeps(server)) as bulk:
        status_url = await bulk.kick_off()
        server.app.faults.set(outage=True)
        with pytest.raises(FhirUnavailable, match="still failing after 4 retries: HTTP 503"):
            await bulk.wait(status_url)


async def test_a_deleted_job_is_not_found(server: SandboxServer) -> None:
    async with client(server, Sleeps(server)) as bulk:
        status_url = await bulk.kick_off()
        await bulk.cancel(status_url)
        with pytest.raises(FhirNotFound):
            await bulk.wait(status_url)


async def test_a_kick_off_the_server_refuses_says_why(server: SandboxServer) -> None:
    async with client(server, Sleeps(server)) as bulk:
        with pytest.raises(FhirError, match="_type: not a FHIR R4 resource type"):
            await bulk.kick_off(types=["Nonsense"])


async def test_files_stream_in_units_of_chunk_entries(server: SandboxServer) -> None:
    async with client(server, Sleeps(server)) as bulk:
        manifest = await bulk.wait(await bulk.kick_off(types=["Patient"]))
        first = manifest.output[0]
        units = [u async for u in bulk.units(first, manifest, chunk=2)]
        # Stopping early releases the connection.
        async with contextlib.aclosing(bulk.units(manifest.output[1], manifest, chunk=1)) as it:
            async for _ in it:
                break
    assert [len(u.entries) for u in units] == [2, 1]
    assert [u.entries[0].position for u in units] == ["line 1", "line 3"]
    assert units[0].file.endswith("/Patient-1.ndjson")
    assert all(e.resource and e.resource["resourceType"] == "Patient" for e in units[0].entries)


async def test_an_expired_file_is_not_found(server: SandboxServer) -> None:
    async with client(server, Sleeps(server)) as bulk:
        manifest = await bulk.wait(await bulk.kick_off())
        gone = OutputFile(type="Patient", url=manifest.output[0].url + "x")
        with pytest.raises(FhirNotFound):
            [u async for u in bulk.units(gone, manifest)]


def test_the_manifest_round_trips_through_json() -> None:
    raw = {
        "transactionTime": "2026-11-24T10:00:00.000001Z",
        "request": "http://x/fhir/$export",
        "requiresAccessToken": True,
        "output": [{"type": "Patient", "url": "http://x/f/1", "count": 3}],
        "error": [{"type": "OperationOutcome", "url": "http://x/f/e"}],
    }
    assert Manifest.from_json(raw).to_json() == raw
