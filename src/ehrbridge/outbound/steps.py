"""Workflow steps resolved when they are sent (docs/workflows.md).

A step's payload is written when the workflow is queued, before any of its writes has landed,
so it names entities (``Patient/<entity id>``), not records at the sink. :class:`StepSink` wraps
a sink and, for every step item it sends, looks up (in doubt) or reads back, first resolves the
payload from what is stored now:

- an entity reference becomes the entity's record at that sink (``record_at`` of its events: the
  record the sink's snapshots, or the echo of our own create, wrote);
- the workflow's own earlier steps are read from the outbox (``ItemQuery(workflow=...)``): the
  created Appointment is the ``ref`` in its step's stored result;
- the Patient update writes the fields its facts still hold (each fact still let through by the
  gate, its value still the entity's), against the base the sink's record was last read with.

A reference that cannot be resolved yet (the patient has no record at the sink, the Appointment
step has not synced) is a transient :class:`~ehrbridge.errors.SinkError`: retried with backoff,
then dead, holding the lane, with the reason. Items of no workflow pass through unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ehrbridge.errors import SinkError
from ehrbridge.outbound.feed import record_at
from ehrbridge.outbound.gates import SinkPolicy, candidate, decide
from ehrbridge.outbound.outbox import ItemQuery, ItemStatus, Outbox, OutboxItem
from ehrbridge.outbound.sinks import Delivered, Sink
from ehrbridge.outbound.sinks.fhir import FhirSink
from ehrbridge.outbound.workflows import CREATE, NOTIFY, UPSERT, Workflows, workflow_of
from ehrbridge.worldmodel.entities import spec_for
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.store import Store

if TYPE_CHECKING:
    from ehrbridge.outbound.dispatch import SinkRuntime


def with_workflows(
    sinks: Sequence[SinkRuntime],
    store: Store,
    outbox: Outbox,
    *,
    workspace: str,
    performing: Collection[str] | None = None,
) -> tuple[list[SinkRuntime], Workflows]:
    """The runner's wiring: ``sinks`` with those that perform workflow steps (``performing``,
    by id; None: the FHIR sinks) wrapped in a :class:`StepSink`, and the :class:`Workflows`
    for the dispatcher and the trailing feed (at the other sinks a booking is a plain
    upsert)."""
    ids = (
        {rt.policy.sink for rt in sinks if isinstance(rt.sink, FhirSink)}
        if performing is None
        else set(performing)
    )
    wrapped = [
        dataclasses.replace(
            rt,
            sink=StepSink(rt.sink, store, outbox, workspace=workspace, policy=rt.policy),
        )
        if rt.policy.sink in ids
        else rt
        for rt in sinks
    ]
    return wrapped, Workflows(store, outbox, workspace=workspace, sinks=ids)


class Unresolved(SinkError):
    """A step refers to something the sink has no record of yet: retried later."""


class StepSink:
    """A sink whose workflow steps are resolved at send time (see the module docstring)."""

    def __init__(
        self, sink: Sink, store: Store, outbox: Outbox, *, workspace: str, policy: SinkPolicy
    ) -> None:
        self.sink = sink
        self.store = store
        self.outbox = outbox
        self.workspace = workspace
        self.policy = policy

    @property
    def id(self) -> str:
        return self.sink.id

    async def aclose(self) -> None:
        await self.sink.aclose()

    async def send(self, item: OutboxItem) -> Delivered:
        resolved = await self.resolve(item)
        if isinstance(resolved, Delivered):
            return resolved
        return await self.sink.send(resolved)

    async def lookup(self, item: OutboxItem) -> Delivered | None:
        resolved = await self.resolve(item)
        if isinstance(resolved, Delivered):
            return resolved
        return await self.sink.lookup(resolved)

    async def read_back(self, item: OutboxItem) -> bool:
        resolved = await self.resolve(item)
        if isinstance(resolved, Delivered):
            return True
        return await self.sink.read_back(resolved)

    async def resolve(self, item: OutboxItem) -> OutboxItem | Delivered:
        """``item`` with its payload as the sink performs it; or, for a Patient update with
        nothing left to write, what is delivered without a request."""
        if item.workflow is None:
            return item
        try:
            workflow_of(item.workflow)
        except KeyError:
            raise SinkError(f"unknown workflow {item.workflow.partition('/')[0][:40]!r}") from None
        if item.operation == CREATE:
            payload = await self._create(item)
        elif item.operation == UPSERT:
            upsert = await self._upsert(item)
            if isinstance(upsert, Delivered):
                return upsert
            payload = upsert
        elif item.operation == NOTIFY:
            payload = await self._notify(item)
        else:
            raise SinkError(f"no workflow step performs {item.operation[:40]!r} items")
        return dataclasses.replace(item, payload=payload)

    # -- the steps -------------------------------------------------------------------------

    async def _create(self, item: OutboxItem) -> dict[str, Any]:
        """The create of the workflow's first record: its reference fields as the sink's
        records, and only the fields its entity type documents."""
        payload = dict(item.payload)
        spec = spec_for(item.entity_type)
        for part in ("fields", "entity"):
            values = payload.get(part)
            if not isinstance(values, Mapping):
                continue
            out: dict[str, Any] = {}
            for path, value in values.items():
                field = None if spec is None else spec.field(path)
                if spec is not None and field is None:
                    continue  # e.g. the booked slot: no element of the resource holds it
                if field is not None and field.kind == "reference" and value is not None:
                    value = await self._record(str(value))
                out[path] = value
            payload[part] = out
        return payload

    async def _upsert(self, item: OutboxItem) -> dict[str, Any] | Delivered:
        """The Patient update: the fields its facts still hold, an update of the record."""
        ws, sink = self.workspace, self.id
        facts = item.payload.get("facts")
        if not isinstance(facts, list):
            return dict(item.payload)  # already an upsert payload
        events = await self.store.read_entity(ws, item.entity_type, item.entity_id)
        state = await self.store.get_state(ws, item.entity_type, item.entity_id)
        ref = record_at(events, sink)
        if ref is None:
            raise Unresolved(
                f"{item.entity_type}/{item.entity_id} has no record at sink {sink} yet",
                transient=True,
            )
        fields: dict[str, Any] = {}
        for fact in facts:
            try:
                decision = decide(candidate(events, str(fact), state), self.policy)
            except KeyError:  # merged away
                continue
            if not decision.eligible or state is None:
                continue
            for path, value in state.fields.items():
                if value.event_id == fact:
                    fields[path] = value.value
        if not fields:
            return Delivered(
                ref=ref, version=None, created=False, extra={"unchanged": True, "fields": []}
            )
        resource_type, _, external_id = ref.partition("/")
        row = await self.store.get_record(
            ws, RecordKey(data_source=sink, resource_type=resource_type, external_id=external_id)
        )
        payload: dict[str, Any] = {"fields": fields, "ref": ref}
        if row is not None:
            payload["base"] = {f: row.snapshot.get(f) for f in fields}
        return payload

    async def _notify(self, item: OutboxItem) -> dict[str, Any]:
        """The notice: the created Appointment (its step's stored result), the practitioner's
        and the patient's records at the sink."""
        assert item.workflow is not None
        steps = await self.outbox.items(
            self.workspace, ItemQuery(workflow=item.workflow, sink=self.id)
        )
        created = next(
            (
                i
                for i in steps
                if i.step < item.step and i.entity_type == "Appointment" and i.operation == CREATE
            ),
            None,
        )
        landed = created is not None and created.status is ItemStatus.SYNCED
        about = (created.result or {}).get("ref") if created is not None and landed else None
        if not isinstance(about, str):
            raise Unresolved(
                f"workflow {item.workflow}: its Appointment is not at sink {self.id} yet",
                transient=True,
            )
        out: dict[str, Any] = {"about": about}
        for part in ("recipient", "subject"):
            value = item.payload.get(part)
            out[part] = None if value is None else await self._record(str(value))
        return out

    async def _record(self, reference: str) -> str:
        """The sink's record of the entity ``Type/<entity id>``."""
        entity_type, _, entity_id = reference.partition("/")
        events = await self.store.read_entity(self.workspace, entity_type, entity_id)
        ref = record_at(events, self.id)
        if ref is None:
            raise Unresolved(
                f"{entity_type}/{entity_id} has no record at sink {self.id} yet", transient=True
            )
        return ref
