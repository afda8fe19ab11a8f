"""Polling a FHIR R4 server: ``_lastUpdated`` since the cursor less the overlap, page by page.

https://hl7.org/fhir/R4/search.html#lastUpdated. Each poll searches ``_lastUpdated=gt<cursor -
overlap>`` sorted by ``_lastUpdated``, imports the pages through the FHIR importer (unchanged
records write no events, so the overlap costs reads, never duplicates), and moves the cursor only
after every page's import committed: to the newest ``meta.lastUpdated`` stored, and never past an
entry that failed (it is read again next time, e.g. once the Patient it refers to has arrived). A
poll cut short leaves the cursor where it was; the next one reads the same pages again for free.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ehrbridge.errors import EhrbridgeError, InvalidInput
from ehrbridge.fhir.auth import Auth, BasicAuth, BearerAuth, NoAuth, SmartBackendAuth
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import Importer, last_updated
from ehrbridge.fhir.reader import Entry, Unit
from ehrbridge.fhir.search import SearchParams
from ehrbridge.runner.config import AuthConfig, DataSourceConfig, ResourceConfig
from ehrbridge.runner.storage import Cursors, PollOutcome
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import utc

#: Import after this many resources have been read, so memory stays bounded on a backfill.
BATCH = 2000
_EPSILON = timedelta(microseconds=1)


def fhir_auth(auth: AuthConfig) -> Auth:
    """The FHIR client auth for a source's auth config (secrets read now)."""
    s, secret = auth.settings, auth.secrets
    if auth.kind == "none":
        return NoAuth()
    if auth.kind == "basic":
        return BasicAuth(s["username"], secret["password"].resolve())
    if auth.kind == "bearer":
        return BearerAuth(secret["token"].resolve())
    if auth.kind == "smart":
        return SmartBackendAuth(
            token_url=s["token_url"],
            client_id=s["client_id"],
            private_key=secret["private_key"].resolve(),
            algorithm=s.get("algorithm", "RS384"),
            kid=s.get("key_id"),
            scope=s.get("scope", "system/*.read"),
        )
    raise InvalidInput(
        f"a fhir data source takes none, basic, bearer or smart auth, not {auth.kind}"
    )


class FhirPoller:
    """Polls FHIR data sources into one workspace of the world model."""

    def __init__(
        self,
        model: WorldModel,
        cursors: Cursors,
        *,
        client_for: Callable[[DataSourceConfig], FhirClient] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = BATCH,
    ) -> None:
        self.model = model
        self.cursors = cursors
        self.clock = clock
        self.batch = batch
        self._client_for = client_for or (
            lambda source: FhirClient(source.base_url, auth=fhir_auth(source.auth))
        )
        #: one client per source, made again when the source's config changes
        self._clients: dict[str, tuple[DataSourceConfig, FhirClient]] = {}

    async def aclose(self) -> None:
        """Close every client."""
        clients, self._clients = self._clients, {}
        for _, client in clients.values():
            await client.aclose()

    async def _client(self, source: DataSourceConfig) -> FhirClient:
        known = self._clients.get(source.id)
        if known is not None and known[0] == source:
            return known[1]
        if known is not None:
            await known[1].aclose()
        client = self._client_for(source)
        self._clients[source.id] = (source, client)
        return client

    async def poll(self, source: DataSourceConfig, resource: ResourceConfig) -> PollOutcome:
        """Poll ``resource.type`` at ``source`` once; failures become the outcome's error."""
        started = self.clock()
        run = _Run(self, source, resource)
        try:
            await run.go()
        except EhrbridgeError as exc:
            error: str | None = f"{type(exc).__name__}: {exc}"
        else:
            error = run.entry_error
        return PollOutcome(
            workspace=self.model.workspace,
            source=source.id,
            resource_type=resource.type,
            started_at=started,
            finished_at=self.clock(),
            ok=error is None,
            error=error,
            fetched=run.fetched,
            events=run.events,
        )


class _Run:
    """One poll: reads pages, imports them in batches, moves the cursor."""

    def __init__(self, poller: FhirPoller, source: DataSourceConfig, resource: ResourceConfig):
        self.poller, self.source, self.resource = poller, source, resource
        self.fetched = self.events = 0
        self.entry_error: str | None = None
        self.cursor: datetime | None = None
        #: once an entry failed, the cursor may not pass it
        self.ceiling: datetime | None = None
        #: the newest ``meta.lastUpdated`` stored so far
        self.newest: datetime | None = None
        self._units: list[Unit] = []
        self._updated: dict[tuple[str, str], datetime | None] = {}
        self._pending = 0

    async def go(self) -> None:
        p, ws = self.poller, self.poller.model.workspace
        stored = await p.cursors.get_cursor(ws, self.source.id, self.resource.type)
        params = SearchParams().count(self.resource.page_size).sort("_lastUpdated")
        if stored is not None:
            self.cursor = datetime.fromisoformat(stored)
            params = params.updated_since(self.cursor - self.source.overlap)
        client = await p._client(self.source)
        number = 0
        async for page in client.search_pages(self.resource.type, params):
            number += 1
            self._add(page, f"{self.source.id} {self.resource.type} page {number}")
            if self._pending >= p.batch:
                await self._flush()
        await self._flush()
        # The cursor moves once every page is stored: a server that ignores _sort, or a poll
        # cut short, must not leave it past an older resource on a later page.
        newest = self.newest
        if newest is not None and self.ceiling is not None:
            newest = min(newest, self.ceiling)
        if newest is not None and (self.cursor is None or newest > self.cursor):
            self.cursor = newest
            await p.cursors.set_cursor(ws, self.source.id, self.resource.type, utc(newest))

    def _add(self, page: dict[str, Any], name: str) -> None:
        entries = []
        for i, entry in enumerate(page.get("entry") or ()):
            mode = (entry.get("search") or {}).get("mode", "match")
            resource = entry.get("resource")
            if mode != "match" or not isinstance(resource, dict):
                continue
            position = f"entry[{i}]"
            entries.append(Entry(position=position, resource=resource))
            self._updated[(name, position)] = last_updated(resource)
        self._units.append(Unit(file=name, kind="searchset", entries=entries))
        self._pending += len(entries)
        self.fetched += len(entries)

    async def _flush(self) -> None:
        if not self._pending:
            return
        p = self.poller
        importer = Importer(p.model, source=self.source.id, clock=p.clock)
        report = await importer.import_units(self._units)
        self.events += report.events
        failed = {(e.file, e.position) for e in report.errors}
        if report.errors:
            first = report.errors[0]
            self.entry_error = f"{len(report.errors)} entries not imported, first: {first}"
        for key, updated in self._updated.items():
            if key in failed and updated is not None:
                limit = updated - _EPSILON
                self.ceiling = limit if self.ceiling is None else min(self.ceiling, limit)
        stored = [u for key, u in self._updated.items() if key not in failed and u is not None]
        if self.newest is not None:
            stored.append(self.newest)
        self.newest = max(stored, default=None)
        self._units, self._updated, self._pending = [], {}, 0
