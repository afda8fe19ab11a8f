"""The review loop: every voice fact judged once, verified, rejected or sent to a human
(docs/design.md §8).

The loop follows the world model's log from a stored cursor (``cursors``: source ``review``,
resource ``log``), which the log's gap-safe reads make safe on both backends (§4). For each event
it may judge (:meth:`ReviewLoop.judgeable`: a voice ``recorded`` event below the trusted
threshold, not a transcript), it reads the call's transcript (the ``Call`` entity of the event's
correlation id), asks the judge about each field, and records the verdict as an event: a
``regraded`` event by ``review:<judge>/<version>`` with the verdict as its evidence — at 0.8 when
supported, 0.0 when contradicted (or unchanged, for a human, by policy), unchanged when unsure.
What goes to a human is flagged on the review queue (one open item per entity). Policy may send
a supported fact to a human too (entity types or fields that always need one).

**Exactly once.** The verdict event's idempotency key is derived from the event and the judge
(``verdict:<event>:<judge>/<version>``). Before judging, the loop looks for that event: after a
crash anywhere (the verdict written, the flag not; the flag written, the cursor not), the event
is not judged again but its stored verdict re-applied, and a flag of the same event is one flag.
So every judgeable event is judged once, to one effect, and none is skipped: the cursor moves
only past events whose verdict is stored.

**Waking.** An append of voice facts wakes the loop at once (:meth:`Store.watch
<ehrbridge.worldmodel.store.Store.watch>`: in-process on SQLite, ``LISTEN/NOTIFY`` from any
process on PostgreSQL), and so does :meth:`ReviewLoop.wake`; otherwise the loop reads the log
every ``catch_up`` — the guarantee, and all a loop in another process than a SQLite writer has.
A judge that raises or answers nonsense is an *unsure* verdict: the fact goes to a human, never
through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ehrbridge.confidence import DEFAULT_THRESHOLDS, Level
from ehrbridge.errors import IdempotencyConflict, StorageError
from ehrbridge.leases import Leases, new_holder
from ehrbridge.review.policy import always_human
from ehrbridge.review.queue import NORMAL, URGENT, Flag, ReviewQueue
from ehrbridge.review.transcripts import Unreadable, turns
from ehrbridge.review.verdicts import Case, Fact, Judge, Outcome, Route, Turn, Verdict, route
from ehrbridge.times import pause
from ehrbridge.worldmodel.events import Event, EventType, NewEvent, Source
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import START, LogPosition, Store

log = logging.getLogger("ehrbridge.review")

#: the cursor the loop keeps its place in the log with
CURSOR = ("review", "log")
#: the entity that holds a call's transcript
CALL = "Call"
#: the lease one review loop of a workspace holds while it judges
LEASE = "review"
#: how long it lasts unless renewed (a step renews it every third of that)
LEASE_TTL = timedelta(seconds=30)


class Cursors(Protocol):
    """Where the loop stands in the log: the runner's cursors (any of its adapters)."""

    async def get_cursor(self, workspace: str, source: str, resource_type: str) -> str | None: ...

    async def set_cursor(
        self, workspace: str, source: str, resource_type: str, cursor: str
    ) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ReviewPolicy:
    """What the review loop does with verdicts, per workspace."""

    #: the clinic's IANA time zone (relative dates in a call resolve in it)
    timezone: str = "UTC"
    #: what a contradiction does: rejected (0.0) or a human review
    contradicted: Route = Route.REJECTED
    #: entity types whose facts always go to a human, whatever the judge says
    human_types: frozenset[str] = frozenset({"MedicationOrder", "AllergyIntolerance"})
    #: fields that always go to a human, as ``EntityType.field``
    human_fields: frozenset[str] = frozenset()
    #: the entity types judged (None: every type but the call itself)
    entity_types: frozenset[str] | None = None
    #: events read per step
    batch: int = 200
    #: how often the log is read when nothing wakes the loop
    catch_up: timedelta = timedelta(milliseconds=500)

    def needs_human(self, entity_type: str, fields: Sequence[str]) -> str | None:
        """Why policy sends this fact to a human whatever the judge says, or None."""
        return always_human(entity_type, fields, types=self.human_types, named=self.human_fields)


