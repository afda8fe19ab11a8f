"""The feed: follows the world model's log and queues, for every sink, the facts the gate lets
through (docs/design.md §9, "From the gate to the outbox").

Every event that asserts values (a source's record, an operator's correction or conflict
resolution) is a fact the gate is asked about, for each sink; a re-grade asks again about the
fact it re-grades, so a voice fact blocked when it was written is queued the moment a judge
verifies it or a human approves it. An eligible fact becomes one :class:`~.outbox.NewItem` per
sink, keyed by ``item_key(sink, event id)``. A fact the gate now refuses for good (rejected,
corrected, no longer the entity's value) has its unsent items cancelled.

The items of a page and the feed's new place in the log are written in one transaction
(:meth:`~.outbox.Outbox.enqueue` with ``cursor``). After a crash the page is read again and
decided again: the same facts give the same keys, so what was queued is found, not doubled, and
nothing between the old cursor and the crash is skipped.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ehrbridge.errors import OutboxConflict
from ehrbridge.outbound.gates import Candidate, SinkPolicy, candidate, decide
from ehrbridge.outbound.outbox import NewItem, Outbox, item_key
from ehrbridge.outbound.workflows import Workflows
from ehrbridge.worldmodel.events import ASSERTING, Event, EventType, RecordKey
from ehrbridge.worldmodel.projection import EntityState
from ehrbridge.worldmodel.store import START, Store

log = logging.getLogger("ehrbridge.outbound")

#: the feed's cursor, saved with the items it queues
FEED_CURSOR = "outbound-feed"
#: the operation of an item that writes a fact's fields
UPSERT = "upsert"
#: source kinds whose id names a data source (a record at a sink)
_RECORD_KINDS = frozenset({"ehr", "browser"})


@dataclass(frozen=True, kw_only=True)
class FeedStep:
    """What one step of the feed did."""

    events: int  #: log events read
    queued: int  #: eligible (fact, sink) pairs, queued now or found queued
    cancelled: int  #: unsent items cancelled
    #: with ``count_missing``: items this step queued that were not queued before
    missing: int = 0


class OutboundFeed:
    """Queues what the gate lets through, for the sinks of one workspace."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        *,
        workspace: str,
        sinks: Sequence[SinkPolicy],
        batch: int = 500,
        cursor: str = FEED_CURSOR,
        count_missing: bool = False,
        workflows: Workflows | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.workspace = workspace
        self.sinks = tuple(sinks)
        self.batch = batch
        #: the name of the place in the log this feed keeps
        self.cursor = cursor
        #: count the eligible facts that had no item (the reconcile pass)
        self.count_missing = count_missing
        #: asked whether an eligible fact starts a workflow (its step items are queued instead)
        self.workflows = workflows

    async def step(self) -> FeedStep:
        """Read one page of the log after the feed's cursor; queue, cancel, and move on."""
        ws = self.workspace
        position = await self.outbox.cursor(ws, self.cursor) or START
        page = await self.store.read_log(ws, position, self.batch)
        if page.position == position:
            return FeedStep(events=0, queued=0, cancelled=0)
        facts = _facts_of(page.events, self._could_go)
        for event in page.events:
            if event.event_type is EventType.CONFLICT_RESOLVED:
                await self._resolved(event)
        items: list[NewItem] = []
        carried: set[tuple[str, str]] = set()
        cancelled = 0
        for (entity_type, entity_id), event_ids in facts.items():
            events = await self.store.read_entity(ws, entity_type, entity_id)
            state = await self.store.get_state(ws, entity_type, entity_id)
            for event_id in event_ids:
                queued, refused = await self._decide(events, event_id, state, carried)
                items += queued
                if refused and not await self._begun(event_id):
                    cancelled += len(await self.outbox.cancel(ws, event_id, refused))
        # a fact a workflow of this page carries has no plain item of its own at that sink
        items = [i for i in items if i.workflow is not None or (i.event_id, i.sink) not in carried]
        missing = 0
        if self.count_missing and items:
            known = await self.outbox.of_events(ws, [i.event_id for i in items if i.event_id])
            keys = {queued.key for found in known.values() for queued in found}
            missing = sum(1 for i in items if i.key not in keys)
        await self.outbox.enqueue(ws, items, cursor=(self.cursor, page.position))
        return FeedStep(
            events=len(page.events), queued=len(items), cancelled=cancelled, missing=missing
        )

    async def _begun(self, event_id: str) -> bool:
        """Whether the fact started a workflow whose first write landed: its other steps belong
        to the workflow now (its echo is what made the fact no longer current), so they are not
        cancelled with the fact; a plain item of it is still gated again before it is sent."""
        return self.workflows is not None and await self.workflows.begun(event_id)

    def _could_go(self, event: Event) -> bool:
        """Whether any sink could take this assertion, from the event alone: a type it takes,
        and not its own data (most of a backfill is left out here, without a read)."""
        source = event.source
        return any(
            (p.entity_types is None or event.entity_type in p.entity_types)
            and not (source.kind in _RECORD_KINDS and source.id == p.sink)
            for p in self.sinks
        )

    async def _resolved(self, event: Event) -> None:
        """An operator resolved a conflict the dispatcher recorded: the parked item that met it
        is skipped, so its lane goes on with the resolution (queued as a fact of its own)."""
        conflict = await self.store.get_event(self.workspace, str(event.data.get("conflict")))
        item_id = None if conflict is None else conflict.data.get("item")
        if conflict is None or not isinstance(item_id, str):
            return
        reason = f"conflict {conflict.id} resolved"
        with contextlib.suppress(OutboxConflict):  # not parked (skipped or retried): nothing
            await self.outbox.skip(self.workspace, item_id, event.source.id, reason)

    async def _decide(
        self,
        events: Sequence[Event],
        event_id: str,
        state: EntityState | None,
        carried: set[tuple[str, str]],
    ) -> tuple[list[NewItem], str | None]:
        """The items of one fact for every sink that takes it now (a workflow's steps, when it
        starts one: the other facts it carries are added to ``carried``, as (event id, sink));
        and, when a sink's gate refuses it for good, the reason to cancel what is still
        unsent."""
        try:
            fact = candidate(events, event_id, state)
        except KeyError:  # merged away, or a target of another entity: nothing to send
            return [], None
        refused = _refused(fact)
        if refused is not None:
            return [], refused
        event = next(e for e in events if e.id == event_id)
        items: list[NewItem] = []
        for policy in self.sinks:
            if not decide(fact, policy).eligible:
                continue
            payload = await self.payload(event, events, state, policy)
            started = None
            if self.workflows is not None:
                started = await self.workflows.expand(event, events, policy, payload)
            if started is None:
                if self.workflows is None or not await self.workflows.carries(event, policy.sink):
                    items.append(self._item(event, policy, payload))
            else:
                items += started.items
                carried.update((f, policy.sink) for f in started.carried)
        return items, None

    def _item(self, fact: Event, policy: SinkPolicy, payload: dict[str, Any]) -> NewItem:
        return NewItem(
            sink=policy.sink,
            key=item_key(policy.sink, fact.id),
            lane=f"{fact.entity_type}/{fact.entity_id}",
            entity_type=fact.entity_type,
            entity_id=fact.entity_id,
            event_id=fact.id,
            operation=UPSERT,
            payload=payload,
        )

    async def payload(
        self,
        fact: Event,
        events: Sequence[Event],
        state: EntityState | None,
        policy: SinkPolicy,
    ) -> dict[str, Any]:
        """What a sink needs to write ``fact`` (the format of docs/fhir-sink.md): the fields it
        still carries, the sink's record of the entity and that record's values of those fields
        as last read (the base a newer change at the sink is told by), and for a create the
        entity's trusted values."""
        current = {} if state is None else state.fields
        fields = {
            f: fact.data.get(f)
            for f in fact.fields
            if f in current and current[f].event_id == fact.id
        } or {f: fact.data.get(f) for f in fact.fields}
        out: dict[str, Any] = {"fields": fields, "ref": None}
        ref = record_at(events, policy.sink)
        if ref is not None:
            resource_type, _, external_id = ref.partition("/")
            row = await self.store.get_record(
                self.workspace,
                RecordKey(
                    data_source=policy.sink, resource_type=resource_type, external_id=external_id
                ),
            )
            out["ref"] = ref
            if row is not None:
                out["base"] = {f: row.snapshot.get(f) for f in fields}
        else:
            entity = {
                path: fv.value for path, fv in current.items() if fv.confidence >= policy.threshold
            }
            entity.update(fields)
            out["entity"] = entity
        return out


