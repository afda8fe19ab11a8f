"""``ehrbridge serve`` in a real process: the command registered on a Typer app as the CLI
registers it, listening on a free port, serving the HTTP API and the MCP endpoint at ``/mcp``
with a workspace key, and stopping cleanly on SIGTERM without having logged patient data."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from ehrbridge.api.serve import serve_command, url_of
from ehrbridge.api.storage import open_security_store
from ehrbridge.fhir.importer import Importer
from ehrbridge.sample import SAMPLE_SOURCE, sample_bundle
from ehrbridge.sockets import bind
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.sqlite import SQLiteStore

WS = "clinic"
MARIA_PHONE = "+16175550142"
#: ``ehrbridge serve``, as cli.py registers it
COMMAND = (
    "import typer\n"
    "from ehrbridge.api.serve import serve_command\n"
    "app = typer.Typer()\n"
    "app.command('serve')(serve_command)\n"
    "app.command('other')(lambda: None)\n"
    "app()\n"
)


async def _clinic(db: Path) -> tuple[str, str]:
    """The sample clinic in ``db``: (an agent key's secret, Maria's entity id)."""
    store = await SQLiteStore.open(db)
    try:
        model = WorldModel(store, WS)
        report = await Importer(model, source=SAMPLE_SOURCE).import_paths([sample_bundle()])
        assert not report.errors
        key = RecordKey(data_source=SAMPLE_SOURCE, resource_type="Patient", external_id="pat-1001")
        found = await store.record_entities(WS, [key])
        secret, _ = await open_security_store(store).create_key(WS, "agent", name="phone bot")
        return secret, found[key][1]
    finally:
        await store.close()


@dataclass
class Server:
    url: str
    key: str
    maria: str
    process: subprocess.Popen[str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    db = tmp_path / "wm.db"
    key, maria = asyncio.run(_clinic(db))
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [sys.executable, "-c", COMMAND, "serve", "--db", f"sqlite:///{db}", "--port", "0",
         "--max-body", "65536", "--prompt-budget", "500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("ehrbridge API listening on http://127.0.0.1:"), line
        url = line.split()[4]
        yield Server(url=url, key=key, maria=maria, process=process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_serves_the_api_and_mcp_until_sigterm(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        document = client.get("/openapi.json").json()
        assert "/v1/ambient/context" in document["paths"]
        ambient = client.post("/v1/ambient/context", json={"phone": "(617) 555-0142"}, headers=auth)
        assert ambient.status_code == 200
        answer = ambient.json()
        assert answer["context"]["patient"]["entity_id"] == server.maria
        assert len(answer["prompt"]) <= 500  # --prompt-budget
        refused = client.post("/v1/ambient/context", json={"phone": MARIA_PHONE})
        assert refused.status_code == 401
        too_big = client.post(
            "/v1/calls/c1/transcript", json={"transcript": "x" * 70_000}, headers=auth
        )
        assert too_big.status_code == 413  # --max-body
        # the MCP endpoint is mounted at /mcp, behind the same keys
        rpc = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"},
            },
        }
        accept = {"Accept": "application/json, text/event-stream"}
        assert client.post("/mcp/", json=rpc, headers=accept).status_code == 401
        mcp = client.post("/mcp/", json=rpc, headers={**auth, **accept})
        assert mcp.status_code == 200, mcp.text
        assert mcp.json()["result"]["serverInfo"]["name"] == "ehrbridge"
    server.process.send_signal(signal.SIGTERM)
    out, err = server.process.communicate(timeout=30)
    assert server.process.returncode == 0, err
    logged = out + err
    for planted in ("555-0142", "6175550142", "Santos", server.maria):
        assert planted not in logged
    assert "POST /v1/ambient/context 200" in logged
    assert "POST /mcp 200" in logged


def test_the_command_offers_its_options_and_reports_a_busy_port(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("serve")(serve_command)
    app.command("other")(lambda: None)
    runner = CliRunner()
    usage = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert usage.exit_code == 0
    for option in ("--db", "--host", "--port", "--max-body", "--prompt-budget"):
        assert option in usage.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(
            app, ["serve", "--db", f"sqlite:///{tmp_path / 'wm.db'}", "--port", str(port)]
        )
    assert busy.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in busy.output


def test_the_listening_socket_is_tcp_so_connections_get_nodelay() -> None:
    # asyncio turns Nagle off only for sockets created with IPPROTO_TCP; without it every
    # response waited out the client's delayed ACK (44 ms per request on loopback)
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert url_of(sock, "127.0.0.1") == f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
