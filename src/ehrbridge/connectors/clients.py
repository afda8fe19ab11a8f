"""One client per data source, made again when the source's config changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from ehrbridge.connectors.source import DataSourceConfig


class Closable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Closable)


class SourceClients(Generic[C]):
    """Clients by data source id: a source whose config changed gets a new client (the old one
    is closed), so a new base URL or credentials take effect at the next poll."""

    def __init__(self, make: Callable[[DataSourceConfig], C]) -> None:
        self._make = make
        self._clients: dict[str, tuple[DataSourceConfig, C]] = {}

    async def get(self, source: DataSourceConfig) -> C:
        """The client for ``source`` as configured now."""
        known = self._clients.get(source.id)
        if known is not None and known[0] == source:
            return known[1]
        if known is not None:
            await known[1].aclose()
        client = self._make(source)
        self._clients[source.id] = (source, client)
        return client

    async def aclose(self) -> None:
        """Close every client."""
        clients, self._clients = self._clients, {}
        for _, client in clients.values():
            await client.aclose()
