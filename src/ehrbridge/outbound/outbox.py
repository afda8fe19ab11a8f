"""The outbox: one item per (fact or workflow step, sink), and the storage port that queues,
claims and settles them (docs/design.md §9).

An item exists only for what the gate let through (:mod:`ehrbridge.outbound.gates`); its
``key`` is derived from what it delivers (:func:`item_key`), never random, so deciding again
after a crash finds the item already there instead of making a second one.

Lanes and order. Every item has a ``lane`` (the entity it writes, ``Patient/<id>``; a lane is
one sink's): within a lane items are delivered one at a time in the order they were queued
(``position``); different lanes go in parallel. Only the head of a lane can be claimed, and an
item that is parked (``dead`` or ``conflict``) keeps its lane waiting until an operator retries
or skips it; the other lanes go on.

Claims and fencing. A worker claims ready heads with a lease (:meth:`Outbox.claim`). Each claim
increments the item's ``epoch``, and every later change to the item names the epoch it holds:
a worker whose lease expired and was taken over cannot renew, mark, or settle the item any more
(the call answers False). A claim of an item whose previous lease expired after it was marked
sent is ``in_doubt``: the write may have reached the sink, so the sink is searched for it before
anything is sent again.

::

    pending ──claim──▶ processing ──settle──▶ synced            (final)
       ▲                   │        ├────────▶ pending (retry at next_attempt_at)
       │                   │        ├────────▶ dead      (parked: permanent, or retries spent)
       │                   │        └────────▶ conflict  (parked: the sink has a newer change)
       │             lease expires
       └───────────────────┘ (claimable again; in doubt if it was marked sent)
    pending ──cancel──▶ cancelled (final; the fact was rejected or replaced before it was sent)
    dead/conflict ──retry──▶ pending;  dead/conflict ──skip──▶ skipped (final)
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from ehrbridge.worldmodel.store import LogPosition


class ItemStatus(StrEnum):
    """Where an outbox item stands."""

    PENDING = "pending"  #: waiting for its turn in its lane, or for ``next_attempt_at``
    PROCESSING = "processing"  #: claimed: a worker holds its lease
    SYNCED = "synced"  #: the sink has it (final)
    DEAD = "dead"  #: refused for good, or out of retries: parked with the reason
    CONFLICT = "conflict"  #: the sink changed the record since we read it: parked for review
    CANCELLED = "cancelled"  #: its fact was rejected or replaced before it was sent (final)
    SKIPPED = "skipped"  #: an operator gave up on a parked item (final)


#: statuses an item never leaves
FINAL = frozenset({ItemStatus.SYNCED, ItemStatus.CANCELLED, ItemStatus.SKIPPED})
#: statuses that hold their lane until an operator acts
PARKED = frozenset({ItemStatus.DEAD, ItemStatus.CONFLICT})


class SyncStatus(StrEnum):
    """An outbound fact's sync status at one sink, as the agent and the timeline show it."""

    PENDING = "pending"
    PROCESSING = "processing"
    SYNCED = "synced"
    FAILED = "failed"
    CONFLICT = "conflict"
    NOT_APPLICABLE = "not applicable"


_SYNC = {
    ItemStatus.PENDING: SyncStatus.PENDING,
    ItemStatus.PROCESSING: SyncStatus.PROCESSING,
    ItemStatus.SYNCED: SyncStatus.SYNCED,
    ItemStatus.DEAD: SyncStatus.FAILED,
    ItemStatus.CONFLICT: SyncStatus.CONFLICT,
    ItemStatus.CANCELLED: SyncStatus.NOT_APPLICABLE,
    ItemStatus.SKIPPED: SyncStatus.NOT_APPLICABLE,
}


def sync_status(status: ItemStatus) -> SyncStatus:
    """The sync status an item's status shows as.

    >>> sync_status(ItemStatus.DEAD).value
    'failed'
    """
    return _SYNC[status]


def item_key(sink: str, *parts: str) -> str:
    """The idempotency key of the item that delivers ``parts`` (a fact's event id, or a
    workflow's id and step name) to ``sink``: the same parts give the same key, always.

    >>> item_key("ehr", "0193e1c0a2b4ffee11223344556677")
    'ob-ehr-5623d61c839cb883d8d5b9447e07079f'
    >>> item_key("ehr", "a") == item_key("ehr", "a") != item_key("other", "a")
    True
    """
    digest = hashlib.blake2b("\x1f".join((sink, *parts)).encode(), digest_size=16).hexdigest()
    return f"ob-{sink}-{digest}"


