"""The agent API's one facade: every operation authorised, scoped and audited
(docs/design.md §10-11).

:class:`AgentService` knows nothing of HTTP or MCP: a route or a tool authenticates the key,
builds the request model, calls one method with the :class:`~ehrbridge.api.store.Principal`
first, and maps the errors it raises (one place, see ``docs/agent-api.md``):

- :class:`~ehrbridge.errors.PermissionDenied` - the role or write scope does not allow it;
- :class:`~ehrbridge.errors.NotFound` - no such entity *in the principal's workspace*: an
  entity of another workspace is refused exactly like one that does not exist;
- :class:`~ehrbridge.errors.InvalidInput` (and :class:`~ehrbridge.errors.IdempotencyConflict`,
  :class:`~ehrbridge.errors.SlotUnavailable`) - the request cannot be carried out as asked;
- :class:`~ehrbridge.errors.ReviewConflict`, :class:`~ehrbridge.errors.OutboxConflict` - the
  operators' review or outbox item cannot take that action now.

The workspace always comes from the principal, never from the request. Every call leaves audit
entries, written before the answer is returned (a failing audit log fails the request): one per
entity read or written, ``phi`` for patient data; a call that touched no entity (a search that
found nothing, a caller nobody matches) leaves one entry without an entity; a refused call
leaves one entry with its outcome (``denied``, ``not_found``, ``invalid``, ``error``). A write's
entry is stored in the write's own transaction (:data:`~ehrbridge.audit.WriteAudit`), so no
crash can leave a write without its audit record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar
from uuid import uuid4

from ehrbridge.api import ambient, extracted, queried
from ehrbridge.api.models import (
    AmbientRequest,
    AmbientResponse,
    AppointmentBooking,
    BookingConfirmation,
    EntityList,
    EntitySearch,
    EntityView,
    EventView,
    ObservationWrite,
    PatientSearch,
    ReviewBatch,
    ReviewBatchAnswer,
    ReviewBatchResult,
    ReviewCorrection,
    ReviewDay,
    ReviewDepth,
    ReviewItemDetail,
    ReviewItemList,
    ReviewItemView,
    ReviewNote,
    ReviewRejection,
    ReviewStats,
    SlotList,
    SlotSearch,
    StateRequest,
    Timeline,
    TimelineRequest,
    TranscriptAttach,
    WriteResult,
)
from ehrbridge.api.outboxmodels import (
    AttemptView,
    OutboxItemDetail,
    OutboxItemList,
    OutboxItemView,
    OutboxSkip,
    OutboxStats,
    SinkDepthView,
    SinkStateView,
)
from ehrbridge.api.permissions import Permission, require, require_voice_write, type_named
from ehrbridge.api.prompt import DEFAULT_BUDGET, render_candidates, render_context, render_no_match
from ehrbridge.api.slots import SlotIndex
from ehrbridge.api.store import AuditEntry, AuditLog, Outcome, Principal
from ehrbridge.api.sync import sync_of
from ehrbridge.errors import (
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    OutboxConflict,
    PermissionDenied,
    ReviewConflict,
    SlotUnavailable,
)
from ehrbridge.outbound.outbox import ItemQuery as OutboxQuery
from ehrbridge.outbound.outbox import Outbox, OutboxItem
from ehrbridge.review.desk import ReviewDesk
from ehrbridge.review.queue import ItemQuery, ReviewItem, ReviewQueue
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.planner import AppendResult
from ehrbridge.worldmodel.projection import EntityState
from ehrbridge.worldmodel.store import Store

T = TypeVar("T")
#: what an operator does with one review item
ReviewAction = Literal["claim", "unclaim", "approve", "reject", "correct"]
#: Opens the world model of a workspace.
WorldModels = Callable[[str], WorldModel]

#: Entity types that hold no patient data: reading them is audited without the PHI flag.
NON_PHI_TYPES = frozenset(
    {
        "Practitioner",
        "Location",
        "Organization",
        "Schedule",
        "Slot",
        "HealthcareService",
        "PractitionerRole",
        "InsuranceProduct",
        "Medication",
    }
)


def is_phi(entity_type: str) -> bool:
    """Whether entities of ``entity_type`` are patient data (everything not listed as not)."""
    return entity_type not in NON_PHI_TYPES


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Sizes the service keeps to."""

    #: characters of prompt-ready text when the request does not say
    prompt_budget: int = DEFAULT_BUDGET
    #: the longest transcript accepted
    max_transcript_chars: int = 200_000
    #: recent encounters in the ambient context
    recent_encounters: int = 3


