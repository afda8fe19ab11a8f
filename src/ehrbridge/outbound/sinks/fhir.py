"""The FHIR sink: delivers ``upsert`` items to a FHIR R4 server (docs/fhir-sink.md), and the
workflow steps ``create`` and ``notify`` (:mod:`.fhir_steps`, docs/workflows.md).

The payload of an ``upsert`` item (:class:`~ehrbridge.outbound.sinks.upsert.Upsert`; its
module gives every rule)::

    {"fields": {"phone.mobile": "+16175550143", "email": null},   # to write; null removes
     "base":   {"phone.mobile": "+16175550142"},   # the sink's values it was decided on, or absent
     "ref":    "Patient/123",                      # the record to update; null/absent: create
     "entity": {"name.family": "Rivera", ...}}     # the whole flat state, for a create

Values are as the sink holds them (reference fields name the sink's records); a path missing
from ``base`` had no value there; without ``base`` nothing is compared.

Every request is sent once: the client's :data:`SEND_ONCE` policy retries nothing,
because the dispatcher retries the item, with backoff, under the sink's budget.

**Update** (a ``ref``). Read the record and map it (``to_entity``). A field whose value there
differs from ``base`` and from ours was changed at the sink since: :class:`SinkConflict`, and
nothing is written over it. All fields already ours: delivered without a write. Otherwise the
resource read, with only the elements of the changed fields rewritten
(:func:`~ehrbridge.outbound.sinks.fhir_changes.changed_resource`; it must read back as the record
with our fields and nothing else changed, or it is refused), is ``PUT`` with ``If-Match``
the version read; a ``412`` (someone wrote in between) reads and decides again, up to
:data:`ROUNDS` times.

**Create** (no ``ref``). ``to_fhir`` of the entity (with ``fields`` over it) plus the identifier
``{system: IDENTIFIER_SYSTEM, value: item.key}``, ``POST`` with ``If-None-Exist:
identifier=<system>|<key>``, then a search by that identifier confirms it: one match is delivered;
several (a server whose conditional create is not unique under concurrency) are delivered as the
oldest, with the others in ``extra["duplicates"]`` for the dispatcher to report (nothing is
deleted); none (the server answered but does not hold it) is an error that may have reached the
sink, so the next attempt looks it up first. The outbox lets one holder work an item at a time, so
two creates of one key never race each other from ehrbridge.

**Lookup** (an in-doubt item) and **read back** (the reconcile loop): a create is searched by its
identifier; an update's record is read and shows our values or not (read back reads the version
our write produced, when known, so a later change at the sink does not hide it).

**Errors** become :class:`SinkError` in one place (:mod:`.fhir_errors`; the table is in
docs/fhir-sink.md), never with a field value in the message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from ehrbridge.budget import DEFAULT_BUDGET, BudgetRegistry, BudgetTransport, RequestBudget
from ehrbridge.errors import (
    FhirNotFound,
    FhirPreconditionFailed,
    InvalidInput,
    SinkConflict,
    SinkError,
)
from ehrbridge.fhir.auth import Auth
from ehrbridge.fhir.client import DEFAULT_TIMEOUT, FhirClient, WriteResult
from ehrbridge.fhir.http import Resource
from ehrbridge.fhir.mapping import MAPPINGS, to_entity, to_fhir
from ehrbridge.http.retry import RetryPolicy
from ehrbridge.outbound.outbox import OutboxItem
from ehrbridge.outbound.sinks import IDENTIFIER_SYSTEM, Conflicting, Delivered
from ehrbridge.outbound.sinks.fhir_changes import changed_resource
from ehrbridge.outbound.sinks.fhir_errors import translated
from ehrbridge.outbound.sinks.fhir_steps import CREATE, NOTIFY, communication
from ehrbridge.outbound.sinks.upsert import Upsert, parse_upsert

log = logging.getLogger("ehrbridge.outbound")

#: the client's retry policy for a sink: every request is sent once (the dispatcher retries)
SEND_ONCE = RetryPolicy(max_retries=0)
#: how many times an update reads and writes again after a ``412``
ROUNDS = 3
#: the operations this sink performs: a fact's ``upsert``, and the workflow steps of
#: :mod:`.fhir_steps` (``create``, ``notify``)
OPERATIONS = frozenset({"upsert", CREATE, NOTIFY})


def sink_budget(sink_id: str) -> str:
    """The request budget name of a sink.

    >>> sink_budget("ehr")
    'sink:ehr'
    """
    return f"sink:{sink_id}"


def sink_client(
    sink_id: str,
    base_url: str,
    *,
    auth: Auth | None = None,
    budgets: BudgetRegistry | None = None,
    limit: RequestBudget = DEFAULT_BUDGET,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
) -> FhirClient:
    """The FHIR client of sink ``sink_id``: sending once (:data:`SEND_ONCE`), under the budget
    ``sink:<id>`` of ``budgets`` when given (through ``transport``)."""
    if budgets is not None:
        transport = BudgetTransport(budgets.budget(sink_budget(sink_id), limit), transport)
    return FhirClient(base_url, auth=auth, transport=transport, timeout=timeout, retry=SEND_ONCE)


def _version(resource: Mapping[str, Any] | None) -> str | None:
    meta = (resource or {}).get("meta") or {}
    version = meta.get("versionId") if isinstance(meta, Mapping) else None
    return version if isinstance(version, str) else None


def _oldest_first(resource: Mapping[str, Any]) -> tuple[str, str]:
    meta = resource.get("meta") or {}
    updated = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    return (str(updated or ""), str(resource.get("id", "")))


class FhirSink:
    """A FHIR R4 server as a sink (see the module docstring)."""

    def __init__(self, sink_id: str, client: FhirClient) -> None:
        if client.retry.max_retries != 0:
            raise InvalidInput(
                f"sink {sink_id}: the FHIR client must send every request once "
                "(retry=SEND_ONCE; the dispatcher retries): build it with sink_client()"
            )
        self._id = sink_id
        #: the sink's client (closed by :meth:`aclose`)
        self.client = client

    @property
    def id(self) -> str:
        return self._id

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- the Sink protocol -------------------------------------------------------------------

    async def send(self, item: OutboxItem) -> Delivered:
        """Deliver ``item`` once: an update of ``ref``, or a conditional create."""
        if item.operation == NOTIFY:
            return await self._create_resource(item, communication(item.payload))
        upsert = self._upsert(item)
        if upsert.ref is None:
            return await self._create(item, upsert)
        return await self._update(item, upsert, upsert.ref)

    async def lookup(self, item: OutboxItem) -> Delivered | None:
        """Whether an in-doubt write of ``item`` is at the sink: a create by its identifier,
        an update by our values in the record."""
        if item.operation == NOTIFY:
            return await self._find(item)
        upsert = self._upsert(item)
        if upsert.ref is None:
            return await self._find(item)
        with translated(write=False):
            try:
                resource = await self.client.read(*upsert.ref)
            except FhirNotFound:
                return None
            data = to_entity(resource).data
        if not all(data.get(p) == v for p, v in upsert.fields.items()):
            return None
        return self._delivered(upsert.ref, resource, created=False)

    async def read_back(self, item: OutboxItem) -> bool:
        """Whether a synced item's write shows at the sink: a create is found by its
        identifier; an update's version (or, without one, the record now) holds our values."""
        if item.operation == NOTIFY:
            return await self._find(item) is not None
        upsert = self._upsert(item)
        if upsert.ref is None:
            return await self._find(item) is not None
        resource_type, id = upsert.ref
        version = (item.result or {}).get("version")
        with translated(write=False):
            try:
                if isinstance(version, str) and version:
                    resource = await self.client.vread(resource_type, id, version)
                else:
                    resource = await self.client.read(resource_type, id)
            except FhirNotFound:
                return False
            data = to_entity(resource).data
        return all(data.get(p) == v for p, v in upsert.fields.items())

    # -- update ------------------------------------------------------------------------------

    async def _update(self, item: OutboxItem, upsert: Upsert, ref: tuple[str, str]) -> Delivered:
        for _ in range(ROUNDS):
            with translated(write=False):
                resource = await self.client.read(*ref)
                data = to_entity(resource).data
            version = _version(resource)
            conflicts = [
                Conflicting(field=path, ours=ours, theirs=data.get(path), version=version)
                for path, ours in upsert.fields.items()
                if upsert.base is not None
                and data.get(path) != ours
                and data.get(path) != upsert.base_of(path)
            ]
            if conflicts:
                raise SinkConflict(conflicts, operation=self._operation("update PUT", *ref))
            if all(data.get(p) == v for p, v in upsert.fields.items()):
                return self._delivered(ref, resource, created=False, extra={"unchanged": True})
            with translated(write=False):
                new = changed_resource(resource, item.entity_type, upsert.fields)
                written = to_entity(new).data
            self._check_written(item.entity_type, ref, data, upsert.fields, written)
            with translated(write=True):
                try:
                    result = await self.client.update(new, if_match=version)
                except FhirPreconditionFailed:
                    continue  # changed since we read it: read and decide again
            return self._written(ref, result, created=False)
        raise SinkError(
            f"the record changed under {ROUNDS} updates in a row",
            operation=self._operation("update PUT", *ref),
            status=412,
            transient=True,
        )

    def _operation(self, name: str, *segments: str) -> str:
        """``update PUT /fhir/R4/Patient/7``: as the client names its requests."""
        return " ".join((name, "/".join((httpx.URL(self.client.base_url).path, *segments))))

    def _check_written(
        self,
        entity_type: str,
        ref: tuple[str, str],
        read: Mapping[str, Any],
        fields: Mapping[str, Any],
        written: Mapping[str, Any],
    ) -> None:
        """The new resource must read as the record with ``fields`` changed, and nothing else:
        a field the mapping cannot write, or one it would change on the side (a FHIR element
        that holds two fields), is refused before anything is sent."""
        expected = {p: v for p, v in {**read, **fields}.items() if v is not None}
        missing = sorted(p for p, v in fields.items() if written.get(p) != v)
        aside = sorted(
            p for p in {*expected, *written} - set(fields) if expected.get(p) != written.get(p)
        )
        if missing or aside:
            what = f"cannot write {', '.join(missing)}" if missing else ""
            also = f"would also change {', '.join(aside)}" if aside else ""
            raise SinkError(
                f"the FHIR mapping of {entity_type} {'; '.join(w for w in (what, also) if w)}",
                operation=self._operation("update PUT", *ref),
            )

    # -- create ------------------------------------------------------------------------------

    async def _create(self, item: OutboxItem, upsert: Upsert) -> Delivered:
        state = {**(upsert.entity or {}), **upsert.fields}
        with translated(write=False):
            resource = to_fhir(item.entity_type, {p: v for p, v in state.items() if v is not None})
        return await self._create_resource(item, resource)

    async def _create_resource(self, item: OutboxItem, resource: dict[str, Any]) -> Delivered:
        """Create ``resource`` with the item's identifier, once, and find it by it."""
        identifiers = resource.get("identifier") or []
        resource["identifier"] = [*identifiers, {"system": IDENTIFIER_SYSTEM, "value": item.key}]
        criteria = {"identifier": f"{IDENTIFIER_SYSTEM}|{item.key}"}
        with translated(write=True):
            try:
                result: WriteResult | None = await self.client.create(
                    resource, if_none_exist=criteria
                )
            except FhirPreconditionFailed:
                result = None  # several records hold the identifier already: found below
        try:
            found = await self._find(item)
        except SinkError as exc:
            # The create was answered: the next attempt must look it up before sending again.
            exc.may_have_reached_sink = True
            raise
        if found is None:
            raise SinkError(
                "the sink answered the create but a search by its identifier finds nothing",
                operation=self._operation("create POST", resource["resourceType"]),
                status=None if result is None else result.status,
                transient=True,
                may_have_reached_sink=True,
            )
        created = result is not None and result.created
        if result is not None and result.id is not None and found.ref.endswith(f"/{result.id}"):
            return self._written(_split(found.ref), result, created=created, extra=found.extra)
        return Delivered(
            ref=found.ref,
            version=found.version,
            created=created,
            record=found.record,
            extra=found.extra,
        )

    async def _find(self, item: OutboxItem) -> Delivered | None:
        """The record(s) holding the item's identifier: the oldest, others as duplicates."""
        resource_type = self._resource_type(item.entity_type)
        query = {"identifier": f"{IDENTIFIER_SYSTEM}|{item.key}"}
        with translated(write=False):
            matches = [r async for r in self.client.search(resource_type, query)]
        if not matches:
            return None
        matches.sort(key=_oldest_first)
        first, *others = matches
        extra: dict[str, Any] = {}
        if others:
            extra["duplicates"] = [f"{resource_type}/{r.get('id')}" for r in others]
            log.warning(
                "sink %s holds %d records of outbox item %s (its conditional create is not "
                "unique); none is deleted",
                self.id,
                len(matches),
                item.id,
            )
        return self._delivered(
            (resource_type, str(first.get("id"))), first, created=True, extra=extra
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _upsert(self, item: OutboxItem) -> Upsert:
        if item.operation not in OPERATIONS:
            raise SinkError(f"the FHIR sink does not perform {item.operation[:40]!r} items")
        try:
            upsert = parse_upsert(item.payload)
        except InvalidInput as exc:
            raise SinkError(str(exc)) from exc
        resource_type = self._resource_type(item.entity_type)
        if item.operation == CREATE and upsert.ref is not None:
            raise SinkError("create payload: a create has no ref")
        if upsert.ref is not None and upsert.ref[0] != resource_type:
            raise SinkError(
                f"upsert payload: ref is a {upsert.ref[0]}, "
                f"but a {item.entity_type} is a {resource_type}"
            )
        return upsert

    @staticmethod
    def _resource_type(entity_type: str) -> str:
        mapping = MAPPINGS.get(entity_type)
        return entity_type if mapping is None else mapping.resource_type

    @staticmethod
    def _delivered(
        ref: tuple[str, str],
        resource: Resource,
        *,
        created: bool,
        extra: Mapping[str, Any] | None = None,
    ) -> Delivered:
        return Delivered(
            ref="/".join(ref),
            version=_version(resource),
            created=created,
            record=resource,
            extra=dict(extra or {}),
        )

    @staticmethod
    def _written(
        ref: tuple[str, str],
        result: WriteResult,
        *,
        created: bool,
        extra: Mapping[str, Any] | None = None,
    ) -> Delivered:
        return Delivered(
            ref="/".join(ref),
            version=result.version_id,
            created=created,
            record=result.resource,
            extra=dict(extra or {}),
        )


def _split(ref: str) -> tuple[str, str]:
    resource_type, _, id = ref.partition("/")
    return resource_type, id
