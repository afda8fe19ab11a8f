"""``ehrbridge serve``: the agent API over HTTP (and MCP at ``/mcp``) under uvicorn.

It opens the world model's store and, on the same database, the API keys and the audit trail,
builds :class:`~ehrbridge.api.service.AgentService` and :func:`~ehrbridge.api.http.create_app`
with the MCP endpoint mounted at ``/mcp`` when :mod:`ehrbridge.api.mcp` offers one, and serves
until SIGINT or SIGTERM. Once the socket is bound it prints the URL it listens on (``--port 0``
picks a free port).

``--workers N`` (default: one per CPU this process may run on, at most
:data:`MAX_DEFAULT_WORKERS`) serves from N processes: one process serves the API on one core, and
the API keeps no state between requests (MCP runs stateless), so processes add capacity. This
process then only supervises: it checks the port is free and opens the database once (creating
and migrating it), binds one ``SO_REUSEPORT`` socket per worker on the port, starts the workers
(spawned, each with its own store connection, key cache and audit group commit), prints the URL
once every worker listens, starts a worker again if one dies, and on SIGINT or SIGTERM stops them
all gracefully. The kernel spreads new connections over the workers' sockets; with one shared
socket, asyncio's accept loop let one process take a whole burst of keep-alive connections and
the others none. SQLite serialises the workers' writes (WAL, ``BEGIN IMMEDIATE``, a busy
timeout).

uvicorn's access log is off: it writes every request's path and query, and paths carry entity
and call ids. The app logs one line per request itself (method, route template, status,
duration, request id).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from rich.console import Console
from starlette.types import ASGIApp

from ehrbridge.api.store import DEFAULT_MAX_BODY, ApiKeys
from ehrbridge.errors import EhrbridgeError, InvalidInput
from ehrbridge.logs import configure_logging
from ehrbridge.storage import open_backend

if TYPE_CHECKING:
    from ehrbridge.api.service import AgentService
    from ehrbridge.worldmodel.store import Store

#: where the MCP endpoint is mounted
MCP_PATH = "/mcp"
#: most worker processes ``--workers`` defaults to: SQLite has one writer, and every request
#: commits audit rows, so more processes than this mostly wait for each other's commits
MAX_DEFAULT_WORKERS = 4
#: how long a stopping worker may finish its requests before it is killed (seconds)
STOP_TIMEOUT = 30.0
#: the kernel's queue of connections not yet accepted, per listening socket
BACKLOG = 2048
#: how long (seconds) a thread that wants the GIL waits before the running one must yield it.
#: A server process has two busy threads, the event loop and the store's SQLite thread; at
#: Python's 5 ms each hand-over can wait up to 5 ms, with a SQLite write lock held meanwhile.
GIL_SWITCH_INTERVAL = 0.0005
#: prctl(2) option: the signal a process gets when its parent dies (Linux)
PR_SET_PDEATHSIG = 1

console = Console(stderr=True)
logger = logging.getLogger(__name__)


def mcp_mounts(service: AgentService, keys: ApiKeys) -> list[tuple[str, ASGIApp]]:
    """``[("/mcp", the MCP endpoint)]`` when :mod:`ehrbridge.api.mcp` offers a streamable-HTTP
    app; empty (and a warning) when it cannot be imported."""
    try:
        from ehrbridge.api.mcp import streamable_http_app
    except ImportError as exc:
        logger.warning("MCP not mounted: ehrbridge.api.mcp is unavailable (%s)", exc.name)
        return []
    return [(MCP_PATH, streamable_http_app(service, keys))]


def default_workers() -> int:
    """One worker per CPU this process may run on, at most :data:`MAX_DEFAULT_WORKERS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


def url_of(sock: socket.socket, host: str) -> str:
    """The base URL a client uses for the bound ``sock``."""
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def uvicorn_config(app: ASGIApp, **logging_options: Any) -> uvicorn.Config:
    """How the API is served: no access log (uvicorn would log paths and queries), no lifespan
    (a mounted MCP app starts its session manager on its first request), no Server header.
    ``logging_options`` (``log_level``, ``log_config``) change how uvicorn logs, nothing else."""
    options: dict[str, Any] = {"log_level": "warning", **logging_options}
    return uvicorn.Config(
        app, access_log=False, lifespan="off", server_header=False, loop="asyncio", **options
    )


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it listens."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn raises a captured SIGTERM again once it has shut down, which kills the
        # process before the store is closed; a SIGTERM is a graceful stop: exit 0
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_listening()


async def serve(
    db: str,
    sock: socket.socket,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    prompt_budget: int | None = None,
    on_listening: Callable[[], None] = lambda: None,
) -> None:
    """Serve the API on the bound ``sock`` until uvicorn is told to stop."""
    # FastAPI and the service load here, not when the ``ehrbridge`` command starts.
    from ehrbridge.api.http import create_app
    from ehrbridge.api.service import AgentService, Limits
    from ehrbridge.worldmodel.model import WorldModel

    backend = await open_backend(db)
    store, security = backend.worldmodel, backend.security
    try:
        limits = Limits(prompt_budget=prompt_budget) if prompt_budget else Limits()
        service = AgentService(
            lambda ws: WorldModel(store, ws),
            security,
            limits=limits,
            review=backend.review,
            outbox=backend.outbox,
        )
        app = create_app(
            service, security, max_body_bytes=max_body, mounts=mcp_mounts(service, security)
        )
        warming: set[asyncio.Task[None]] = set()

        def listening() -> None:
            on_listening()
            task = asyncio.get_running_loop().create_task(_warm(service, store))
            warming.add(task)
            task.add_done_callback(warming.discard)

        await _Server(uvicorn_config(app), listening).serve(sockets=[sock])
        for task in warming:
            task.cancel()
    finally:
        await backend.close()


async def _warm(service: AgentService, store: Store) -> None:
    """Build the slot indexes in the background once the server listens (a failure is logged,
    and the first search builds them instead)."""
    try:
        started = time.perf_counter()
        slots = await service.warm_slots(await store.workspaces())
        elapsed = time.perf_counter() - started
        logger.info("slot index ready: %d slots (%.1f s)", slots, elapsed)
    except asyncio.CancelledError:
        logger.info("slot index not built ahead: the server stopped first")
        raise
    except Exception as exc:  # a background task: never the server's end, never a value logged
        logger.warning("slot index not built ahead: %s", type(exc).__name__)


def _worker(
    db: str,
    sock: socket.socket,
    max_body: int,
    prompt_budget: int | None,
    ready: Connection,
    supervisor: int,
) -> None:  # pragma: no cover (runs in a worker process; the acceptance tests start them)
    """A worker process: :func:`serve` on its socket, telling the supervisor when it listens."""
    _stop_with_parent(supervisor)
    configure_logging()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)

    def listening() -> None:
        ready.send(os.getpid())
        ready.close()

    try:
        asyncio.run(
            serve(db, sock, max_body=max_body, prompt_budget=prompt_budget, on_listening=listening)
        )
    except KeyboardInterrupt:
        pass  # a Ctrl-C reaches the whole process group; the supervisor stops as well
    except EhrbridgeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2 if isinstance(exc, InvalidInput) else 1)
    finally:
        sock.close()


def _stop_with_parent(supervisor: int) -> None:  # pragma: no cover (in a worker process)
    """SIGTERM this worker when its supervisor dies, even by SIGKILL (Linux's parent-death
    signal), so no orphan keeps serving the port; a no-op where prctl is missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)


async def prepare_database(db: str) -> None:
    """Open the database once before the workers do: it is created and migrated here, not by
    several processes at once, and a bad ``--db`` fails before any worker starts."""
    backend = await open_backend(db)
    await backend.close()


@dataclass
class _Worker:
    """One worker process and the socket it accepts on (kept here, to give to a replacement)."""

    sock: socket.socket
    process: BaseProcess | None = None
    ready: Connection | None = None
    pid: int = 0
    listening: bool = False


@dataclass
class Supervisor:
    """Runs :func:`serve` in one spawned process per socket until SIGINT or SIGTERM."""

    db: str
    sockets: list[socket.socket]
    max_body: int = DEFAULT_MAX_BODY
    prompt_budget: int | None = None
    on_listening: Callable[[], None] = lambda: None
    workers: list[_Worker] = field(init=False)
    #: the signal that stopped the supervisor, if any
    stopped_by: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.workers = [_Worker(sock=sock) for sock in self.sockets]
        self._context = multiprocessing.get_context("spawn")

    def _start(self, worker: _Worker) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker,
            args=(self.db, worker.sock, self.max_body, self.prompt_budget, sender, os.getpid()),
            name="ehrbridge-api-worker",
        )
        process.start()
        sender.close()
        worker.process, worker.ready, worker.pid, worker.listening = process, receiver, 0, False

    def run(self) -> int:
        """Serve until a signal; the exit status (0 after SIGTERM, 130 after SIGINT, else the
        status of a worker that could not start)."""
        wakeup_in, wakeup_out = socket.socketpair()
        wakeup_in.setblocking(False)
        wakeup_out.setblocking(False)
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        old_fd = signal.set_wakeup_fd(wakeup_out.fileno(), warn_on_full_buffer=False)

        def stop(sig: int, frame: FrameType | None) -> None:
            if self.stopped_by is None:
                self.stopped_by = sig

        for sig in previous:
            signal.signal(sig, stop)
        try:
            for worker in self.workers:
                self._start(worker)
            return self._supervise(wakeup_in)
        finally:
            self._stop_all()
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            wakeup_in.close()
            wakeup_out.close()

    def _supervise(self, wakeup: socket.socket) -> int:
        announced = False
        while self.stopped_by is None:
            waiting: list[Any] = [wakeup]
            for worker in self.workers:
                assert worker.process is not None
                waiting.append(worker.process.sentinel)
                if worker.ready is not None:
                    waiting.append(worker.ready)
            for ready in wait(waiting):
                if ready is wakeup:
                    while True:  # drain: the signal handler has set stopped_by
                        try:
                            if not wakeup.recv(64):
                                break
                        except BlockingIOError:
                            break
            for worker in self.workers:
                status = self._check(worker)
                if status is not None:
                    return status
            if not announced and all(w.listening for w in self.workers):
                announced = True
                pids = ", ".join(str(w.pid) for w in self.workers)
                logger.info("serving from %d worker processes (pids %s)", len(self.workers), pids)
                self.on_listening()
        return 130 if self.stopped_by == signal.SIGINT else 0

    def _check(self, worker: _Worker) -> int | None:
        """Take note of a worker that listens or has exited; a status to exit with when a
        worker could not start."""
        assert worker.process is not None
        if worker.ready is not None and worker.ready.poll():
            try:
                worker.pid = worker.ready.recv()
                worker.listening = True
            except EOFError:
                pass  # it exited before it listened: its sentinel says so
            worker.ready.close()
            worker.ready = None
        if worker.process.is_alive() or self.stopped_by is not None:
            return None
        code = worker.process.exitcode
        if not worker.listening:
            logger.error("a worker process exited with status %s before it listened", code)
            return code if code else 1
        logger.warning(
            "worker process %d exited with status %s; starting another", worker.pid, code
        )
        self._start(worker)
        return None

    def _stop_all(self) -> None:
        running = [
            w.process for w in self.workers if w.process is not None and w.process.is_alive()
        ]
        for process in running:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in running:
            process.join(STOP_TIMEOUT)
            if process.is_alive():
                logger.warning("worker process %s did not stop in time; killed", process.pid)
                process.kill()
                process.join()
        for worker in self.workers:
            if worker.ready is not None:
                worker.ready.close()
                worker.ready = None
