"""Polling a FHIR R4 server: ``_lastUpdated`` since the cursor less the overlap, page by page.

https://hl7.org/fhir/R4/search.html#lastUpdated. Each poll searches ``_lastUpdated=gt<cursor -
overlap>`` sorted by ``_lastUpdated``, imports the pages through the FHIR importer (unchanged
records write no events, so the overlap costs reads, never duplicates), and moves the cursor only
after every page's import committed: to the newest ``meta.lastUpdated`` stored, and never past an
entry that failed (it is read again next time, e.g. once the Patient it refers to has arrived). A
poll cut short leaves the cursor where it was; the next one reads the same pages again for free.
With ``backfill: export`` a type without a cursor is first loaded through a Bulk Data export
(:mod:`ehrbridge.connectors.bulk`), which hands it the export's ``transactionTime`` as its cursor.
Every request to a source (searches, pages, the export) goes under the source's request budget
(:mod:`ehrbridge.budget`) when the poller has a :class:`BudgetRegistry`, as ``ehrbridge
run`` gives it.

Dedup happens twice. Before mapping, a resource whose version token (:func:`version_token`:
``meta.versionId`` with ``meta.lastUpdated``, or a digest of the resource when it has no version)
equals the one remembered for its id is skipped: the overlap window and re-polls cost a lookup,
not an import. So is a version older than the one remembered (a lagging replica's stale read).
Tokens are remembered only after the import committed, and never for an entry that failed. What
passes goes to the importer, where the world model's content hash writes no
event for a resource whose meaning did not change (a new version with the same content).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ehrbridge.budget import BudgetRegistry
from ehrbridge.connectors.clients import SourceClients
from ehrbridge.connectors.source import (
    AuthConfig,
    DataSourceConfig,
    PollOutcome,
    PollState,
    RecordVersions,
    ResourceConfig,
)
from ehrbridge.errors import EhrbridgeError, InvalidInput
from ehrbridge.fhir.auth import Auth, BasicAuth, BearerAuth, NoAuth, SmartBackendAuth
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.importer import Importer, last_updated
from ehrbridge.fhir.reader import Unit, resource_entry
from ehrbridge.fhir.search import SearchParams
from ehrbridge.times import utc
from ehrbridge.worldmodel.model import WorldModel

#: Import after this many resources have been read, so memory stays bounded on a backfill.
BATCH = 2000
_EPSILON = timedelta(microseconds=1)

#: an entry read: (unit name, position in it)
EntryKey = tuple[str, str]
#: what is remembered of an entry read: (resource type, id, version token)
Versioned = tuple[str, str, str]


def version_token(resource: Mapping[str, Any]) -> str:
    """What identifies this version of a resource: ``v:<versionId>@<lastUpdated>`` (a server
    reset that starts versions again still changes it), else a digest of the whole resource.

    >>> version_token({"id": "1", "meta": {"versionId": "3", "lastUpdated": "2026-11-20"}})
    'v:3@2026-11-20'
    >>> version_token({"id": "1"}) == version_token({"id": "1"}) != version_token({"id": "2"})
    True
    """
    meta = resource.get("meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("versionId"), str):
        return f"v:{meta['versionId']}@{meta.get('lastUpdated')}"
    body = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    return "sha:" + hashlib.blake2b(body, digest_size=16).hexdigest()


def is_newer(token: str, known: str | None) -> bool:
    """Whether a version with ``token`` should be stored over the ``known`` one: it differs, and
    when both carry a ``lastUpdated`` it is not older.

    >>> is_newer("v:2@2026-11-20T10:00:00Z", "v:1@2026-11-20T09:00:00Z"), is_newer("sha:a", None)
    (True, True)
    >>> is_newer("v:1@2026-11-20T09:00:00Z", "v:2@2026-11-20T10:00:00Z")  # a stale read
    False
    """
    if known is None:
        return True
    if token == known:
        return False
    mine, theirs = _token_instant(token), _token_instant(known)
    return mine is None or theirs is None or mine >= theirs


def _token_instant(token: str) -> datetime | None:
    if not token.startswith("v:") or "@" not in token:
        return None
    try:
        when = datetime.fromisoformat(token.rsplit("@", 1)[1])
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


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
        state: PollState,
        *,
        client_for: Callable[[DataSourceConfig], FhirClient] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = BATCH,
        budgets: BudgetRegistry | None = None,
    ) -> None:
        self.model = model
        #: cursors and remembered record versions
        self.state = state
        self.clock = clock
        self.batch = batch
        #: each source's request budget (none: requests are not paced); a ``client_for`` given
        #: makes its own clients, and paces them if it sends through ``budgets.transport``
        self.budgets = budgets
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
            unchanged=run.unchanged,
        )


class _Run:
    """One poll: reads pages, imports them in batches, moves the cursor."""

    def __init__(self, poller: FhirPoller, source: DataSourceConfig, resource: ResourceConfig):
        self.poller, self.source, self.resource = poller, source, resource
        self.fetched = self.events = self.unchanged = 0
        self.entry_error: str | None = None
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
        from ehrbridge.connectors.bulk import Backfill  # the backfill builds on this module
        from ehrbridge.fhir.bulk import BulkClient

        p, ws = self.poller, self.poller.model.workspace
        async with p._backfills.setdefault(self.source.id, asyncio.Lock()):
            missing = [
                r.type
                for r in self.source.resources
                if await p.state.get_cursor(ws, self.source.id, r.type) is None
            ]
            if self.resource.type not in missing:
                return  # another type's poll just backfilled this one
            budgets = p.budgets
            client_for = None
            if budgets is not None:  # the export's kick-off, status polls and downloads too

                def client_for(source: DataSourceConfig) -> BulkClient:
                    transport = budgets.transport(source.id, source.budget)
                    return BulkClient(
                        source.base_url, auth=fhir_auth(source.auth), transport=transport
                    )

            backfill = Backfill(p.model, p.state, clock=p.clock, client_for=client_for)
            result = await backfill.run(self.source, types=missing)
        self.fetched += result.read
        self.events += result.report.events
        if not result.complete:
            raise EhrbridgeError(
                f"the $export backfill of {', '.join(missing)} is unfinished: {result.error}"
            )

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
        self.fetched += len(entries)

    async def _flush(self) -> None:
        if not self._pending:
            return
        p = self.poller
        unchanged = await self._unchanged()
        self.unchanged += len(unchanged)
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
        self.events += report.events
        failed = {(e.file, e.position) for e in report.errors}
        if report.errors:
            first = report.errors[0]
            self.entry_error = f"{len(report.errors)} entries not imported, first: {first}"
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


def versioned(resource: Mapping[str, Any]) -> Versioned | None:
    """The resource's type, id and :func:`version_token`; None without a type or id."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if isinstance(rtype, str) and isinstance(rid, str):
        return rtype, rid, version_token(resource)
    return None


