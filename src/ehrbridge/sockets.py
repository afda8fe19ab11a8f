"""Listening sockets for the servers ehrbridge runs (the agent API, the sandbox EHR)."""

from __future__ import annotations

import socket


def bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket on ``host:port`` (``port`` 0: a free one), ready to listen.

    The protocol is named: asyncio sets ``TCP_NODELAY`` only on sockets that say they are TCP
    (accepted ones inherit it); without it every small response waits out the peer's delayed ACK,
    about 40 ms on Linux loopback.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