def record_at(events: Sequence[Event], sink: str) -> str | None:
    """The entity's record at ``sink`` (``Patient/123``): the reference of the latest event that
    sink's snapshots wrote, or None when the sink has no record of it yet."""
    for event in reversed(events):
        source = event.source
        if source.kind in _RECORD_KINDS and source.id == sink and source.ref:
            return source.ref
    return None


def _facts_of(
    events: Sequence[Event], could_go: Callable[[Event], bool]
) -> Mapping[tuple[str, str], list[str]]:
    """The facts a page of the log asks the gate about, per entity, in log order, each once;
    an assertion no sink could take (``could_go``) is left out unread."""
    facts: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event in events:
        if event.event_type in ASSERTING and not could_go(event):
            continue
        if event.event_type in ASSERTING:
            fact = event.id
        elif event.event_type is EventType.REGRADED and "target" in event.data:
            fact = str(event.data["target"])
        elif event.event_type is EventType.CORRECTED and event.supersedes:
            fact = event.supersedes
        else:
            continue
        entity = (event.entity_type, event.entity_id)
        if fact not in facts[entity]:
            facts[entity].append(fact)
        if event.event_type is EventType.CORRECTED and event.id not in facts[entity]:
            facts[entity].append(event.id)
    return facts


def _refused(fact: Candidate) -> str | None:
    """Why no sink may ever take ``fact`` as it stands (its unsent items are cancelled): it was
    rejected or contradicted (re-graded to 0.0), corrected, or replaced by a newer value. None
    when a sink's gate may still let it through (the dispatcher asks the gate again before it
    sends anything)."""
    if fact.confidence <= 0.0:
        grade = fact.grades[-1] if fact.grades else None
        return f"rejected by {grade.name}" if grade else "written at confidence 0"
    if fact.corrected_by is not None:
        return f"corrected by {fact.corrected_by}"
    if not fact.current:
        return "a newer value replaced it"
    return None