async def unchanged(
    state: RecordVersions, workspace: str, source: str, read: Mapping[EntryKey, Versioned]
) -> set[EntryKey]:
    """The entries read whose version is the one remembered as stored, or older than it (a stale
    read from a lagging replica)."""
    by_type: dict[str, set[str]] = {}
    for rtype, rid, _ in read.values():
        by_type.setdefault(rtype, set()).add(rid)
    known = {
        (rtype, rid): token
        for rtype, ids in by_type.items()
        for rid, token in (await state.known_versions(workspace, source, rtype, ids)).items()
    }
    return {
        key
        for key, (rtype, rid, token) in read.items()
        if not is_newer(token, known.get((rtype, rid)))
    }


async def remember(
    state: RecordVersions,
    workspace: str,
    source: str,
    read: Mapping[EntryKey, Versioned],
    skip: Collection[EntryKey],
) -> None:
    """Remember the versions of the entries read and stored (``skip``: those that failed or
    were not newer than the one remembered)."""
    by_type: dict[str, dict[str, str]] = {}
    for key, (rtype, rid, token) in read.items():
        if key not in skip:
            by_type.setdefault(rtype, {})[rid] = token
    for rtype, tokens in by_type.items():
        await state.remember_versions(workspace, source, rtype, tokens)