@dataclass(frozen=True, kw_only=True)
class NewItem:
    """An item to queue (the store assigns id, position, times and status)."""

    sink: str  #: the sink's id (a data source id)
    key: str  #: the idempotency key (:func:`item_key`): unique in the workspace
    lane: str  #: the FIFO lane, the entity it writes: ``Patient/<entity id>``
    entity_type: str
    entity_id: str
    #: the fact it delivers (its event id); a workflow step names the fact that started it
    event_id: str | None
    #: what to do, for the sink: ``upsert`` (a fact's fields), or a workflow step's kind
    operation: str
    #: what the sink needs: the fields and values, the base it was decided on, ... (JSON)
    payload: Mapping[str, Any]
    #: the workflow it is a step of, and the step's place in it (0 for a plain fact)
    workflow: str | None = None
    step: int = 0


@dataclass(frozen=True, kw_only=True)
class OutboxItem:
    """A stored outbox item."""

    id: str
    workspace: str
    sink: str
    key: str
    lane: str
    #: queue order: lanes are served by it, and a lane's items in it
    position: int
    entity_type: str
    entity_id: str
    event_id: str | None
    operation: str
    payload: Mapping[str, Any]
    workflow: str | None
    step: int
    status: ItemStatus
    #: attempts settled so far (a send that was cut off by a lost lease is not one)
    attempts: int
    created_at: datetime
    updated_at: datetime
    #: not claimed before this (backoff, ``Retry-After``)
    next_attempt_at: datetime
    #: the worker holding the item while ``processing``, and until when
    holder: str | None
    lease_until: datetime | None
    #: incremented by every claim: the fencing token a worker must present
    epoch: int
    #: a send was started and its outcome is not known: look it up at the sink first
    in_doubt: bool
    #: why the last attempt failed, or why it was parked, cancelled or skipped
    last_error: str | None
    #: what the sink said on success: ``{"ref": "Patient/123", "version": "4", ...}``
    result: Mapping[str, Any] | None
    #: when a read-back showed the write at the sink (None: not yet confirmed)
    confirmed_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A worker's hold on one item: present ``epoch`` to change it."""

    item: OutboxItem
    epoch: int
    #: the previous holder's lease ran out after it had marked the item sent
    in_doubt: bool


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One attempt to deliver an item, as recorded."""

    item_id: str
    epoch: int
    started_at: datetime
    finished_at: datetime
    #: ``synced``, ``retry``, ``dead``, ``conflict``, ``found`` (an in-doubt write found at the
    #: sink); the store adds ``lost-lease`` (a claim taken over when its lease ran out) and an
    #: operator's ``retried`` and ``skipped`` (who, in ``detail``), none of them counted
    outcome: str
    #: the sink's HTTP status, when it answered
    status: int | None = None
    #: what the sink said (an OperationOutcome's diagnostics), never a field value
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Settle:
    """How an attempt ends: the item's next status and what to record."""

    #: SYNCED, PENDING (retry), DEAD, CONFLICT, or CANCELLED (the gate, asked again before
    #: sending, refuses the fact now)
    status: ItemStatus
    attempt: Attempt
    #: for PENDING: not before this
    next_attempt_at: datetime | None = None
    #: for SYNCED: what the sink answered (ref, version)
    result: Mapping[str, Any] | None = None
    #: for anything but SYNCED: the reason, shown to operators
    error: str | None = None
    #: for PENDING: the attempt may have reached the sink (the connection broke after the
    #: request went out), so the next holder looks the write up before sending it again
    in_doubt: bool = False


@dataclass(frozen=True, kw_only=True)
class ItemQuery:
    """Which items to list: newest position first within the filters."""

    sink: str | None = None
    status: ItemStatus | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    event_id: str | None = None
    workflow: str | None = None
    #: only items with a smaller position (paging)
    before: int | None = None
    limit: int = 100


@dataclass(frozen=True, kw_only=True)
class SinkDepth:
    """One sink's queue at a glance."""

    sink: str
    pending: int
    processing: int
    dead: int
    conflict: int
    #: when the oldest open (pending or processing) item was queued
    oldest: datetime | None


#: a sink state not saved again for this long is stale: its dispatcher has stopped or hangs
SINK_STATE_STALE = timedelta(minutes=3)


@dataclass(frozen=True, kw_only=True)
class SinkState:
    """What one dispatcher last said of one sink (:meth:`Outbox.save_sink_state`), for
    ``ehrbridge status`` across processes."""

    sink: str
    #: the dispatcher that saved it (one row per dispatcher and sink)
    holder: str
    #: the circuit's state, the concurrency limit and the rate in use, ... (JSON)
    state: Mapping[str, Any]
    updated_at: datetime
    #: not saved again within :data:`SINK_STATE_STALE` of the store's clock
    stale: bool


