"""The human review queue: its items, the rules of what an operator may do with one, and the
storage port (docs/design.md §8, layer 3).

An item is one entity's open question: the flagged events of that entity (several flags of one
entity are one item: at most one open item per entity), why they were flagged, a priority, and
at most one operator's claim at a time. The transitions (:func:`claimed`, :func:`unclaimed`,
:func:`decided`, :func:`flagged`) are pure functions; a :class:`ReviewQueue` adapter applies one
atomically to the stored item (:meth:`ReviewQueue.update`), so two operators acting on one item
at once cannot both succeed: the second sees the first's claim or decision and gets a
:class:`~ehrbridge.errors.ReviewConflict` (a 409), never a silent overwrite.

A claim is a lease: it lapses after its time-to-live, so an operator who walks away does not
hold an item for ever. Claim times are the world model's clock on both backends (a claim lasts
minutes; the hosts' clock skew does not matter at that scale).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal, Protocol

from ehrbridge.errors import InvalidInput, ItemClaimed, ItemDecided

Status = Literal["open", "decided"]
Outcome = Literal["approved", "rejected", "corrected"]
OUTCOMES: tuple[Outcome, ...] = ("approved", "rejected", "corrected")
#: the most urgent priority; larger numbers wait longer
URGENT = 1
#: a flag's priority unless told
NORMAL = 2
#: how long a claim lasts unless renewed
DEFAULT_CLAIM_TTL = timedelta(minutes=15)


@dataclass(frozen=True, kw_only=True)
class Claim:
    """An operator's hold on an item until ``expires_at``."""

    operator: str
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What an operator decided for an item."""

    operator: str
    outcome: Outcome
    at: datetime
    #: the reason (required for a rejection)
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class Flag:
    """A request for a human: one event of one entity, and why."""

    entity_type: str
    entity_id: str
    event_id: str
    #: e.g. ``judge: unsure`` or ``MedicationOrder facts always need a human review``
    reason: str
    priority: int = NORMAL


@dataclass(frozen=True, kw_only=True)
class ReviewItem:
    """One entity's open (or decided) question for a human."""

    item_id: str
    workspace: str
    entity_type: str
    entity_id: str
    status: Status
    priority: int
    #: why it was flagged (the first flag's reason; later ones are in ``reasons``)
    reason: str
    #: the flagged events, in the order they were flagged
    events: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    #: every flag's reason, in order
    reasons: tuple[str, ...] = ()
    claim: Claim | None = None
    decision: Decision | None = None

    def holder(self, now: datetime) -> str | None:
        """Who holds the claim at ``now`` (None when unclaimed or lapsed)."""
        if self.claim is None or self.claim.expires_at <= now:
            return None
        return self.claim.operator

    def body(self) -> dict[str, Any]:
        """What the adapters store beside the indexed columns (JSON)."""
        return {
            "events": list(self.events),
            "reasons": list(self.reasons),
            "claim": None
            if self.claim is None
            else {"operator": self.claim.operator, "expires_at": self.claim.expires_at.isoformat()},
            "decision": None
            if self.decision is None
            else {
                "operator": self.decision.operator,
                "outcome": self.decision.outcome,
                "at": self.decision.at.isoformat(),
                "note": self.decision.note,
            },
        }


def item_from_row(
    *,
    item_id: str,
    workspace: str,
    entity_type: str,
    entity_id: str,
    status: str,
    priority: int,
    reason: str,
    created_at: datetime,
    updated_at: datetime,
    body: dict[str, Any],
) -> ReviewItem:
    """A stored item from its columns and :meth:`ReviewItem.body` (both adapters)."""
    claim = body.get("claim")
    decision = body.get("decision")
    return ReviewItem(
        item_id=item_id,
        workspace=workspace,
        entity_type=entity_type,
        entity_id=entity_id,
        status="decided" if status == "decided" else "open",
        priority=int(priority),
        reason=reason,
        events=tuple(body.get("events", ())),
        reasons=tuple(body.get("reasons", ())),
        created_at=created_at,
        updated_at=updated_at,
        claim=None
        if not claim
        else Claim(
            operator=claim["operator"], expires_at=datetime.fromisoformat(claim["expires_at"])
        ),
        decision=None
        if not decision
        else Decision(
            operator=decision["operator"],
            outcome=decision["outcome"],
            at=datetime.fromisoformat(decision["at"]),
            note=decision.get("note", ""),
        ),
    )


# --- transitions --------------------------------------------------------------------------------


