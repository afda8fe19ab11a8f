"""Polling a FHIR R4 server: ``_lastUpdated`` since the cursor less the overlap, page by page.

https://hl7.org/fhir/R4/search.html#lastUpdated. Each poll searches ``_lastUpdated=gt<cursor -
overlap>`` sorted by ``_lastUpdated``, imports the pages through the FHIR importer (unchanged
records write no events, so the overlap costs reads, never duplicates), and moves the cursor only
after every page's import committed: to the newest ``meta.lastUpdated`` stored, and never past an
entry that failed (it is read again next time, e.g. once the Patient it refers to has arrived). A
poll cut short leaves the cursor where it was; the next one reads the same pages again for free.
With ``backfill: export`` a type without a cursor is first loaded through a Bulk Data export
(:mod:`ehrbridge.connectors.fhir.backfill`, given to the poller as its ``backfill``), which hands
it the export's ``transactionTime`` as its cursor.
Every request to a source (searches, pages, the export) goes under the source's request budget
(:mod:`ehrbridge.budget`) when the poller has a :class:`BudgetRegistry`, as ``ehrbridge
run`` gives it.

Dedup happens twice. Before mapping, a resource whose version token (:mod:`.versions`:
``meta.versionId`` with ``meta.lastUpdated``, or a digest of the resource when it has no version)
equals the one remembered for its id is skipped: the overlap window and re-polls cost a lookup,
not an import. So is a version older than the one remembered (a lagging replica's stale read).
Tokens are remembered only after the import committed, and never for an entry that failed. What
passes goes to the importer, where the world model's content hash writes no
event for a resource whose meaning did not change (a new version with the same content).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ehrbridge.budget import BudgetRegistry
from ehrbridge.connectors.clients import SourceClients
from ehrbridge.connectors.fhir.auth import fhir_auth
from ehrbridge.connectors.fhir.versions import EntryKey, Versioned, remember, unchanged, versioned
from ehrbridge.connectors.source import DataSourceConfig, Polled, PollState, ResourceConfig
from ehrbridge.errors import InvalidInput
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import Importer, last_updated
from ehrbridge.fhir.reader import Unit, resource_entry
from ehrbridge.fhir.search import SearchParams
from ehrbridge.times import utc
from ehrbridge.worldmodel.model import WorldModel

#: Import after this many resources have been read, so memory stays bounded on a backfill.
BATCH = 2000
_EPSILON = timedelta(microseconds=1)

#: Loads ``types`` of a ``backfill: export`` source before their first poll and hands each its
#: cursor, counting into the poll's :class:`Polled`; raises when it is unfinished
#: (:class:`~ehrbridge.connectors.fhir.backfill.ExportFirst`).
FirstLoad = Callable[[DataSourceConfig, list[str], Polled], Awaitable[None]]


class FhirPoller:
    """Polls FHIR data sources into one workspace of the world model."""

    def __init__(
        self,
        model: WorldModel,
        state: PollState,
        *,
        client_for: Callable[[DataSourceConfig], FhirClient] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = BATCH,
        budgets: BudgetRegistry | None = None,
        backfill: FirstLoad | None = None,
    ) -> None:
        self.model = model
        #: cursors and remembered record versions
        self.state = state
        self.clock = clock
        self.batch = batch
        #: each source's request budget (none: requests are not paced); a ``client_for`` given
        #: makes its own clients, and paces them if it sends through ``budgets.transport``
        self.budgets = budgets
        #: the first load of a ``backfill: export`` source's types (none: such a source fails)
        self.backfill = backfill
        #: one backfill at a time per source (``backfill: export``)
        self._backfills: dict[str, asyncio.Lock] = {}
        self._clients = SourceClients(client_for or self._client)

    def _client(self, source: DataSourceConfig) -> FhirClient:
        budgets = self.budgets
        transport = None if budgets is None else budgets.transport(source.id, source.budget)
        return FhirClient(source.base_url, auth=fhir_auth(source.auth), transport=transport)

    async def aclose(self) -> None:
        """Close every client."""
        await self._clients.aclose()

    async def poll(
        self, source: DataSourceConfig, resource: ResourceConfig, polled: Polled
    ) -> None:
        """Poll ``resource.type`` at ``source`` once, counting into ``polled``; entries that
        could not be imported are its ``problem``, a failure of the source or the store raises."""
        await _Run(self, source, resource, polled).go()


class _Run:
    """One poll: reads pages, imports them in batches, moves the cursor."""

    def __init__(
        self, poller: FhirPoller, source: DataSourceConfig, resource: ResourceConfig, polled: Polled
    ):
        self.poller, self.source, self.resource, self.polled = poller, source, resource, polled
        self.cursor: datetime | None = None
        #: once an entry failed, the cursor may not pass it
        self.ceiling: datetime | None = None
        #: the newest ``meta.lastUpdated`` stored so far
        self.newest: datetime | None = None
        self._units: list[Unit] = []
        self._updated: dict[tuple[str, str], datetime | None] = {}
        #: the version of each entry read
        self._tokens: dict[EntryKey, Versioned] = {}
        self._pending = 0

    async def go(self) -> None:
        p, ws = self.poller, self.poller.model.workspace
        stored = await p.state.get_cursor(ws, self.source.id, self.resource.type)
        if stored is None and self.source.backfill == "export":
            await self._backfill()
            stored = await p.state.get_cursor(ws, self.source.id, self.resource.type)
        params = SearchParams().count(self.resource.page_size).sort("_lastUpdated")
        if stored is not None:
            self.cursor = datetime.fromisoformat(stored)
            params = params.updated_since(self.cursor - self.source.overlap)
        client = await p._clients.get(self.source)
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
            await p.state.set_cursor(ws, self.source.id, self.resource.type, utc(newest))

    async def _backfill(self) -> None:
        """Load the source's types that have no cursor yet with a Bulk Data export; the
        backfill hands each its cursor (the export's ``transactionTime``). The poll tasks of one
        source wait for one backfill; the source's poll lease keeps other runners out."""
        p, ws = self.poller, self.poller.model.workspace
        if p.backfill is None:
            raise InvalidInput(
                f"data source {self.source.id} asks for backfill: export, and this poller has no "
                "backfill"
            )
        async with p._backfills.setdefault(self.source.id, asyncio.Lock()):
            missing = [
                r.type
                for r in self.source.resources
                if await p.state.get_cursor(ws, self.source.id, r.type) is None
            ]
            if self.resource.type not in missing:
                return  # another type's poll just backfilled this one
            await p.backfill(self.source, missing, self.polled)

    def _add(self, page: dict[str, Any], name: str) -> None:
        entries = []
        for i, entry in enumerate(page.get("entry") or ()):
            mode = (entry.get("search") or {}).get("mode", "match")
            resource = entry.get("resource")
            if mode != "match" or not isinstance(resource, dict):
                continue
            position = f"entry[{i}]"
            entries.append(resource_entry(position, resource))  # refuses what no store can hold
            self._updated[(name, position)] = last_updated(resource)
            token = versioned(resource)
            if token is not None:
                self._tokens[(name, position)] = token
        self._units.append(Unit(file=name, kind="searchset", entries=entries))
        self._pending += len(entries)
        self.polled.fetched += len(entries)

    async def _flush(self) -> None:
        if not self._pending:
            return
        p = self.poller
        unchanged = await self._unchanged()
        self.polled.unchanged += len(unchanged)
        units = [
            Unit(
                file=u.file,
                kind=u.kind,
                entries=[e for e in u.entries if (u.file, e.position) not in unchanged],
            )
            for u in self._units
        ]
        importer = Importer(p.model, source=self.source.id, clock=p.clock)
        report = await importer.import_units([u for u in units if u.entries])
        self.polled.events += report.events
        failed = {(e.file, e.position) for e in report.errors}
        if report.errors:
            first = report.errors[0]
            self.polled.problem = f"{len(report.errors)} entries not imported, first: {first}"
        await self._remember(failed | unchanged)
        for key, updated in self._updated.items():
            if key in failed and updated is not None:
                limit = updated - _EPSILON
                self.ceiling = limit if self.ceiling is None else min(self.ceiling, limit)
        stored = [u for key, u in self._updated.items() if key not in failed and u is not None]
        if self.newest is not None:
            stored.append(self.newest)
        self.newest = max(stored, default=None)
        self._units, self._updated, self._tokens, self._pending = [], {}, {}, 0

    async def _unchanged(self) -> set[tuple[str, str]]:
        ws = self.poller.model.workspace
        return await unchanged(self.poller.state, ws, self.source.id, self._tokens)

    async def _remember(self, skip: set[tuple[str, str]]) -> None:
        ws = self.poller.model.workspace
        await remember(self.poller.state, ws, self.source.id, self._tokens, skip)
