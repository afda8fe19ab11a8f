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

1. **In doubt** (an earlier attempt may have reached the sink): look the write up at the sink
   first; found → synced, and nothing is sent (what the sink holds is the truth, whatever was
   decided since).
2. **The gate again**, on the entity as it is now: a fact rejected, corrected or replaced since it
   was queued is not sent (cancelled; a value replaced by the sink's own newer change is a
   conflict).
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
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from ehrbridge.errors import InvalidInput, SinkConflict, SinkError, StorageError
from ehrbridge.leases import Leases
from ehrbridge.outbound.feed import OutboundFeed
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
from ehrbridge.outbound.workflows import Workflows, cancelled_before
from ehrbridge.times import pause
from ehrbridge.worldmodel.events import Event, EventType, NewEvent, Source
from ehrbridge.worldmodel.store import Store

log = logging.getLogger("ehrbridge.outbound")

#: how long a claim lasts unless renewed; the heartbeat renews it every third of that
DEFAULT_LEASE = timedelta(seconds=30)
#: how often the outbox and the log are read when nothing wakes the loop
DEFAULT_CATCH_UP = timedelta(milliseconds=500)
#: the lease the feed runs under, one runner at a time per workspace
FEED_LEASE = "outbound-feed"
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
    #: the longest one attempt may take (its requests together); at most half the lease, so an
    #: attempt never outlives the claim it runs under
    attempt_timeout: timedelta = timedelta(seconds=10)
    #: how long until the sink's business hours for writes open (zero: open now)
    closed_for: Callable[[datetime], timedelta] = lambda _: timedelta(0)
    #: items in flight, by item id: their claims and tasks
    in_flight: dict[str, tuple[Claim, asyncio.Task[None]]] = field(default_factory=dict)
    #: set when a delivery ends (room for another claim)
    freed: asyncio.Event = field(default_factory=asyncio.Event)
    #: attempts settled since the dispatcher started, by outcome (``synced``, ``retry``, ...)
    deliveries: Counter[str] = field(default_factory=Counter)

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
        leases: Leases | None = None,
        lease: timedelta = DEFAULT_LEASE,
        catch_up: timedelta = DEFAULT_CATCH_UP,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        workflows: Workflows | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        for rt in sinks:
            if rt.attempt_timeout * 2 > lease:
                raise InvalidInput(
                    f"sink {rt.id}: an attempt may take {rt.attempt_timeout}, more than half the "
                    f"lease ({lease}): a lease could lapse while its holder still sends"
                )
        self.sinks = {rt.id: rt for rt in sinks}
        self.workspace = workspace
        self.holder = holder
        self.echo = echo
        #: with ``leases``, one feed of the workspace runs at a time: the one holding the
        #: ``outbound-feed`` lease (the others' drains still deliver; they take the feed over
        #: if it lapses)
        self.leases = leases
        self._feed_held_at: float | None = None
        self.lease = lease
        self.catch_up = catch_up
        self.clock = clock
        self.feed = OutboundFeed(
            store,
            outbox,
            workspace=workspace,
            sinks=[rt.policy for rt in sinks],
            workflows=workflows,
        )
        self._ready = asyncio.Event()  #: the outbox has something new
        self._logged = asyncio.Event()  #: the log has something new

    def wake(self) -> None:
        """Read the log and the outbox now (the reconcile loop found work)."""
        self._ready.set()
        self._logged.set()

    def states(self) -> dict[str, dict[str, Any]]:
        """Per sink: its circuit, concurrency limit, deliveries in flight and attempts settled
        by outcome since it started, for operators and ``/metrics``."""
        return {
            rt.id: {
                **rt.breaker.state().as_json(),
                **rt.limiter.state().as_json(),
                "in_flight": len(rt.in_flight),
                "deliveries": dict(rt.deliveries),
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
        try:
            while not stop.is_set():
                self._logged.clear()
                try:
                    step = await self.feed.step() if await self._hold_feed() else None
                except StorageError as exc:  # the database is away: again at the next catch-up
                    log.warning("dispatch: the feed's step failed: %s", exc)
                    step = None
                if step is not None and (step.queued or step.cancelled):
                    self._ready.set()
                if step is not None and step.events:
                    continue  # more may follow at once
                await pause(self.catch_up, stop, self._logged)
        finally:
            if self.leases is not None and self._feed_held_at is not None:
                with contextlib.suppress(StorageError):  # it lapses on its own
                    await self.leases.release(self.workspace, FEED_LEASE, self.holder)

    async def _hold_feed(self) -> bool:
        """Take or renew the feed's lease (at most every third of its time); whether held."""
        if self.leases is None:
            return True
        now = time.monotonic()
        held = self._feed_held_at
        if held is not None and now - held < self.lease.total_seconds() / 3:
            return True
        taken = await self.leases.acquire(self.workspace, FEED_LEASE, self.holder, self.lease)
        self._feed_held_at = now if taken is not None else None
        return taken is not None

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
            try:
                claims = await self.outbox.claim(
                    self.workspace, rt.id, self.holder, limit=room, lease=self.lease
                )
            except StorageError as exc:  # the database is away: again at the next catch-up
                log.warning("dispatch: claiming for %s failed: %s", rt.id, exc)
                claims = []
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
                if asked:
                    slot.done(error)
                else:  # nothing went to the sink: its time says nothing of the sink's
                    slot.unsent()
            if asked:
                rt.breaker.record(ticket, classify(error))
        except Exception:  # a bug, or the database away: not held until its lease lapses
            log.exception("dispatch: delivering item %s failed", item.id)
            with contextlib.suppress(StorageError):  # then it lapses on its own
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
        in_doubt = claim.in_doubt or item.in_doubt
        sent = False
        try:
            async with asyncio.timeout(rt.attempt_timeout.total_seconds()):
                if in_doubt:  # first what the sink holds: an earlier send may have landed
                    found = await rt.sink.lookup(item)
                    if found is not None:
                        await self._synced(rt, claim, started, found, outcome="found")
                        return True, None
                refused = await self._gate_again(rt, item)
                if refused is not None:
                    status, reason, conflicts = refused
                    if conflicts and rt.on_conflict == "review":
                        events = [self._conflict_event(rt, item, c) for c in conflicts]
                        await self.store.append(self.workspace, events)
                    await self._settle(claim, started, status, status.value, error=reason)
                    return in_doubt, None
                if not await self.outbox.mark_sent(ws, item.id, claim.epoch):
                    log.info("dispatch: item %s: lease lost before sending", item.id)
                    return in_doubt, None
                sent = True
                delivered = await rt.sink.send(item)
        except TimeoutError:
            late = SinkError(
                f"no outcome within the attempt's {rt.attempt_timeout.total_seconds():g} s",
                operation=f"deliver to {rt.id}",
                transient=True,
                may_have_reached_sink=sent,
            )
            await self._failed(rt, claim, started, late)
            return True, late
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
        the conflicts to record when the sink's own newer change replaced the value). A
        workflow's later steps are not gated again: once its first step landed, the rest belong
        to it (docs/workflows.md), and the first step's echo has made the fact the sink's; but
        when an earlier step was cancelled, so are they."""
        if item.workflow is not None and item.step > 0:
            steps = await self.outbox.items(
                self.workspace, ItemQuery(workflow=item.workflow, sink=item.sink)
            )
            earlier = cancelled_before(item, steps)
            if earlier is None:
                return None
            return ItemStatus.CANCELLED, f"step {earlier.step} of its workflow was cancelled", []
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
        # a throttle is the sink's pace, not a failure: it spends no attempt (max_age bounds it)
        throttled = error.status == 429
        retry = next_attempt(
            attempts=1 if throttled else item.attempts + 1,
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
        elif (rt := self.sinks.get(item.sink)) is not None:
            rt.deliveries[outcome] += 1
        return settled

    # --- leases -----------------------------------------------------------------------------

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        every = self.lease / 3
        while not await pause(every, stop):
            try:
                for sink, state in self.states().items():  # for ehrbridge status, any process
                    await self.outbox.save_sink_state(self.workspace, sink, self.holder, state)
            except StorageError as exc:
                log.warning("dispatch: saving the sinks' state failed: %s", exc)
            held = [
                (item_id, claim.epoch)
                for rt in self.sinks.values()
                for item_id, (claim, _) in rt.in_flight.items()
            ]
            if not held:
                continue
            try:
                renewed = await self.outbox.renew(self.workspace, held, self.holder, self.lease)
            except StorageError as exc:  # the next beat tries again, well inside the lease
                log.warning("dispatch: renewing leases failed: %s", exc)
                continue
            lost = {item_id for item_id, _ in held} - renewed
            if lost:
                log.warning("dispatch: %d leases lost (taken over or settled)", len(lost))

    async def _settle_in_flight(self) -> None:
        """On stop: let deliveries in flight finish their step (they are cancelled with the
        drains only if they outlive the lease; their items are then taken over in doubt)."""
        tasks = [task for rt in self.sinks.values() for _, task in rt.in_flight.values()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.lease.total_seconds() / 2)
            for task in late:  # its item is taken over once its lease lapses (in doubt)
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)


def _newer_from(events: Sequence[Event], item: OutboxItem, sink: str) -> Event | None:
    """The sink's own event that replaced the item's value since it was queued, if one did."""
    fields = set(item.payload.get("fields", {}))
    for event in reversed(events):
        if event.id == item.event_id:
            return None
        if event.source.id == sink and fields & set(event.fields):
            return event
    return None
