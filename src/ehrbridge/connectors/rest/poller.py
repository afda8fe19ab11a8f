"""Polling a ``kind: rest`` data source: pages of JSON records, mapped and observed.

Each poll walks the resource's pages (:mod:`.paging`) from the stored cursor less the source's
overlap, maps every record (:mod:`.mapping`), resolves its links (:mod:`.links`) and hands the
good ones to :meth:`~ehrbridge.worldmodel.model.WorldModel.ingest` as observations of the record
``(data source, resource type, source id)``, the same path the FHIR importer takes: the same
record always lands on the same entity, an unchanged one writes no event, and new Patients are
resolved against the ones already known.

A record that cannot be mapped or stored is reported with its page, index and source id (never a
value) and the rest are kept. The cursor moves only after every page is stored, to the newest
change time stored, and never past a failed record (not at all when a failed record's change time
is unknown). A bad response fails the poll and leaves the cursor where it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import orjson

from ehrbridge.budget import BudgetRegistry
from ehrbridge.connectors.clients import SourceClients
from ehrbridge.connectors.rest.auth import rest_auth
from ehrbridge.connectors.rest.client import RestClient
from ehrbridge.connectors.rest.links import Linker
from ehrbridge.connectors.rest.mapping import (
    MappedRecord,
    map_record,
    record_id,
    updated_at,
)
from ehrbridge.connectors.rest.paging import pages, search
from ehrbridge.connectors.rest.spec import CursorFormat, RestResource, RestSettings
from ehrbridge.connectors.rest.transforms import Context
from ehrbridge.connectors.source import DataSourceConfig, Polled, PollState, ResourceConfig
from ehrbridge.errors import InvalidInput, RecordError
from ehrbridge.http.retry import RetryPolicy
from ehrbridge.times import utc
from ehrbridge.worldmodel.events import Observation, RecordKey, validate_observation
from ehrbridge.worldmodel.model import WorldModel

#: Records observed in one store transaction.
BATCH = 500
_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True, kw_only=True)
class RecordProblem:
    """A record that was not stored: where it was and why (never its values)."""

    page: int
    index: int
    #: the record's id at the source, when it has one
    external_id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" (id {self.external_id})" if self.external_id else ""
        return f"page {self.page} record {self.index}{who}: {self.reason}"


def client_for(
    source: DataSourceConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    budgets: BudgetRegistry | None = None,
) -> RestClient:
    """A client for a REST source's base URL, auth and headers; with ``budgets``, its requests
    (not the token requests of its auth) go under the source's request budget."""
    settings = source.rest or RestSettings()
    data = transport if budgets is None else budgets.transport(source.id, source.budget, transport)
    return RestClient(
        source.base_url,
        auth=rest_auth(source.auth, transport=transport),
        headers=settings.headers,
        timeout=settings.timeout.total_seconds(),
        transport=data,
        retry=retry,
    )


_default_client = client_for


def cursor_param(moment: datetime, fmt: CursorFormat) -> str:
    """The cursor as the incremental query parameter.

    >>> when = datetime(2026, 11, 20, 8, 0, 30, tzinfo=UTC)
    >>> [cursor_param(when, f) for f in ("iso", "date", "epoch", "epoch_ms")]
    ['2026-11-20T08:00:30Z', '2026-11-20', '1795161630', '1795161630000']
    """
    moment = moment.astimezone(UTC)
    if fmt == "date":
        return moment.date().isoformat()
    if fmt == "epoch":
        return str(int(moment.timestamp()))
    if fmt == "epoch_ms":
        return str(int(moment.timestamp() * 1000))
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