@dataclass(kw_only=True)
class StepResult:
    """What one step did."""

    read: int = 0
    judged: int = 0
    #: verdicts found stored already (re-applied, not judged again)
    replayed: int = 0
    routes: dict[str, int] = field(default_factory=dict)


class ReviewLoop:
    """The runner's ``review`` loop for one workspace."""

    name = "review"

    def __init__(
        self,
        store: Store,
        queue: ReviewQueue,
        cursors: Cursors,
        judge: Judge,
        *,
        workspace: str,
        policy: ReviewPolicy | None = None,
        leases: Leases | None = None,
        holder: str | None = None,
    ) -> None:
        self.store = store
        self.model = WorldModel(store, workspace)
        self.queue = queue
        self.cursors = cursors
        self.judge = judge
        self.workspace = workspace
        self.policy = policy or ReviewPolicy()
        self._wake = asyncio.Event()
        #: the transcripts read this step, by call id (turns and start), or why there is none
        self._calls: dict[str, tuple[list[Turn], datetime] | str] = {}
        #: with ``leases``, one loop of the workspace judges at a time: the one holding the
        #: ``review`` lease (the others wait, and take over if it lapses)
        self.leases = leases
        self.holder = holder or new_holder()
        self._held_at: float | None = None

    def wake(self) -> None:
        """Start the next step now (a writer in this process has written a voice fact)."""
        self._wake.set()

    @property
    def judge_source(self) -> Source:
        """Who the verdict events say re-graded the fact."""
        return Source(kind="review", id=f"{self.judge.name}/{self.judge.version}")

    def judgeable(self, event: Event) -> bool:
        """Whether the loop judges ``event``: a voice fact below the trusted threshold."""
        types = self.policy.entity_types
        return (
            event.event_type is EventType.RECORDED
            and event.source.kind == "voice"
            and 0.0 < event.confidence < DEFAULT_THRESHOLDS.trusted
            and event.entity_type != CALL
            and bool(event.fields)
            and (types is None or event.entity_type in types)
        )

    async def run(self, stop: asyncio.Event) -> None:
        try:
            unwatch = await self.store.watch(self.workspace, self.wake)
        except StorageError as exc:  # no wake-ups: the catch-up reads still find everything
            log.warning("review: appends cannot wake the loop: %s", exc)
            unwatch = None
        try:
            await self._run(stop)
        finally:
            if unwatch is not None:
                await unwatch()
            await self.release()

    async def release(self) -> None:
        """Give the ``review`` lease up (another runner's loop takes over at once)."""
        if self.leases is not None and self._held_at is not None:
            self._held_at = None
            try:
                await self.leases.release(self.workspace, LEASE, self.holder)
            except StorageError as exc:  # it lapses on its own
                log.warning("review: could not release the lease: %s", exc)

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # cleared before the step: a wake-up during it starts the next one at once
            self._wake.clear()
            try:
                result = await self.turn() or StepResult()
            except StorageError as exc:  # the database is away: try again at the next catch-up
                log.warning("review: the step failed: %s", exc)
                result = StepResult()
            if result.read >= self.policy.batch:
                continue  # more to read now
            await pause(self.policy.catch_up, stop, self._wake)

    async def turn(self) -> StepResult | None:
        """One step if this loop holds the workspace's ``review`` lease (or needs none); None
        when another loop holds it."""
        if not await self._hold():
            return None
        return await self.step()

    async def _hold(self) -> bool:
        """Take or renew the lease (at most every third of its time); whether it is held."""
        if self.leases is None:
            return True
        now = time.monotonic()
        if self._held_at is not None and now - self._held_at < LEASE_TTL.total_seconds() / 3:
            return True
        lease = await self.leases.acquire(self.workspace, LEASE, self.holder, LEASE_TTL)
        self._held_at = now if lease is not None else None
        return lease is not None

    async def position(self) -> LogPosition:
        """Where the loop stands in the log (the start when it never ran)."""
        stored = await self.cursors.get_cursor(self.workspace, *CURSOR)
        if stored is None:
            return START
        tx, _, seq = stored.partition(":")
        return LogPosition(tx=int(tx), seq=int(seq))

    async def step(self) -> StepResult:
        """Judge what the log holds after the cursor (one page): the page's verdicts in one
        append, then the flags, then the cursor."""
        after = await self.position()
        page = await self.store.read_log(self.workspace, after, self.policy.batch)
        self._calls.clear()  # a call's transcript is read once a step
        result = StepResult(read=len(page.events))
        decided: list[tuple[Event, Verdict, Route]] = []
        verdicts: list[NewEvent] = []
        for event in page.events:
            if not self.judgeable(event):
                continue
            if not await self._hold():  # the lease lapsed mid-step: the new holder judges
                log.warning("review: lost the lease mid-step; leaving the page to its holder")
                return StepResult()
            key = self._key(event)
            events = await self.store.read_entity(
                self.workspace, event.entity_type, event.entity_id
            )
            stored = next((e for e in events if e.idempotency_key == key), None)
            if stored is not None:  # judged before a crash: its verdict, not a new one
                result.replayed += 1
                verdict = _stored_verdict(stored)
            else:
                result.judged += 1
                verdict = await self._judge(event)
            where = route(verdict, contradicted=self.policy.contradicted)
            if stored is None:
                verdicts.append(self._verdict_event(event, verdict, where, key))
            decided.append((event, verdict, where))
        await self._record(verdicts)
        for event, verdict, where in decided:
            went = await self._flag(event, verdict, where)
            result.routes[went.value] = result.routes.get(went.value, 0) + 1
        if page.position != after:
            where_now = f"{page.position.tx}:{page.position.seq}"
            await self.cursors.set_cursor(self.workspace, *CURSOR, where_now)
        return result

    # --- one event ------------------------------------------------------------------------

    def _key(self, event: Event) -> str:
        return f"verdict:{event.id}:{self.judge.name}/{self.judge.version}"

    async def _flag(self, event: Event, verdict: Verdict, where: Route) -> Route:
        """Put what a human must see on the queue; where the fact went."""
        reason = (
            None
            if where is not Route.VERIFIED
            else self.policy.needs_human(event.entity_type, event.fields)
        )
        if where is not Route.HUMAN and reason is None:
            return where
        why = reason or f"{verdict.judge}: {verdict.outcome.value}: {verdict.reason}"
        urgent = verdict.outcome is Outcome.CONTRADICTED
        flag = Flag(
            entity_type=event.entity_type,
            entity_id=event.entity_id,
            event_id=event.id,
            reason=why,
            priority=URGENT if urgent else NORMAL,
        )
        await self.queue.flag(self.workspace, flag)
        return Route.HUMAN

    def _verdict_event(self, event: Event, verdict: Verdict, where: Route, key: str) -> NewEvent:
        """The ``regraded`` event that records ``verdict`` on ``event``."""
        confidence = {
            Route.VERIFIED: Level.VERIFIED.value,
            Route.REJECTED: Level.REJECTED.value,
        }.get(where, event.confidence)
        data: dict[str, Any] = {"target": event.id}
        if verdict.reason:
            data["reason"] = verdict.reason
        return NewEvent(
            workspace=self.workspace,
            entity_type=event.entity_type,
            entity_id=event.entity_id,
            event_type=EventType.REGRADED,
            data=data,
            source=self.judge_source,
            confidence=confidence,
            effective_at=datetime.now(UTC),
            evidence={"verdict": verdict.as_json()},
            idempotency_key=key,
        )

    async def _record(self, verdicts: list[NewEvent]) -> None:
        """The verdicts in one append (one by one if another step stored one of them)."""
        if not verdicts:
            return
        try:
            await self.model.record(verdicts)
            return
        except IdempotencyConflict:
            pass
        for verdict in verdicts:
            try:
                await self.model.record([verdict])
            except IdempotencyConflict:  # another step stored this event's verdict first
                log.info("review: %s was judged by another step", verdict.data["target"])

    async def _judge(self, event: Event) -> Verdict:
        """The verdict on every field ``event`` asserts (unsure when any cannot be judged)."""
        case_or_reason = await self._case(event)
        if isinstance(case_or_reason, str):
            return self._unsure(case_or_reason)
        verdicts: list[Verdict] = []
        for name in event.fields:
            case = Case(
                fact=Fact(
                    entity_type=event.entity_type,
                    field=name,
                    value=event.data.get(name),
                    level=_level(event.confidence),
                ),
                transcript=case_or_reason.transcript,
                call_started_at=case_or_reason.call_started_at,
                clinic_timezone=self.policy.timezone,
                known=case_or_reason.known,
            )
            try:
                verdicts.append(await self.judge.judge(case))
            except Exception as exc:  # a judge that fails sends the fact to a human
                log.warning("review: the %s judge failed: %s", self.judge.name, type(exc).__name__)
                return self._unsure(f"the judge failed ({type(exc).__name__})")
        return _combined(verdicts)

    async def _case(self, event: Event) -> Case | str:
        """The call's transcript for ``event`` as a case skeleton, or why there is none."""
        call_id = event.correlation_id
        if not call_id:
            return "the fact names no call"
        if call_id not in self._calls:
            self._calls[call_id] = await self._transcript(call_id)
        read = self._calls[call_id]
        if isinstance(read, str):
            return read
        spoken, started = read
        known = await self._known(event)
        placeholder = Fact(entity_type=event.entity_type, field="", value=None)
        return Case(
            fact=placeholder,
            transcript=spoken,
            call_started_at=started,
            clinic_timezone=self.policy.timezone,
            known=known,
        )

    async def _transcript(self, call_id: str) -> tuple[list[Turn], datetime] | str:
        """A call's turns and start, or why it has none to judge by."""
        call = await self.store.get_state(self.workspace, CALL, call_id)
        text = None if call is None else call.values.get("transcript")
        if call is None or not isinstance(text, str) or not text.strip():
            return f"call {call_id} has no transcript"
        try:
            spoken = turns(text)
        except Unreadable as exc:
            return f"call {call_id}'s transcript is unreadable: {exc}"
        return spoken, _started(call.values.get("started_at"), call.updated_at)

    async def _known(self, event: Event) -> dict[str, Any]:
        """What the record held before the call, as ``EntityType.field`` (context only)."""
        state = await self.store.get_state(self.workspace, event.entity_type, event.entity_id)
        if state is None:
            return {}
        return {
            f"{event.entity_type}.{name}": fv.value
            for name, fv in state.fields.items()
            if fv.event_id != event.id and fv.source.kind != "voice"
        }

    def _unsure(self, reason: str) -> Verdict:
        return Verdict(
            outcome=Outcome.UNSURE,
            judge=self.judge.name,
            version=self.judge.version,
            reason=reason,
        )


