"""``ehrbridge serve`` in a real process: the command registered on a Typer app as the CLI
registers it, listening on a free port, serving the HTTP API and the MCP endpoint at ``/mcp``
with a workspace key, and stopping cleanly on SIGTERM without having logged patient data."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from ehrbridge.api.serve import url_of
from ehrbridge.cli.serve import serve_command
from ehrbridge.fhir.importer import Importer
from ehrbridge.sample import SAMPLE_SOURCE, sample_bundle
from ehrbridge.sockets import bind
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel

WS = "clinic"
MARIA_PHONE = "+16175550142"
#: ``ehrbridge serve``, as cli.py registers it
COMMAND = (
    "import typer\n"
    "from ehrbridge.cli.serve import serve_command\n"
    "app = typer.Typer()\n"
    "app.command('serve')(serve_command)\n"
    "app.command('other')(lambda: None)\n"
    "app()\n"
)


async def _clinic(db: Path) -> tuple[str, str]:
    """The sample clinic in ``db``: (an agent key's secret, Maria's entity id)."""
    backend = await open_backend(f"sqlite:///{db}")
    store = backend.worldmodel
    try:
        model = WorldModel(store, WS)
        report = await Importer(model, source=SAMPLE_SOURCE).import_paths([sample_bundle()])
        assert not report.errors
        key = RecordKey(data_source=SAMPLE_SOURCE, resource_type="Patient", external_id="pat-1001")
        found = await store.record_entities(WS, [key])
        secret, _ = await backend.security.create_key(WS, "agent", name="phone bot")
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
    # built as the server started (or, on a very slow machine, stopped by the SIGTERM first)
    assert "slot index ready: 0 slots" in logged or "slot index not built ahead: the" in logged


def test_the_command_offers_its_options_and_reports_a_busy_port(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("serve")(serve_command)
    app.command("other")(lambda: None)
    runner = CliRunner()
    usage = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert usage.exit_code == 0
    for option in ("--db", "--host", "--port", "--max-body", "--prompt-budget", "--workers"):
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


# --- several worker processes ----------------------------------------------------------------


def _start(db: Path, *options: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [sys.executable, "-c", COMMAND, "serve", "--db", f"sqlite:///{db}", "--port", "0",
         *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ehrbridge API listening on http://127.0.0.1:"):
        process.kill()
        raise AssertionError(line + process.communicate(timeout=30)[1])
    return process, line.split()[4]


class RawConnection:
    """One keep-alive HTTP/1.1 connection whose socket the test can see (to find the process
    on the other end)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def request(self, method: str, path: str, key: str, body: object = None) -> tuple[int, bytes]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + payload)
        status = int(self.file.readline().split()[1])
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, self.file.read(length)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _workers(pid: int) -> list[int]:
    """The worker processes of the supervisor ``pid`` (not multiprocessing's resource tracker,
    which outlives it by a moment)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in command:  # the parent pid
            found.append(int(stat.parent.name))
    return found


def _server_end(server_port: int, client_port: int) -> int:
    """The socket inode of the server's end of the loopback connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return inode
    raise AssertionError(f"no server end for port {client_port}")


def _serving_pid(workers: list[int], server_port: int, connection: RawConnection) -> int:
    """The worker process holding the server end of ``connection``."""
    wanted = f"socket:[{_server_end(server_port, connection.sock.getsockname()[1])}]"
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == wanted:
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the connection")


def _connections_on_each(
    process: subprocess.Popen[str], url: str, key: str, per_worker: int
) -> dict[int, list[RawConnection]]:
    """Connections until each worker process serves ``per_worker`` of them (the kernel spreads
    connections over the workers; each new one lands on any of them)."""
    port = int(url.rsplit(":", 1)[1])
    workers = _workers(process.pid)
    by_pid: dict[int, list[RawConnection]] = {}
    spare: list[RawConnection] = []
    for _ in range(200):
        connection = RawConnection(port)
        status, _ = connection.request("GET", "/healthz", key)
        assert status == 200
        pid = _serving_pid(workers, port, connection)
        held = by_pid.setdefault(pid, [])
        (held if len(held) < per_worker else spare).append(connection)
        if len(by_pid) == 2 and all(len(c) == per_worker for c in by_pid.values()):
            break
    for connection in spare:
        connection.close()
    return by_pid


