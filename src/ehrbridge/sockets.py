"""Listening sockets for the servers ehrbridge runs (the agent API, the sandbox EHR)."""

from __future__ import annotations

import socket


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket on ``host:port`` (``port`` 0: a free one), ready to listen; with
    ``reuse_port`` (``SO_REUSEPORT``) several such sockets share the port, the kernel spreading
    new connections over them (one per server process).

    The protocol is named: asyncio sets ``TCP_NODELAY`` only on sockets that say they are TCP
    (accepted ones inherit it); without it every small response waits out the peer's delayed ACK,
    about 40 ms on Linux loopback.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