def _level(confidence: float) -> str:
    if confidence >= Level.VOICE_CONFIRMED.value:
        return "confirmed"
    if confidence >= Level.VOICE_MENTIONED.value:
        return "mentioned"
    return "inferred"


def _started(raw: Any, fallback: datetime | None) -> datetime:
    """When the call started: its ``started_at``, else when the call was recorded."""
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment
    return (fallback or datetime.now(UTC)).astimezone(UTC)


def _combined(verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict for an event of several fields: contradicted if any field is, supported only
    if every field is, unsure otherwise; the evidence of all."""
    first = verdicts[0]
    if len(verdicts) == 1:
        return first
    outcomes = {v.outcome for v in verdicts}
    if Outcome.CONTRADICTED in outcomes:
        outcome = Outcome.CONTRADICTED
    elif outcomes == {Outcome.SUPPORTED}:
        outcome = Outcome.SUPPORTED
    else:
        outcome = Outcome.UNSURE
    return Verdict(
        outcome=outcome,
        judge=first.judge,
        version=first.version,
        reason="; ".join(v.reason for v in verdicts if v.reason),
        evidence=tuple(e for v in verdicts for e in v.evidence),
    )


def _stored_verdict(event: Event) -> Verdict:
    """The verdict a stored verdict event carries."""
    raw = (event.evidence or {}).get("verdict")
    judge, _, version = event.source.id.partition("/")
    return Verdict.from_json(raw if isinstance(raw, dict) else {}, judge=judge, version=version)