@dataclass(kw_only=True)
class _Trail:
    """The audit entries of one call."""

    principal: Principal
    action: str
    request_id: str
    at: datetime
    channel: str | None
    #: entries still to be recorded
    entries: list[AuditEntry] = field(default_factory=list)
    #: entries already stored, with the write they record
    stored: list[AuditEntry] = field(default_factory=list)
    #: what the last write attempt would store: its event ids and entries
    _staged: tuple[frozenset[str], list[AuditEntry]] = (frozenset(), [])

    def entry(
        self,
        outcome: Outcome = "ok",
        entity_type: str | None = None,
        entity_id: str | None = None,
        details: dict[str, str] | None = None,
    ) -> AuditEntry:
        details = dict(details or {})
        if self.channel is not None:
            details["channel"] = self.channel
        return AuditEntry(
            workspace=self.principal.workspace,
            at=self.at,
            key_id=self.principal.key_id,
            role=self.principal.role,
            action=self.action,
            outcome=outcome,
            entity_type=entity_type,
            entity_id=entity_id,
            phi=entity_type is not None and is_phi(entity_type),
            request_id=self.request_id,
            details=details,
        )

    def touched(self, entity_type: str, entity_id: str, **details: str) -> None:
        """One entity read or written."""
        self.entries.append(self.entry("ok", entity_type, entity_id, details))

    def states(self, states: list[EntityState]) -> None:
        for s in states:
            self.touched(s.entity_type, s.entity_id)

    def write_audit(self, results: Sequence[AppendResult]) -> list[AuditEntry]:
        """The :data:`~ehrbridge.audit.WriteAudit` of this call's write: one entry per entity
        written. Called inside the write's transaction, once per attempt."""
        entries = [
            self.entry(
                "ok",
                r.entity_type,
                r.entity_id,
                {"status": "duplicate" if r.status == "duplicate" else "recorded"},
            )
            for r in results
        ]
        self._staged = (frozenset(e.id for r in results for e in r.events), entries)
        return entries

    def written(self, result: WriteResult) -> None:
        """After the write: its entries were stored with it, unless the write was answered by
        an earlier one (a retried idempotency key), which writes nothing and is recorded like a
        read."""
        event_ids, entries = self._staged
        if result.event_id in event_ids:
            self.stored.extend(entries)
        else:
            entity = result.entity
            self.touched(entity.entity_type, entity.entity_id, status=result.status)


