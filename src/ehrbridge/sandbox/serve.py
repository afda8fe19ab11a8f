"""Running the sandbox under uvicorn: in a background thread (tests, the demo) or in the foreground
(``ehrbridge sandbox``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn

from ehrbridge.sandbox.app import BASE_PATH, SandboxApp
from ehrbridge.sockets import bind

#: How long uvicorn may take to listen.
START_TIMEOUT = 10.0


def _config(app: SandboxApp, host: str, port: int, log_level: str) -> uvicorn.Config:
    # h11 and no lifespan: the app holds no startup state; access logs off (URLs carry search
    # parameters, which are patient data).
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, http="h11",
        lifespan="off", loop="asyncio",
    )  # fmt: skip


@contextmanager
def running_sandbox(
    app: SandboxApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "critical"
) -> Iterator[str]:
    """Serve ``app`` from a background thread; yields the FHIR base URL, stops on exit."""
    server = uvicorn.Server(_config(app, host, port, log_level))
    thread = threading.Thread(target=server.run, name="sandbox-ehr", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the sandbox did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}{BASE_PATH}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def serve(
    app: SandboxApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_listening: Callable[[str], None] = print,
) -> None:
    """Serve ``app`` in the foreground until SIGINT/SIGTERM; ``on_listening`` gets the FHIR base
    URL once the socket is bound (``port`` 0 picks a free port)."""
    sock = bind(host, port)
    bound = sock.getsockname()
    on_listening(f"http://{host}:{bound[1]}{BASE_PATH}")
    try:
        uvicorn.Server(_config(app, host, bound[1], "warning")).run(sockets=[sock])
    finally:
        sock.close()
