"""The operator's side of the review queue: claim, approve, reject, correct (docs/design.md §8).

Each action first changes the item on the queue (atomically: of two operators acting at once,
one wins and the other gets a 409, :class:`~ehrbridge.errors.ReviewConflict`), then records what
it means in the world model: every flagged event re-graded to 0.95 (approved) or 0.0
(rejected), or an operator's 1.0 correction superseding it. Those events carry idempotency keys
derived from the item and the event (``review:<item>:<event>``), so an action retried after a
failure between the two steps (the item decided, the events not yet written) completes it: the
same operator repeating the same decision is answered with the item, and the missing events are
written once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ehrbridge.confidence import Level
from ehrbridge.errors import (
    EhrbridgeError,
    IdempotencyConflict,
    InvalidInput,
    ItemDecided,
    NotFound,
)
from ehrbridge.review.queue import (
    DEFAULT_CLAIM_TTL,
    Depth,
    ReviewItem,
    ReviewQueue,
    claimed,
    decided,
    unclaimed,
)
from ehrbridge.worldmodel.events import Event, Source
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.projection import EntityState


@dataclass(frozen=True, kw_only=True)
class ItemDetail:
    """What a reviewer reads for one item: the item, the entity's state, the flagged events and
    the verdicts recorded on them."""

    item: ReviewItem
    state: EntityState | None
    flagged: tuple[Event, ...]
    #: the re-grades of the flagged events (the judges' verdicts, earlier decisions), in order
    grades: tuple[Event, ...]


class ReviewDesk:
    """The review actions of one workspace's operators."""

    def __init__(
        self,
        model: WorldModel,
        queue: ReviewQueue,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        claim_ttl: timedelta = DEFAULT_CLAIM_TTL,
    ) -> None:
        self.model = model
        self.queue = queue
        self.clock = clock
        self.claim_ttl = claim_ttl

    @property
    def workspace(self) -> str:
        return self.model.workspace

    async def detail(self, item_id: str) -> ItemDetail:
        item = await self._item(item_id)
        events = await self.model.events(item.entity_type, item.entity_id)
        flagged = tuple(e for e in events if e.id in item.events)
        grades = tuple(e for e in events if e.data.get("target") in item.events)
        state = await self.model.state(item.entity_type, item.entity_id)
        return ItemDetail(item=item, state=state, flagged=flagged, grades=grades)

    async def claim(self, item_id: str, operator: str) -> ReviewItem:
        now, ttl = self.clock(), self.claim_ttl
        return await self.queue.update(
            self.workspace, item_id, lambda i: claimed(i, operator, now, ttl)
        )

    async def unclaim(self, item_id: str, operator: str) -> ReviewItem:
        now = self.clock()
        return await self.queue.update(
            self.workspace, item_id, lambda i: unclaimed(i, operator, now)
        )

    async def approve(self, item_id: str, operator: str, note: str = "") -> ReviewItem:
        """Every flagged event approved (0.95)."""
        item = await self._decide(item_id, operator, "approved", note)
        for event_id in item.events:
            await self._regrade(item, event_id, Level.HUMAN_APPROVED, operator, note)
        return item

    async def reject(self, item_id: str, operator: str, reason: str) -> ReviewItem:
        """Every flagged event rejected (0.0); ``reason`` is required."""
        item = await self._decide(item_id, operator, "rejected", reason)
        for event_id in item.events:
            await self._regrade(item, event_id, Level.REJECTED, operator, reason)
        return item

    async def correct(
        self, item_id: str, operator: str, values: Mapping[str, Any], note: str = ""
    ) -> ReviewItem:
        """The operator's values (``field -> value``) as a 1.0 correction superseding the flagged
        event they are about; flagged events the correction does not cover are rejected."""
        if not values:
            raise InvalidInput("a correction names at least one field")
        detail = await self.detail(item_id)
        target = _target(detail.flagged, values)
        item = await self._decide(item_id, operator, "corrected", note)
        entity = f"{item.entity_type}/{item.entity_id}"
        with suppress(IdempotencyConflict):  # written by an earlier attempt of this decision
            await self.model.correct(
                entity,
                target.id,
                dict(values),
                operator=operator,
                idempotency_key=f"review:{item.item_id}:{target.id}",
            )
        for event in detail.flagged:
            if event.id != target.id:
                why = note or "superseded by the operator's correction"
                await self._regrade(item, event.id, Level.REJECTED, operator, why)
        return item

    async def batch(
        self, item_ids: Sequence[str], operator: str, outcome: str, note: str = ""
    ) -> dict[str, ReviewItem | EhrbridgeError]:
        """Approve or reject several items; each item's answer (or its conflict) by id."""
        if outcome not in ("approved", "rejected"):
            raise InvalidInput("a batch approves or rejects")
        answers: dict[str, ReviewItem | EhrbridgeError] = {}
        for item_id in item_ids:
            try:
                if outcome == "approved":
                    answers[item_id] = await self.approve(item_id, operator, note)
                else:
                    answers[item_id] = await self.reject(item_id, operator, note)
            except EhrbridgeError as exc:  # a conflict or a failure of this item, not the batch
                answers[item_id] = exc
        return answers

    async def depth(self) -> list[Depth]:
        return await self.queue.depth(self.workspace)

    async def decided_per_day(self, days: int = 14) -> list[tuple[date, int]]:
        """Decisions per UTC day over the last ``days`` days."""
        since = (self.clock() - timedelta(days=days)).astimezone(UTC)
        return await self.queue.decided_per_day(self.workspace, since)

    # --- steps ----------------------------------------------------------------------------

    async def _item(self, item_id: str) -> ReviewItem:
        item = await self.queue.item(self.workspace, item_id)
        if item is None:
            raise NotFound("no such review item in this workspace")
        return item

    async def _decide(self, item_id: str, operator: str, outcome: str, note: str) -> ReviewItem:
        now = self.clock()
        try:
            return await self.queue.update(
                self.workspace, item_id, lambda i: decided(i, operator, outcome, now, note)
            )
        except ItemDecided as exc:
            # the same operator repeating the same decision: finish what a failure interrupted
            if exc.by == operator and exc.decision == outcome:
                return await self._item(item_id)
            raise

    async def _regrade(
        self, item: ReviewItem, event_id: str, level: Level, operator: str, note: str
    ) -> None:
        with suppress(IdempotencyConflict):  # written by an earlier attempt of this decision
            await self.model.regrade(
                f"{item.entity_type}/{item.entity_id}",
                event_id,
                level,
                by=Source(kind="operator", id=operator),
                reason=note,
                idempotency_key=f"review:{item.item_id}:{event_id}",
            )


def _target(flagged: Sequence[Event], values: Mapping[str, Any]) -> Event:
    """The flagged event a correction is about: the latest that asserts one of its fields."""
    for event in reversed(flagged):
        if set(event.fields) & set(values):
            return event
    raise InvalidInput("the correction names no field of the flagged facts")