class RestPoller:
    """Polls REST data sources into one workspace of the world model."""

    def __init__(
        self,
        model: WorldModel,
        state: PollState,
        *,
        client_for: Callable[[DataSourceConfig], RestClient] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = BATCH,
        budgets: BudgetRegistry | None = None,
    ) -> None:
        self.model = model
        #: cursors and the remembered version of each stored record
        self.state = state
        self.clock = clock
        self.batch = batch
        #: each source's request budget, for the default ``client_for`` (none: not paced)
        self.budgets = budgets
        self._clients = SourceClients(client_for or partial(_default_client, budgets=budgets))
        #: the problems of the last poll per (source, resource type), for reports and tests
        self.problems: dict[tuple[str, str], list[RecordProblem]] = {}

    async def aclose(self) -> None:
        """Close every client."""
        await self._clients.aclose()

    async def poll(
        self, source: DataSourceConfig, resource: ResourceConfig, polled: Polled
    ) -> None:
        """Poll ``resource`` at ``source`` once, counting into ``polled``; records not stored
        are its ``problem``, a bad response or a failed store raises."""
        run = _Run(self, source, resource, polled)
        try:
            if resource.rest is None:
                raise InvalidInput(f"{source.id} {resource.type}: not a rest resource")
            await run.go(resource.rest)
        finally:
            self.problems[(source.id, resource.type)] = run.problems
        if run.problems:
            polled.problem = f"{len(run.problems)} records not stored, first: {run.problems[0]}"


def _keeps(known: MappedRecord, later: MappedRecord) -> bool:
    """One record twice in a poll (it changed while we paged): the same id and version is the
    same record, and otherwise the newer copy wins (the later one when the times are unknown)."""
    if known.version is not None and known.version == later.version:
        return True
    return known.updated is not None and later.updated is not None and known.updated > later.updated


@dataclass(kw_only=True)
class _Pending:
    page: int
    index: int
    record: MappedRecord
    #: the record's version token, remembered once it is stored
    token: str