needs_proc = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="finds connections' processes through /proc"
)


@needs_proc
def test_two_workers_serve_from_two_processes_and_stop_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "wm.db"
    key, maria = asyncio.run(_clinic(db))
    process, url = _start(db, "--workers", "2")
    try:
        by_pid = _connections_on_each(process, url, key, per_worker=1)
        assert len(by_pid) == 2  # two processes, both serving
        assert process.pid not in by_pid  # the supervisor serves nothing itself
        for [connection] in by_pid.values():
            status, body = connection.request(
                "POST", "/v1/ambient/context", key, {"phone": MARIA_PHONE}
            )
            assert status == 200
            assert json.loads(body)["context"]["patient"]["entity_id"] == maria
            connection.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, err
    assert not [pid for pid in by_pid if Path(f"/proc/{pid}").exists()]  # both workers exited
    assert "serving from 2 worker processes" in err
    assert err.count("POST /v1/ambient/context 200") == 2
    for planted in ("555-0142", "6175550142", "Santos", maria):
        assert planted not in out + err


@needs_proc
def test_two_workers_stop_on_sigint(tmp_path: Path) -> None:
    db = tmp_path / "wm.db"
    asyncio.run(_clinic(db))
    process, _ = _start(db, "--workers", "2")
    workers = _workers(process.pid)
    assert len(workers) == 2
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


@needs_proc
def test_concurrent_writes_through_two_workers_all_land_and_are_audited(tmp_path: Path) -> None:
    db = tmp_path / "wm.db"
    key, maria = asyncio.run(_clinic(db))
    process, url = _start(db, "--workers", "2")
    writes_per_connection = 15
    try:
        by_pid = _connections_on_each(process, url, key, per_worker=3)
        connections = [c for held in by_pid.values() for c in held]

        def write(n: int, connection: RawConnection) -> list[tuple[int, str, str]]:
            results = []
            for i in range(writes_per_connection):
                call = f"call-{n}-{i}"
                status, body = connection.request(
                    "POST",
                    "/v1/observations",
                    key,
                    {
                        "entity_type": "Patient",
                        "entity_id": maria,
                        "fields": {"phone.work": f"+1617555{n:02d}{i:02d}"},
                        "level": "confirmed",
                        "call_id": call,
                    },
                )
                answer = json.loads(body)
                results.append((status, str(answer.get("status")), str(answer.get("event_id"))))
            return results

        with ThreadPoolExecutor(len(connections)) as pool:
            done = [r for rs in pool.map(write, range(len(connections)), connections) for r in rs]
        for connection in connections:
            connection.close()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, err
    assert "database is locked" not in err
    total = len(connections) * writes_per_connection
    assert [(status, outcome) for status, outcome, _ in done] == [(200, "recorded")] * total
    event_ids = {event_id for _, _, event_id in done}
    assert len(event_ids) == total

    async def stored() -> tuple[set[str], list[str]]:
        backend = await open_backend(f"sqlite:///{db}")
        store = backend.worldmodel
        try:
            events = await WorldModel(store, WS).events("Patient", maria)
            audit = await backend.security.query_audit(WS, action="observations.write", limit=1000)
            return {e.id for e in events}, [str(e.request_id) for e in audit]
        finally:
            await store.close()

    logged, audited = asyncio.run(stored())
    assert event_ids <= logged  # every write landed
    assert len(audited) == total  # and each was audited once
    assert len(set(audited)) == total


@needs_proc
def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves the supervisor no chance to stop its workers: they stop themselves."""
    db = tmp_path / "wm.db"
    asyncio.run(_clinic(db))
    process, _ = _start(db, "--workers", "2")
    workers = _workers(process.pid)
    assert len(workers) == 2
    process.kill()
    process.communicate(timeout=60)
    for _ in range(600):  # a liveness bound, not a timing assertion
        if not [pid for pid in workers if _alive(pid)]:
            break
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