def flagged(
    item: ReviewItem | None, flag: Flag, *, workspace: str, item_id: str, now: datetime
) -> ReviewItem:
    """The entity's open item with ``flag`` added (a new item, ``item_id``, when it has none).
    The same event flagged twice is one flag; the more urgent priority wins."""
    if item is None:
        return ReviewItem(
            item_id=item_id,
            workspace=workspace,
            entity_type=flag.entity_type,
            entity_id=flag.entity_id,
            status="open",
            priority=flag.priority,
            reason=flag.reason,
            events=(flag.event_id,),
            reasons=(flag.reason,),
            created_at=now,
            updated_at=now,
        )
    if flag.event_id in item.events:
        return item
    return replace(
        item,
        priority=min(item.priority, flag.priority),
        events=(*item.events, flag.event_id),
        reasons=(*item.reasons, flag.reason),
        updated_at=now,
    )


def _open(item: ReviewItem) -> None:
    if item.decision is not None:
        raise ItemDecided(item.item_id, item.decision.outcome, item.decision.operator)


def claimed(item: ReviewItem, operator: str, now: datetime, ttl: timedelta) -> ReviewItem:
    """``operator`` holds the item for ``ttl`` from ``now`` (renewed when it already does)."""
    _open(item)
    holder = item.holder(now)
    if holder is not None and holder != operator:
        raise ItemClaimed(item.item_id, holder)
    if ttl <= timedelta(0):
        raise InvalidInput("a claim lasts a positive time")
    return replace(item, claim=Claim(operator=operator, expires_at=now + ttl), updated_at=now)


def unclaimed(item: ReviewItem, operator: str, now: datetime) -> ReviewItem:
    """The item without ``operator``'s claim (unchanged when nobody holds it)."""
    _open(item)
    holder = item.holder(now)
    if holder is None:
        return item if item.claim is None else replace(item, claim=None, updated_at=now)
    if holder != operator:
        raise ItemClaimed(item.item_id, holder)
    return replace(item, claim=None, updated_at=now)


def decided(
    item: ReviewItem, operator: str, outcome: str, now: datetime, note: str = ""
) -> ReviewItem:
    """The item decided by ``operator``: approved, rejected (``note`` says why) or corrected.
    An item claimed by someone else, or already decided, is a conflict."""
    _open(item)
    holder = item.holder(now)
    if holder is not None and holder != operator:
        raise ItemClaimed(item.item_id, holder)
    if outcome not in OUTCOMES:
        raise InvalidInput(f"a decision is one of {', '.join(OUTCOMES)}, not {outcome!r}")
    if outcome == "rejected" and not note.strip():
        raise InvalidInput("a rejection needs a reason")
    decision = Decision(operator=operator, outcome=outcome, at=now, note=note.strip())
    return replace(item, status="decided", claim=None, decision=decision, updated_at=now)


# --- the port -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ItemQuery:
    """Which items :meth:`ReviewQueue.items` lists (every filter given must hold)."""

    status: Status | None = "open"
    entity_type: str | None = None
    #: a substring of the item's reason
    reason: str | None = None
    priority: int | None = None
    #: created at or before this time
    created_before: datetime | None = None
    limit: int = 100


@dataclass(frozen=True, kw_only=True)
class Depth:
    """Open items of one priority."""

    priority: int
    count: int
    oldest: datetime


class ReviewQueue(Protocol):
    """The review items of every workspace."""

    async def flag(self, workspace: str, flag: Flag) -> ReviewItem:
        """Add ``flag`` to its entity's open item, or open one (atomically: at most one open
        item per entity, whoever flags at once)."""

    async def update(
        self, workspace: str, item_id: str, change: Callable[[ReviewItem], ReviewItem]
    ) -> ReviewItem:
        """Apply ``change`` (a transition above, which may raise) to the stored item in one
        transaction and store its result; NotFound when the workspace has no such item."""

    async def item(self, workspace: str, item_id: str) -> ReviewItem | None:
        """One item of ``workspace``."""

    async def items(self, workspace: str, query: ItemQuery) -> list[ReviewItem]:
        """The items matching ``query``, most urgent first, then oldest first."""

    async def depth(self, workspace: str) -> list[Depth]:
        """Open items per priority, most urgent first."""

    async def decided_per_day(self, workspace: str, since: datetime) -> list[tuple[date, int]]:
        """Items decided per UTC day since ``since`` (days without decisions left out),
        oldest first."""


def check_query(query: ItemQuery) -> None:
    """Refuse a query with a zoneless time or a limit out of range (InvalidInput)."""
    if query.created_before is not None and query.created_before.tzinfo is None:
        raise InvalidInput("created_before must carry a time zone")
    if not 1 <= query.limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000")