class Outbox(Protocol):
    """The outbox's storage: every method is one transaction; times are the store's clock."""

    async def enqueue(
        self,
        workspace: str,
        items: Sequence[NewItem],
        *,
        cursor: tuple[str, LogPosition] | None = None,
    ) -> list[OutboxItem]:
        """Queue the items whose key is new and return every item of those keys as stored (an
        existing key is left as it is). With ``cursor`` (a name and a log position), the
        feeder's place in the log is saved in the same transaction."""

    async def cursor(self, workspace: str, name: str) -> LogPosition | None:
        """A position saved with :meth:`enqueue`, or None."""

    async def claim(
        self, workspace: str, sink: str, holder: str, *, limit: int, lease: timedelta
    ) -> list[Claim]:
        """Claim up to ``limit`` ready lane heads of ``sink`` in position order: a pending item
        whose ``next_attempt_at`` has come, or a processing one whose lease has run out, that
        no unsettled item of its lane precedes (and no other item of its lane is held). Each
        gets ``holder``, a lease of ``lease`` and ``epoch + 1``. Claimers never take one item
        twice, nor two items of one lane (on PostgreSQL ``FOR UPDATE SKIP LOCKED``, without
        waiting for each other)."""

    async def renew(
        self, workspace: str, held: Sequence[tuple[str, int]], holder: str, lease: timedelta
    ) -> set[str]:
        """Extend the leases of ``(item id, epoch)`` still held by ``holder``; returns the ids
        renewed (the others were taken over or settled)."""

    async def mark_sent(self, workspace: str, item_id: str, epoch: int) -> bool:
        """Record that a send is about to start (``in_doubt``), before the request goes out;
        False when the claim is no longer held."""

    async def settle(self, workspace: str, item_id: str, epoch: int, outcome: Settle) -> bool:
        """End the attempt: the new status, the attempt recorded, ``in_doubt`` cleared; False
        (and nothing changed) when ``epoch`` is no longer the item's or it is not processing."""

    async def release(self, workspace: str, item_id: str, epoch: int) -> bool:
        """Give a claim back unsent (the worker stops, the sink's circuit is open): pending
        again, no attempt counted; False when the claim is no longer held."""

    async def item(self, workspace: str, item_id: str) -> OutboxItem | None:
        """One item by id."""

    async def items(self, workspace: str, query: ItemQuery) -> list[OutboxItem]:
        """Items matching ``query``."""

    async def attempts(self, workspace: str, item_id: str) -> list[Attempt]:
        """An item's attempts, oldest first."""

    async def of_events(
        self, workspace: str, event_ids: Sequence[str]
    ) -> dict[str, list[OutboxItem]]:
        """The items delivering each of ``event_ids`` (workflow steps included), for sync
        status; events without an item are left out."""

    async def cancel(self, workspace: str, event_id: str, reason: str) -> list[OutboxItem]:
        """Cancel the pending items of a fact (not one being processed or settled, nor one in
        doubt: its write may be at the sink); returns them."""

    async def retry(self, workspace: str, item_id: str, operator: str) -> OutboxItem:
        """Put a parked item back to pending, due now, its attempts reset; NotFound for an
        unknown id, :class:`~ehrbridge.errors.OutboxConflict` for an item not parked."""

    async def skip(self, workspace: str, item_id: str, operator: str, reason: str) -> OutboxItem:
        """Give up on a parked item (skipped, final), freeing its lane; errors as :meth:`retry`."""

    async def confirm(self, workspace: str, item_id: str) -> bool:
        """Record that a read-back showed a synced item's write at the sink; False when it is
        not synced or already confirmed."""

    async def reopen(self, workspace: str, item_id: str, reason: str) -> bool:
        """A synced item whose write a read-back does not show: pending again, due now (the
        reconcile loop); False when it is not synced or already confirmed."""

    async def unconfirmed(
        self, workspace: str, sink: str, *, synced_before: datetime, limit: int
    ) -> list[OutboxItem]:
        """Synced items not yet confirmed, synced before ``synced_before``, oldest first."""

    async def depth(self, workspace: str) -> list[SinkDepth]:
        """Per sink with items: the open and parked counts and the oldest open item."""

    async def save_sink_state(
        self, workspace: str, sink: str, holder: str, state: Mapping[str, Any]
    ) -> None:
        """Save what ``holder`` (a dispatcher) says of ``sink`` now, replacing what it said
        before; ``state`` must be JSON (InvalidInput otherwise)."""

    async def sink_states(self, workspace: str) -> list[SinkState]:
        """Every dispatcher's last word on every sink, by sink and holder; those not saved
        within :data:`SINK_STATE_STALE` are marked stale."""

    async def watch(
        self, workspace: str, wake: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        """Call ``wake`` soon after items of ``workspace`` are queued or made due again (a
        hint; the dispatcher also reads periodically); returns the function that stops it. On
        SQLite, changes through this object; on PostgreSQL, by any process (``LISTEN/NOTIFY``)."""
