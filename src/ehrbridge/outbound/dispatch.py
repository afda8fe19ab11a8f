"""The dispatch loop: drains the outbox into each sink at the rate it accepts (docs/design.md §9,
"Dispatch").

::

    dispatch ─┬─ feed          the log → the gate → outbox items (:mod:`.feed`)
              ├─ sink <id>     one drain per sink: claim ready lane heads, deliver each in its
              │                own task under the sink's adaptive concurrency limit and circuit
              │                breaker, settle it; the rate is the sink's request budget, shared
              │                by every runner through the database (its HTTP client's transport)
              └─ heartbeat     renews the leases of every item in flight

Woken at once by the outbox (:meth:`~.outbox.Outbox.watch`: a queued item, an item made due
again) and by the world model (a re-grade or an operator's decision), with a periodic catch-up
read as the guarantee.

Delivering one claimed item, in order:

1. **The gate again**, on the entity as it is now: a fact rejected, corrected or replaced since it
   was queued is not sent (cancelled; a value replaced by the sink's own newer change is a
   conflict).
   **A create of an entity that has a record at the sink by now** (an earlier fact's create
   landed since this one was queued) is sent as an update of that record.
2. **In doubt** (an earlier attempt may have reached the sink): look the write up at the sink
   first; found → synced, and nothing is sent.
3. **Mark sent** (fenced by the claim's epoch: a worker that lost its lease stops here), then
   **send** once.
4. **Settle** (fenced): synced with the sink's answer, and the sink's record as it now is recorded
   as the sink's snapshot (so the next poll finds nothing new); a conflict → a conflict event for
   review and the item parked; a transient error → retried after a backoff, or dead once its
   retries are spent; anything else → dead with the sink's reason. Its lane waits while it is
   parked; other lanes go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from ehrbridge.errors import SinkConflict, SinkError
from ehrbridge.outbound.feed import UPSERT, OutboundFeed
from ehrbridge.outbound.gates import Layer, SinkPolicy, candidate, decide
from ehrbridge.outbound.limits import (
    AdaptiveLimiter,
    CircuitBreaker,
    GiveUp,
    RetryLimits,
    Ticket,
    classify,
    next_attempt,
)
from ehrbridge.outbound.outbox import (
    Attempt,
    Claim,
    ItemQuery,
    ItemStatus,
    Outbox,
    OutboxItem,
    Settle,
)
from ehrbridge.outbound.sinks import Conflicting, Delivered, Sink
from ehrbridge.times import pause
from ehrbridge.worldmodel.events import Event, EventType, NewEvent, Source
from ehrbridge.worldmodel.projection import EntityState
from ehrbridge.worldmodel.store import Store

log = logging.getLogger("ehrbridge.outbound")

#: how long a claim lasts unless renewed; the heartbeat renews it every third of that
DEFAULT_LEASE = timedelta(seconds=30)
#: how often the outbox and the log are read when nothing wakes the loop
DEFAULT_CATCH_UP = timedelta(milliseconds=500)
#: the source of the conflict events the dispatcher writes
DISPATCHER = Source(kind="system", id="dispatcher")


class Echo(Protocol):
    """Records a sink's record after our write as that sink's snapshot of it (so the next poll
    of the sink finds nothing new: docs/design.md §5.3 example 4)."""

    async def __call__(self, sink: str, item: OutboxItem, delivered: Delivered) -> None: ...


@dataclass(kw_only=True)
class SinkRuntime:
    """One sink as the dispatcher drives it."""

    sink: Sink
    policy: SinkPolicy
    retry: RetryLimits
    breaker: CircuitBreaker
    limiter: AdaptiveLimiter
    #: what a conflict does: ``review`` (a conflict event, the item parked as a conflict) or
    #: ``dead`` (parked as a dead letter)
    on_conflict: Literal["review", "dead"] = "review"
    #: how long until the sink's business hours for writes open (zero: open now)
    closed_for: Callable[[datetime], timedelta] = lambda _: timedelta(0)
    #: items in flight, by item id: their claims and tasks
    in_flight: dict[str, tuple[Claim, asyncio.Task[None]]] = field(default_factory=dict)
    #: set when a delivery ends (room for another claim)
    freed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> str:
        return self.policy.sink


class Dispatcher:
    """The runner's ``dispatch`` loop for one workspace."""

    name = "dispatch"

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        sinks: Sequence[SinkRuntime],
        *,
        workspace: str,
        holder: str,
        echo: Echo | None = None,
        lease: timedelta = DEFAULT_LEASE,
        catch_up: timedelta = DEFAULT_CATCH_UP,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.sinks = {rt.id: rt for rt in sinks}
        self.workspace = workspace
        self.holder = holder
        self.echo = echo
        self.lease = lease
        self.catch_up = catch_up
        self.clock = clock
        self.feed = OutboundFeed(
            store, outbox, workspace=workspace, sinks=[rt.policy for rt in sinks]
        )
        self._ready = asyncio.Event()  #: the outbox has something new
        self._logged = asyncio.Event()  #: the log has something new

    def wake(self) -> None:
        """Read the log and the outbox now (the reconcile loop found work)."""
        self._ready.set()
        self._logged.set()

    def states(self) -> dict[str, dict[str, Any]]:
        """Per sink: its circuit, concurrency limit and deliveries in flight, for operators."""
        return {
            rt.id: {
                **rt.breaker.state().as_json(),
                **rt.limiter.state().as_json(),
                "in_flight": len(rt.in_flight),
            }
            for rt in self.sinks.values()
        }

    async def run(self, stop: asyncio.Event) -> None:
        unwatch_outbox = await self.outbox.watch(self.workspace, self._ready.set)
        unwatch_log = await self.store.watch(self.workspace, self._logged.set)
        tasks = [
            asyncio.create_task(self._feed(stop), name="dispatch:feed"),
            asyncio.create_task(self._heartbeat(stop), name="dispatch:heartbeat"),
            *(
                asyncio.create_task(self._drain(rt, stop), name=f"dispatch:{rt.id}")
                for rt in self.sinks.values()
            ),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a task that raised is a bug: the runner stops
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._settle_in_flight()
            await unwatch_outbox()
            await unwatch_log()

    # --- the feed -------------------------------------------------------------------------

    async def _feed(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._logged.clear()
            step = await self.feed.step()
            if step.queued or step.cancelled:
                self._ready.set()
            if step.events:
                continue  # more may follow at once
            await pause(self.catch_up, stop, self._logged)

    # --- one sink ---------------------------------------------------------------------------

    async def _drain(self, rt: SinkRuntime, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self.clock()
            closed = rt.closed_for(now)
            if closed > timedelta(0):
                await pause(min(closed, timedelta(minutes=1)), stop)
                continue
            ticket = rt.breaker.allow()
            if ticket is None:  # open, or half-open with its probe out
                until = rt.breaker.state().open_until
                wait = self.catch_up if until is None else max(until - now, self.catch_up)
                rt.freed.clear()
                await pause(wait, stop, rt.freed)
                continue
            # every task in flight holds, or waits for, a place in the limiter
            room = 1 if ticket.probe else rt.limiter.state().limit - len(rt.in_flight)
            if room <= 0:
                rt.breaker.cancel(ticket)
                rt.freed.clear()
                await pause(self.catch_up, stop, rt.freed)
                continue
            self._ready.clear()
            claims = await self.outbox.claim(
                self.workspace, rt.id, self.holder, limit=room, lease=self.lease
            )
            tickets: list[Ticket | None] = [ticket]
            tickets += [rt.breaker.allow() for _ in claims[1:]]
            for claim, held in zip(claims, tickets, strict=False):
                if held is None:  # the circuit opened meanwhile: give the claim back
                    await self.outbox.release(self.workspace, claim.item.id, claim.epoch)
                    continue
                task = asyncio.create_task(
                    self._deliver(rt, claim, held), name=f"dispatch:{rt.id}:{claim.item.id}"
                )
                rt.in_flight[claim.item.id] = (claim, task)
            if not claims:
                rt.breaker.cancel(ticket)
                rt.freed.clear()
                await pause(self.catch_up, stop, self._ready, rt.freed)

    async def _deliver(self, rt: SinkRuntime, claim: Claim, ticket: Ticket) -> None:
        item = claim.item
        asked = False
        try:
            async with rt.limiter.slot() as slot:
                started = self.clock()
                asked, error = await self._attempt(rt, claim, started)
                slot.done(error)
            if asked:
                rt.breaker.record(ticket, classify(error))
        except Exception:  # a bug in one delivery must not leave the item held until expiry
            log.exception("dispatch: delivering item %s failed", item.id)
            await self.outbox.release(self.workspace, item.id, claim.epoch)
        finally:
            if not asked:
                rt.breaker.cancel(ticket)
            rt.in_flight.pop(item.id, None)
            rt.freed.set()

    async def _attempt(
        self, rt: SinkRuntime, claim: Claim, started: datetime
    ) -> tuple[bool, SinkError | None]:
        """Deliver one item (the steps in the module docstring) and settle it; returns whether
        the sink was asked anything, and the error that ended the attempt."""
        item, ws = claim.item, self.workspace
        refused = await self._gate_again(rt, item)
        if refused is not None:
            status, reason, conflicts = refused
            if conflicts and rt.on_conflict == "review":
                events = [self._conflict_event(rt, item, c) for c in conflicts]
                await self.store.append(self.workspace, events)
            await self._settle(claim, started, status, status.value, error=reason)
            return False, None
        item = await self._onto_record(rt, item)
        try:
            if claim.in_doubt or item.in_doubt:
                found = await rt.sink.lookup(item)
                if found is not None:
                    await self._synced(rt, claim, started, found, outcome="found")
                    return True, None
            if not await self.outbox.mark_sent(ws, item.id, claim.epoch):
                log.info("dispatch: item %s: lease lost before sending", item.id)
                return claim.in_doubt or item.in_doubt, None
            delivered = await rt.sink.send(item)
        except SinkConflict as conflict:
            await self._conflict(rt, claim, started, conflict)
            return True, conflict
        except SinkError as error:
            await self._failed(rt, claim, started, error)
            return True, error
        await self._synced(rt, claim, started, delivered, outcome="synced")
        return True, None

    async def _gate_again(
        self, rt: SinkRuntime, item: OutboxItem
    ) -> tuple[ItemStatus, str, list[Conflicting]] | None:
        """The gate on the entity as it is now: None to go on, or how to settle the item (and
        the conflicts to record when the sink's own newer change replaced the value)."""
        if item.event_id is None:
            return None
        ws = self.workspace
        events = await self.store.read_entity(ws, item.entity_type, item.entity_id)
        state = await self.store.get_state(ws, item.entity_type, item.entity_id)
        try:
            fact = candidate(events, item.event_id, state)
        except KeyError:
            return ItemStatus.CANCELLED, "its fact is no longer the entity's (merged away)", []
        decision = decide(fact, rt.policy)
        blocked = decision.blocked_by
        if blocked is None:
            return None
        if blocked.layer is Layer.CURRENT and fact.corrected_by is None:
            newer = _newer_from(events, item, rt.id)
            if newer is not None and _echoes(item, state, newer):
                # the sink's record holds our values (the echo of this item's own write, which
                # a read-back found missing, or the sink agreeing): send; the sink writes them
                # again if they are not there, and nothing if they are
                return None
            if newer is not None:
                open_fields = {c.field for c in state.conflicts} if state else set()
                conflicts = [
                    Conflicting(field=f, ours=ours, theirs=newer.data.get(f))
                    for f, ours in item.payload.get("fields", {}).items()
                    if f in newer.fields and f not in open_fields
                ]
                status = ItemStatus.CONFLICT if rt.on_conflict == "review" else ItemStatus.DEAD
                return status, f"the sink changed it since (event {newer.id})", conflicts
        return ItemStatus.CANCELLED, f"gate: {blocked.layer.value}: {blocked.reason}", []

    async def _onto_record(self, rt: SinkRuntime, item: OutboxItem) -> OutboxItem:
        """A create (no ``ref``) of an entity that has a record at the sink by now is an update
        of that record: two facts about a new patient, the second queued before the first's
        create landed, make one record, not two. The record is the world model's (an earlier
        item's echo, or a poll), else an earlier synced item's answer (its echo lost to a
        crash); never the one this item's own earlier write was answered with (a create the
        sink dropped is created again)."""
        if item.operation != UPSERT or item.workflow is not None or item.event_id is None:
            return item  # a workflow step's payload is its own
        if item.payload.get("ref") is not None:
            return item
        ws = self.workspace
        own = (item.result or {}).get("ref")
        events = await self.store.read_entity(ws, item.entity_type, item.entity_id)
        fact = next((e for e in events if e.id == item.event_id), None)
        if fact is not None:
            state = await self.store.get_state(ws, item.entity_type, item.entity_id)
            now = await self.feed.payload(fact, events, state, rt.policy)
            if now.get("ref") not in (None, own):
                return replace(item, payload=now)
        synced = await self.outbox.items(
            ws,
            ItemQuery(
                sink=rt.id,
                status=ItemStatus.SYNCED,
                entity_type=item.entity_type,
                entity_id=item.entity_id,
            ),
        )
        for earlier in synced:  # the newest first
            ref = (earlier.result or {}).get("ref")
            if earlier.id != item.id and isinstance(ref, str) and ref != own:
                fields = dict(item.payload.get("fields", {}))
                return replace(item, payload={"fields": fields, "ref": ref})
        return item

    async def _synced(
        self,
        rt: SinkRuntime,
        claim: Claim,
        started: datetime,
        delivered: Delivered,
        *,
        outcome: str,
    ) -> None:
        settled = await self._settle(
            claim, started, ItemStatus.SYNCED, outcome, result=delivered.as_result()
        )
        if settled and self.echo is not None:
            await self.echo(rt.id, claim.item, delivered)

    async def _conflict(
        self, rt: SinkRuntime, claim: Claim, started: datetime, conflict: SinkConflict
    ) -> None:
        item = claim.item
        if rt.on_conflict == "review":
            await self.store.append(
                self.workspace, [self._conflict_event(rt, item, c) for c in conflict.conflicts]
            )
            status = ItemStatus.CONFLICT
        else:
            status = ItemStatus.DEAD
        await self._settle(
            claim, started, status, "conflict", status_code=conflict.status, error=str(conflict)
        )

    def _conflict_event(self, rt: SinkRuntime, item: OutboxItem, c: Conflicting) -> NewEvent:
        """The conflict event for review: ours and the sink's value side by side (docs/design.md
        §5.4); resolving it settles the parked item (the feed skips it)."""
        theirs_source = Source(kind="ehr", id=rt.id, ref=item.payload.get("ref"))
        return NewEvent(
            workspace=self.workspace,
            entity_type=item.entity_type,
            entity_id=item.entity_id,
            event_type=EventType.CONFLICT_RECORDED,
            data={
                "field": c.field,
                "reason": f"the sink {rt.id} changed it since the write was decided",
                "item": item.id,
                "candidates": [
                    {"event_id": item.event_id, "value": c.ours, "outbound": True},
                    {"value": c.theirs, "source": theirs_source.as_dict(), "version": c.version},
                ],
            },
            source=DISPATCHER,
            confidence=1.0,
            effective_at=self.clock(),
            idempotency_key=f"conflict:{item.id}:{c.field}",
        )

    async def _failed(
        self, rt: SinkRuntime, claim: Claim, started: datetime, error: SinkError
    ) -> None:
        item = claim.item
        now = self.clock()
        if not error.transient:
            await self._settle(
                claim, started, ItemStatus.DEAD, "dead", status_code=error.status, error=str(error)
            )
            return
        retry = next_attempt(
            attempts=item.attempts + 1,
            age=now - item.created_at,
            error=error,
            limits=rt.retry,
            now=now,
        )
        if isinstance(retry, GiveUp):
            await self._settle(
                claim,
                started,
                ItemStatus.DEAD,
                "dead",
                status_code=error.status,
                error=f"{error} ({retry.reason})",
            )
            return
        await self._settle(
            claim,
            started,
            ItemStatus.PENDING,
            "retry",
            status_code=error.status,
            error=str(error),
            next_attempt_at=retry.at,
            in_doubt=error.may_have_reached_sink or claim.in_doubt or item.in_doubt,
        )

    async def _settle(
        self,
        claim: Claim,
        started: datetime,
        status: ItemStatus,
        outcome: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        next_attempt_at: datetime | None = None,
        in_doubt: bool = False,
    ) -> bool:
        item = claim.item
        settled = await self.outbox.settle(
            self.workspace,
            item.id,
            claim.epoch,
            Settle(
                status=status,
                attempt=Attempt(
                    item_id=item.id,
                    epoch=claim.epoch,
                    started_at=started,
                    finished_at=self.clock(),
                    outcome=outcome,
                    status=status_code,
                    detail=error or "",
                ),
                next_attempt_at=next_attempt_at,
                result=result,
                error=error,
                in_doubt=in_doubt,
            ),
        )
        if not settled:
            log.info("dispatch: item %s: lease lost; its new holder settles it", item.id)
        return settled

    # --- leases -----------------------------------------------------------------------------

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        every = self.lease / 3
        while not await pause(every, stop):
            for sink, state in self.states().items():  # for ehrbridge status, any process
                await self.outbox.save_sink_state(self.workspace, sink, self.holder, state)
            held = [
                (item_id, claim.epoch)
                for rt in self.sinks.values()
                for item_id, (claim, _) in rt.in_flight.items()
            ]
            if not held:
                continue
            renewed = await self.outbox.renew(self.workspace, held, self.holder, self.lease)
            lost = {item_id for item_id, _ in held} - renewed
            if lost:
                log.warning("dispatch: %d leases lost (taken over or settled)", len(lost))

    async def _settle_in_flight(self) -> None:
        """On stop: let deliveries in flight finish their step (they are cancelled with the
        drains only if they outlive the lease; their items are then taken over in doubt)."""
        tasks = [task for rt in self.sinks.values() for _, task in rt.in_flight.values()]
        if tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*tasks, return_exceptions=True),
                    timeout=self.lease.total_seconds() / 2,
                )


def _echoes(item: OutboxItem, state: EntityState | None, newer: Event) -> bool:
    """Whether the sink's ``newer`` event only says our values: every field of the item is the
    entity's now by that event, with the item's value."""
    fields: dict[str, Any] = item.payload.get("fields", {})
    if state is None or not fields:
        return False
    for path, ours in fields.items():
        now = state.fields.get(path)
        if now is None or now.event_id != newer.id or now.value != ours:
            return False
    return True


def _newer_from(events: Sequence[Event], item: OutboxItem, sink: str) -> Event | None:
    """The sink's own event that replaced the item's value since it was queued, if one did."""
    fields = set(item.payload.get("fields", {}))
    for event in reversed(events):
        if event.id == item.event_id:
            return None
        if event.source.id == sink and fields & set(event.fields):
            return event
    return None