class _Run:
    """One poll: reads pages, maps and stores records in batches, moves the cursor."""

    def __init__(
        self, poller: RestPoller, source: DataSourceConfig, resource: ResourceConfig, polled: Polled
    ):
        self.poller, self.source, self.resource, self.polled = poller, source, resource, polled
        settings = source.rest or RestSettings()
        self.ctx = Context(
            timezone=settings.timezone,
            dayfirst=settings.dayfirst,
            phone_region=settings.phone_region,
        )
        self.linker = Linker(
            poller.model.store, poller.model.workspace, source.id, settings.phone_region
        )
        self.problems: list[RecordProblem] = []
        #: once a record failed, the cursor may not pass it (None: no limit)
        self.ceiling: datetime | None = None
        #: a failed record's change time is unknown: the cursor stays where it is
        self.hold = False
        self.newest: datetime | None = None
        self._pending: dict[str, _Pending] = {}

    async def go(self, spec: RestResource) -> None:
        p, ws = self.poller, self.poller.model.workspace
        params: list[tuple[str, str]] = []
        cursor: datetime | None = None
        if spec.incremental is not None:
            stored = await p.state.get_cursor(ws, self.source.id, self.resource.type)
            if stored is not None:
                cursor = datetime.fromisoformat(stored)
                since = cursor_param(cursor - self.source.overlap, spec.incremental.format)
                params.append((spec.incremental.param, since))
        client = await p._clients.get(self.source)
        fingerprint = _fingerprint(spec, self.source)
        async for page in pages(client, spec, params):
            self.polled.fetched += len(page.records)
            tokens = {
                i: (rid, version_token(spec, record, fingerprint))
                for i, record in enumerate(page.records)
                if (rid := record_id(spec, record)) is not None
            }
            known = await p.state.known_versions(
                ws, self.source.id, self.resource.type, {rid for rid, _ in tokens.values()}
            )
            for index, record in enumerate(page.records):
                rid, token = tokens.get(index, (None, ""))
                if rid is not None and known.get(rid) == token:
                    # Stored already, this very version, under this very mapping: skip it.
                    self.polled.unchanged += 1
                    self._stored(updated_at(spec, record, self.ctx))
                    continue
                self._add(spec, page.number, index, record, token)
            if len(self._pending) >= p.batch:
                await self._flush()
        await self._flush()
        if spec.incremental is None:
            return
        newest = self.newest
        if self.hold:
            newest = None
        elif newest is not None and self.ceiling is not None:
            newest = min(newest, self.ceiling)
        if newest is not None and (cursor is None or newest > cursor):
            await p.state.set_cursor(ws, self.source.id, self.resource.type, utc(newest))

    def _fail(self, spec: RestResource, page: int, index: int, record: object, why: str) -> None:
        self.problems.append(
            RecordProblem(page=page, index=index, external_id=record_id(spec, record), reason=why)
        )
        updated = updated_at(spec, record, self.ctx)
        if updated is None:
            self.hold = True
            return
        limit = updated - _EPSILON
        self.ceiling = limit if self.ceiling is None else min(self.ceiling, limit)

    def _stored(self, updated: datetime | None) -> None:
        if updated is not None and (self.newest is None or updated > self.newest):
            self.newest = updated

    def _add(self, spec: RestResource, page: int, index: int, record: object, token: str) -> None:
        try:
            mapped = map_record(spec, record, self.ctx)
        except RecordError as exc:
            self._fail(spec, page, index, record, str(exc))
            return
        known = self._pending.get(mapped.external_id)
        if known is not None and _keeps(known.record, mapped):
            return
        self._pending[mapped.external_id] = _Pending(
            page=page, index=index, record=mapped, token=token
        )

    async def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = list(self._pending.values()), {}
        await self.linker.prefetch(link for item in pending for link in item.record.links.values())
        ready: list[tuple[_Pending, Observation]] = []
        for item in pending:
            observation = self._observation(item)
            if observation is not None:
                ready.append((item, observation))
        await self._write(ready)

    def _observation(self, item: _Pending) -> Observation | None:
        record, model = item.record, self.poller.model
        data = dict(record.data)
        for name, (link, value) in record.links.items():
            ref = self.linker.resolved(link, value)
            if ref is not None:
                data[name] = ref
            elif name in record.required_links:
                self._problem(item, f"{name}: {self.linker.reason(link, value)}")
                return None
        observation = Observation(
            workspace=model.workspace,
            record=RecordKey(
                data_source=self.source.id,
                resource_type=self.resource.type,
                external_id=record.external_id,
            ),
            entity_type=self.resource.type,
            data=data,
            effective_at=record.updated or self.poller.clock(),
        )
        try:
            validate_observation(observation, model.workspace)
        except InvalidInput as exc:
            self._problem(item, str(exc).removeprefix("invalid event: "))
            return None
        return observation

    def _problem(self, item: _Pending, why: str) -> None:
        self.problems.append(
            RecordProblem(
                page=item.page, index=item.index, external_id=item.record.external_id, reason=why
            )
        )
        if item.record.updated is None:
            self.hold = True
        else:
            limit = item.record.updated - _EPSILON
            self.ceiling = limit if self.ceiling is None else min(self.ceiling, limit)

    async def _write(self, ready: list[tuple[_Pending, Observation]]) -> None:
        if not ready:
            return
        model = self.poller.model
        try:
            results = await model.ingest([obs for _, obs in ready])
        except InvalidInput:
            if len(ready) == 1:
                raise
            # The store refused the batch: write record by record to find the culprits.
            for one in ready:
                try:
                    await self._write([one])
                except InvalidInput as exc:
                    self._problem(one[0], str(exc))
            return
        tokens: dict[str, str] = {}
        for (item, observation), result in zip(ready, results, strict=True):
            self.polled.events += len(result.result.events)
            self._stored(item.record.updated)
            # A record whose link did not resolve is mapped again when read again.
            if len(observation.data) == len(item.record.data) + len(item.record.links):
                tokens[item.record.external_id] = item.token
        if tokens:
            await self.poller.state.remember_versions(
                model.workspace, self.source.id, self.resource.type, tokens
            )


def version_token(spec: RestResource, record: object, fingerprint: str) -> str:
    """A record's version token: its ``version`` (an ETag, a version number) when the resource
    names one, else a digest of the whole record; then the mapping's fingerprint, so a changed
    mapping maps every record again.

    >>> spec = RestResource(type="Appointment", path="/a", version="etag")
    >>> version_token(spec, {"etag": "7"}, "f1"), version_token(spec, {}, "f1")[:4]
    ('7@f1', 'sha:')
    """
    version = search(spec.version, record) if spec.version and isinstance(record, dict) else None
    if version is None or isinstance(version, dict | list):
        body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        version = "sha:" + hashlib.sha256(body).hexdigest()[:32]
    return f"{version}@{fingerprint}"


def _fingerprint(spec: RestResource, source: DataSourceConfig) -> str:
    """A digest of everything that decides how a record is mapped."""
    return hashlib.sha256(repr((spec, source.rest)).encode()).hexdigest()[:12]