class AgentService:
    """The ambient, queried and extracted channels for authenticated principals."""

    def __init__(
        self,
        models: WorldModels,
        audit: AuditLog,
        *,
        limits: Limits = Limits(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        review: ReviewQueue | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self._models = models
        self._audit = audit
        self.limits = limits
        self._clock = clock
        self._slots: dict[str, SlotIndex] = {}
        #: the human review queue (the operators' endpoints); None serves none
        self._review = review
        #: the outbox (the operators' endpoints, and the sync status of what the agent heard);
        #: None serves no outbox routes and reads no sync status
        self._outbox = outbox

    @classmethod
    def on_store(
        cls,
        store: Store,
        audit: AuditLog,
        *,
        limits: Limits = Limits(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        review: ReviewQueue | None = None,
        outbox: Outbox | None = None,
    ) -> AgentService:
        """A service over every workspace of one store."""
        return cls(
            lambda workspace: WorldModel(store, workspace),
            audit,
            limits=limits,
            clock=clock,
            review=review,
            outbox=outbox,
        )

    # --- the audited frame -------------------------------------------------------------------

    async def _run(
        self,
        principal: Principal,
        action: str,
        permission: Permission,
        work: Callable[[WorldModel, _Trail], Awaitable[T]],
        *,
        target: tuple[str | None, str | None] = (None, None),
        request_id: str | None,
        channel: str | None,
    ) -> T:
        trail = _Trail(
            principal=principal,
            action=action,
            request_id=request_id or uuid4().hex,
            at=self._clock(),
            channel=channel,
        )
        # None: the call was cancelled (the client went away) or the process is stopping; what
        # it wrote was audited with the write, and it answered nothing.
        outcome: Outcome | None = None
        try:
            require(principal, permission)
            result = await work(self._models(principal.workspace), trail)
        except PermissionDenied as exc:
            outcome, target = "denied", (exc.entity_type or target[0], target[1])
            raise
        except NotFound:
            outcome = "not_found"
            raise
        except (
            InvalidInput,
            IdempotencyConflict,
            SlotUnavailable,
            ReviewConflict,
            OutboxConflict,
        ):
            outcome = "invalid"
            raise
        except Exception:
            outcome = "error"
            raise
        else:
            outcome = "ok"
            if not trail.entries and not trail.stored:
                trail.entries.append(trail.entry("ok", *target, {"results": "0"}))
            if trail.entries:
                await self._audit.record_audit(trail.entries)
            return result
        finally:
            if outcome is not None and outcome != "ok":
                await self._audit.record_audit([trail.entry(outcome, *target)])

    def _slot_index(self, workspace: str) -> SlotIndex:
        return self._slots.setdefault(workspace, SlotIndex())

    async def warm_slots(self, workspaces: Iterable[str]) -> int:
        """Build the slot index of each workspace now (a server does it as it starts), so no
        caller's first slot search waits for it; the slots indexed. Not audited: it reads no
        patient data and returns none."""
        indexed = 0
        for workspace in workspaces:
            index = self._slot_index(workspace)
            await index.refresh(self._models(workspace))
            indexed += len(index.slots)
        return indexed

    # --- ambient -----------------------------------------------------------------------------

    async def ambient_context(
        self,
        principal: Principal,
        request: AmbientRequest,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> AmbientResponse:
        """Identify the caller by phone; one patient gets their context (JSON and prompt text),
        several get candidates, nobody gets ``no_match``. Audits ``ambient.context``: every
        entity read (patient, related entities, labelled practitioners and locations)."""
        budget = request.prompt_budget or self.limits.prompt_budget

        async def work(model: WorldModel, trail: _Trail) -> AmbientResponse:
            found = await ambient.identify(model, request.phone, request.region)
            if len(found.patients) > 1:
                candidates = [ambient.candidate(s) for s in found.patients]
                trail.states(found.patients)
                text = render_candidates(found.phone, candidates, budget=budget)
                return AmbientResponse(
                    match="ambiguous",
                    phone=found.phone,
                    candidates=candidates,
                    prompt=text.text,
                    truncated=text.truncated,
                )
            ctx = None
            if found.patients:
                ctx = await ambient.context(
                    model,
                    found.patients[0].entity_id,
                    now=self._clock(),
                    recent=self.limits.recent_encounters,
                    outbox=self._outbox,
                )
            if ctx is None:
                text = render_no_match(found.phone, budget=budget)
                return AmbientResponse(
                    match="no_match", phone=found.phone, prompt=text.text, truncated=text.truncated
                )
            trail.states(ctx.read)
            text = render_context(ctx.view, budget=budget)
            return AmbientResponse(
                match="matched",
                phone=found.phone,
                context=ctx.view,
                prompt=text.text,
                truncated=text.truncated,
            )

        return await self._run(
            principal,
            "ambient.context",
            "read",
            work,
            target=("Patient", None),
            request_id=request_id,
            channel=channel,
        )

    # --- queried -----------------------------------------------------------------------------

    async def search_entities(
        self,
        principal: Principal,
        request: EntitySearch,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> EntityList:
        """Entities by name words, identifier, phone or email (see :mod:`.queried` for what the
        index can answer). Audits ``entities.search``: one entry per entity returned."""

        async def work(model: WorldModel, trail: _Trail) -> EntityList:
            found = await queried.search_entities(model, request)
            trail.states(found.states)
            return await self._entity_list(model, found.states, found.truncated)

        return await self._run(
            principal,
            "entities.search",
            "read",
            work,
            target=(request.entity_type, None),
            request_id=request_id,
            channel=channel,
        )

    async def search_patients(
        self,
        principal: Principal,
        request: PatientSearch,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> EntityList:
        """Patients by name, birth date, identifier, phone, gender, address. Audits
        ``patients.search``: one entry per patient returned."""

        async def work(model: WorldModel, trail: _Trail) -> EntityList:
            found = await queried.find_patients(model, request)
            trail.states(found.states)
            return await self._entity_list(model, found.states, found.truncated)

        return await self._run(
            principal,
            "patients.search",
            "read",
            work,
            target=("Patient", None),
            request_id=request_id,
            channel=channel,
        )

    async def _entity_list(
        self, model: WorldModel, states: list[EntityState], truncated: bool
    ) -> EntityList:
        sync = await sync_of(self._outbox, model.workspace, states)
        return EntityList(items=[EntityView.of(s, sync) for s in states], truncated=truncated)

    async def entity_state(
        self,
        principal: Principal,
        request: StateRequest,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> EntityView:
        """An entity's projected state, now or as of a past time. Audits ``entities.state``."""

        async def work(model: WorldModel, trail: _Trail) -> EntityView:
            state = await model.state(request.entity_type, request.entity_id, as_of=request.as_of)
            if state is None:
                raise NotFound(f"no such {type_named(request.entity_type)} in this workspace")
            trail.touched(state.entity_type, state.entity_id)
            # as of a past time, the outbox's status now would not be the status then
            live = self._outbox if request.as_of is None else None
            return EntityView.of(state, await sync_of(live, model.workspace, [state]))

        return await self._run(
            principal,
            "entities.state",
            "read",
            work,
            target=(request.entity_type, request.entity_id),
            request_id=request_id,
            channel=channel,
        )

    async def entity_timeline(
        self,
        principal: Principal,
        request: TimelineRequest,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> Timeline:
        """An entity's events with provenance, oldest first. Audits ``entities.timeline``."""

        async def work(model: WorldModel, trail: _Trail) -> Timeline:
            result = await queried.timeline(
                model,
                request.entity_type,
                request.entity_id,
                after_version=request.after_version,
                limit=request.limit,
            )
            trail.touched(request.entity_type, request.entity_id)
            return result

        return await self._run(
            principal,
            "entities.timeline",
            "read",
            work,
            target=(request.entity_type, request.entity_id),
            request_id=request_id,
            channel=channel,
        )

    async def search_slots(
        self,
        principal: Principal,
        request: SlotSearch,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> SlotList:
        """Free slots in a window (see :mod:`.slots`). Audits ``slots.search``: one entry per
        slot returned, without the PHI flag."""

        async def work(model: WorldModel, trail: _Trail) -> SlotList:
            if request.end <= request.start:
                raise InvalidInput("end: must be after start")
            index = self._slot_index(model.workspace)
            await index.refresh(model)
            items, truncated = index.search(request)
            for item in items:
                trail.touched("Slot", item.slot_id)
            return SlotList(items=items, truncated=truncated)

        return await self._run(
            principal,
            "slots.search",
            "read",
            work,
            target=("Slot", None),
            request_id=request_id,
            channel=channel,
        )

    # --- extracted ---------------------------------------------------------------------------

    async def write_observation(
        self,
        principal: Principal,
        request: ObservationWrite,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> WriteResult:
        """Record what the caller said about an entity (new or existing) at a voice level;
        returns the projected state at once. Audits ``observations.write``."""

        async def work(model: WorldModel, trail: _Trail) -> WriteResult:
            level = extracted.level_named(request.level)
            require_voice_write(principal, request.entity_type, level)
            result = await extracted.write_observation(
                model,
                request,
                level=level,
                agent=principal.key_id,
                audit=trail.write_audit,
                slots=self._slot_index(model.workspace),
            )
            trail.written(result)
            return result

        return await self._run(
            principal,
            "observations.write",
            "write.voice",
            work,
            target=(request.entity_type, request.entity_id),
            request_id=request_id,
            channel=channel,
        )

    async def attach_transcript(
        self,
        principal: Principal,
        request: TranscriptAttach,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> WriteResult:
        """Keep a call's transcript as its ``Call`` entity. Audits ``transcripts.attach``."""

        async def work(model: WorldModel, trail: _Trail) -> WriteResult:
            require_voice_write(principal, "Call", extracted.LEVELS["confirmed"])
            result = await extracted.attach_transcript(
                model,
                request,
                agent=principal.key_id,
                max_chars=self.limits.max_transcript_chars,
                audit=trail.write_audit,
                slots=self._slot_index(model.workspace),
            )
            trail.written(result)
            return result

        return await self._run(
            principal,
            "transcripts.attach",
            "write.voice",
            work,
            target=("Call", request.call_id),
            request_id=request_id,
            channel=channel,
        )

    async def book_appointment(
        self,
        principal: Principal,
        request: AppointmentBooking,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> BookingConfirmation:
        """Book an appointment in the world model at voice confidence, before any EHR is
        involved; with a slot, only while it is free. Audits ``appointments.book``."""

        async def work(model: WorldModel, trail: _Trail) -> BookingConfirmation:
            level = extracted.level_named(request.level)
            require_voice_write(principal, "Appointment", level)
            result = await extracted.book_appointment(
                model,
                request,
                level=level,
                agent=principal.key_id,
                slots=self._slot_index(model.workspace),
                audit=trail.write_audit,
            )
            trail.written(result)
            appointment = result.entity
            return BookingConfirmation(
                status=result.status,
                appointment_id=appointment.entity_id,
                appointment=appointment,
            )

        return await self._run(
            principal,
            "appointments.book",
            "write.voice",
            work,
            target=("Appointment", None),
            request_id=request_id,
            channel=channel,
        )

    # --- review (operators) ------------------------------------------------------------------

    def _desk(self, model: WorldModel) -> ReviewDesk:
        if self._review is None:
            raise NotFound("this server has no review queue")
        return ReviewDesk(model, self._review, clock=self._clock)

    async def review_items(
        self,
        principal: Principal,
        query: ItemQuery,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> ReviewItemList:
        """The review queue, filtered. Audits ``review.list`` (one entry per item's entity)."""

        async def work(model: WorldModel, trail: _Trail) -> ReviewItemList:
            desk = self._desk(model)
            items = await desk.queue.items(model.workspace, query)
            for item in items:
                trail.touched(item.entity_type, item.entity_id)
            now = self._clock()
            return ReviewItemList(items=[ReviewItemView.of(i, now) for i in items])

        return await self._run(
            principal, "review.list", "review", work, request_id=request_id, channel=channel
        )

    async def review_item(
        self,
        principal: Principal,
        item_id: str,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> ReviewItemDetail:
        """One item with the entity, its flagged events and their verdicts. Audits
        ``review.show``."""

        async def work(model: WorldModel, trail: _Trail) -> ReviewItemDetail:
            detail = await self._desk(model).detail(item_id)
            item = detail.item
            trail.touched(item.entity_type, item.entity_id)
            return ReviewItemDetail(
                item=ReviewItemView.of(item, self._clock()),
                entity=None if detail.state is None else EntityView.of(detail.state),
                flagged=[EventView.of(e) for e in detail.flagged],
                grades=[EventView.of(e) for e in detail.grades],
            )

        return await self._run(
            principal, "review.show", "review", work, request_id=request_id, channel=channel
        )

    async def review_action(
        self,
        principal: Principal,
        item_id: str,
        action: ReviewAction,
        body: ReviewNote | ReviewRejection | ReviewCorrection | None = None,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> ReviewItemView:
        """Claim, unclaim, approve, reject or correct one item as the operator ``principal``.
        Audits ``review.<action>``; a conflict with another operator is a 409."""
        operator = principal.key_id

        async def work(model: WorldModel, trail: _Trail) -> ReviewItemView:
            desk = self._desk(model)
            if action == "claim":
                item = await desk.claim(item_id, operator)
            elif action == "unclaim":
                item = await desk.unclaim(item_id, operator)
            elif action == "approve":
                note = body.note if isinstance(body, ReviewNote) else ""
                item = await desk.approve(item_id, operator, note)
            elif action == "reject":
                if not isinstance(body, ReviewRejection):
                    raise InvalidInput("reason: a rejection needs a reason")
                item = await desk.reject(item_id, operator, body.reason)
            else:
                if not isinstance(body, ReviewCorrection):
                    raise InvalidInput("values: a correction names the values")
                item = await desk.correct(item_id, operator, body.values, body.note)
            trail.touched(item.entity_type, item.entity_id)
            return ReviewItemView.of(item, self._clock())

        return await self._run(
            principal,
            f"review.{action}",
            "review",
            work,
            request_id=request_id,
            channel=channel,
        )

    async def review_batch(
        self,
        principal: Principal,
        batch: ReviewBatch,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> ReviewBatchResult:
        """Approve or reject several items; each answers on its own. Audits ``review.batch``."""
        if batch.decision == "reject" and not batch.note.strip():
            raise InvalidInput("note: a rejection needs a reason")

        async def work(model: WorldModel, trail: _Trail) -> ReviewBatchResult:
            outcome = "approved" if batch.decision == "approve" else "rejected"
            desk = self._desk(model)
            answers = await desk.batch(batch.item_ids, principal.key_id, outcome, batch.note)
            now, out = self._clock(), []
            for item_id, answer in answers.items():
                if isinstance(answer, ReviewItem):
                    trail.touched(answer.entity_type, answer.entity_id)
                    out.append(
                        ReviewBatchAnswer(
                            item_id=item_id, ok=True, item=ReviewItemView.of(answer, now)
                        )
                    )
                else:
                    out.append(ReviewBatchAnswer(item_id=item_id, ok=False, error=str(answer)))
            return ReviewBatchResult(answers=out)

        return await self._run(
            principal, "review.batch", "review", work, request_id=request_id, channel=channel
        )

    async def review_stats(
        self,
        principal: Principal,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> ReviewStats:
        """The open queue's depth by priority. Audits ``review.stats`` (no patient data)."""

        async def work(model: WorldModel, trail: _Trail) -> ReviewStats:
            desk = self._desk(model)
            depth = await desk.depth()
            days = await desk.decided_per_day()
            return ReviewStats(
                decided_per_day=[ReviewDay(day=d, decided=n) for d, n in days],
                open=sum(d.count for d in depth),
                depth=[
                    ReviewDepth(priority=d.priority, count=d.count, oldest=d.oldest) for d in depth
                ],
            )

        return await self._run(
            principal, "review.stats", "review", work, request_id=request_id, channel=channel
        )

    # --- the outbox (operators) --------------------------------------------------------------

    def _outbox_of(self) -> Outbox:
        if self._outbox is None:
            raise NotFound("this server has no outbox")
        return self._outbox

    async def outbox_items(
        self,
        principal: Principal,
        query: OutboxQuery,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> OutboxItemList:
        """Outbox items, newest first, filtered; page with ``before``. Audits ``outbox.list``
        (one entry per entity the items write)."""

        async def work(model: WorldModel, trail: _Trail) -> OutboxItemList:
            items = await self._outbox_of().items(model.workspace, query)
            for entity_type, entity_id in dict.fromkeys(
                (i.entity_type, i.entity_id) for i in items
            ):
                trail.touched(entity_type, entity_id)
            full = len(items) == query.limit
            return OutboxItemList(
                items=[OutboxItemView.of(i) for i in items],
                next_before=items[-1].position if full and items else None,
            )

        return await self._run(
            principal, "outbox.list", "outbox", work, request_id=request_id, channel=channel
        )

    async def outbox_item(
        self,
        principal: Principal,
        item_id: str,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> OutboxItemDetail:
        """One item with its attempts; another workspace's item is not found. Audits
        ``outbox.show``."""

        async def work(model: WorldModel, trail: _Trail) -> OutboxItemDetail:
            outbox = self._outbox_of()
            item = await outbox.item(model.workspace, item_id)
            if item is None:
                raise NotFound("no such outbox item in this workspace")
            attempts = await outbox.attempts(model.workspace, item_id)
            trail.touched(item.entity_type, item.entity_id, item=item.id)
            return OutboxItemDetail(
                item=OutboxItemView.of(item), attempts=[AttemptView.of(a) for a in attempts]
            )

        return await self._run(
            principal, "outbox.show", "outbox", work, request_id=request_id, channel=channel
        )

    async def outbox_retry(
        self,
        principal: Principal,
        item_id: str,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> OutboxItemView:
        """Put a parked (dead or conflict) item back in its lane, due now, as the operator
        ``principal``; any other item is a 409 (:class:`OutboxConflict`). Audits
        ``outbox.retry``."""

        async def work(model: WorldModel, trail: _Trail) -> OutboxItemView:
            item = await self._outbox_of().retry(model.workspace, item_id, principal.key_id)
            return self._acted(trail, item)

        return await self._run(
            principal, "outbox.retry", "outbox", work, request_id=request_id, channel=channel
        )

    async def outbox_skip(
        self,
        principal: Principal,
        item_id: str,
        body: OutboxSkip,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> OutboxItemView:
        """Give up on a parked item (skipped, final), freeing its lane; errors as
        :meth:`outbox_retry`. Audits ``outbox.skip``."""

        async def work(model: WorldModel, trail: _Trail) -> OutboxItemView:
            if not body.reason.strip():
                raise InvalidInput("reason: a skip needs a reason")
            outbox = self._outbox_of()
            item = await outbox.skip(model.workspace, item_id, principal.key_id, body.reason)
            return self._acted(trail, item)

        return await self._run(
            principal, "outbox.skip", "outbox", work, request_id=request_id, channel=channel
        )

    @staticmethod
    def _acted(trail: _Trail, item: OutboxItem) -> OutboxItemView:
        trail.touched(item.entity_type, item.entity_id, item=item.id)
        return OutboxItemView.of(item)

    async def outbox_stats(
        self,
        principal: Principal,
        *,
        request_id: str | None = None,
        channel: str | None = None,
    ) -> OutboxStats:
        """Per sink: depth, dead letters, conflicts, the oldest open item, and what each
        dispatcher last said of it. Audits ``outbox.stats`` (no patient data)."""

        async def work(model: WorldModel, trail: _Trail) -> OutboxStats:
            outbox = self._outbox_of()
            depths = await outbox.depth(model.workspace)
            states = await outbox.sink_states(model.workspace)
            oldest = [d.oldest for d in depths if d.oldest is not None]
            return OutboxStats(
                open=sum(d.pending + d.processing for d in depths),
                dead=sum(d.dead for d in depths),
                conflict=sum(d.conflict for d in depths),
                oldest=min(oldest) if oldest else None,
                sinks=[SinkDepthView.of(d) for d in depths],
                states=[SinkStateView.of(s) for s in states],
            )

        return await self._run(
            principal, "outbox.stats", "outbox", work, request_id=request_id, channel=channel
        )
