"""The operators' outbox routes' requests and responses (``/v1/outbox/...``, docs/design.md §9).

An item is shown by its ids, statuses, times, errors and the names of the fields it writes,
never a value of its payload: what the sink is sent stays in the outbox. A delivery's result
shows the sink's reference and version only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, JsonValue

from ehrbridge.api.models import SyncStatusName, _Model, _Request
from ehrbridge.outbound.outbox import (
    Attempt,
    OutboxItem,
    SinkDepth,
    SinkState,
    sync_status,
)

#: an outbox item's status, as the routes name it
ItemStatusName = Literal[
    "pending", "processing", "synced", "dead", "conflict", "cancelled", "skipped"
]
#: ``Patient/p1``: an entity as the outbox's ``entity`` filter names it
ENTITY_REF_PATTERN = r"^[A-Z][A-Za-z0-9]{0,63}/[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: an outbox item's id, as the store makes it
OUTBOX_ITEM_PATTERN = r"^[0-9a-z]{1,64}$"


def fields_of(item: OutboxItem) -> list[str]:
    """The names of the fields ``item`` writes (its payload's ``fields``), sorted; never their
    values."""
    fields = item.payload.get("fields")
    return sorted(str(name) for name in fields) if isinstance(fields, dict) else []


class DeliveryResult(_Model):
    """What the sink answered when it took the write: where it is, never what it holds."""

    ref: str | None = Field(default=None, description="The sink's record, e.g. Patient/123")
    version: str | None = Field(default=None, description="The record's version after it")
    created: bool | None = Field(default=None, description="Whether the write created it")

    @classmethod
    def of(cls, result: Any) -> DeliveryResult | None:
        if not result:
            return None
        ref, version, created = result.get("ref"), result.get("version"), result.get("created")
        return cls(
            ref=None if ref is None else str(ref),
            version=None if version is None else str(version),
            created=created if isinstance(created, bool) else None,
        )


class OutboxItemView(_Model):
    """One outbox item: a fact (or workflow step) on its way to one sink."""

    id: str
    sink: str = Field(description="The sink it goes to (a data source id)")
    status: ItemStatusName = Field(
        description="pending, processing, synced; dead or conflict (parked: its lane waits "
        "for an operator's retry or skip); cancelled or skipped (final)"
    )
    sync: SyncStatusName = Field(description="The status as the agent reads it")
    entity_type: str
    entity_id: str
    event_id: str | None = Field(description="The fact it delivers")
    operation: str = Field(description="upsert, or a workflow step's kind")
    workflow: str | None = None
    step: int = Field(ge=0)
    fields: list[str] = Field(description="The names of the fields it writes (never values)")
    position: int = Field(description="Queue order; pass as before for the next page")
    attempts: int = Field(ge=0, description="Attempts settled so far")
    in_doubt: bool = Field(description="A send was started and its outcome is not known")
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime = Field(description="Not sent again before this")
    last_error: str | None = Field(
        description="Why the last attempt failed, or why it was parked, cancelled or skipped"
    )
    result: DeliveryResult | None = Field(description="What the sink answered, once synced")
    confirmed_at: datetime | None = Field(description="When a read-back showed it at the sink")

    @classmethod
    def of(cls, item: OutboxItem) -> OutboxItemView:
        return cls.model_validate(
            {
                "id": item.id,
                "sink": item.sink,
                "status": item.status.value,
                "sync": sync_status(item.status).value,
                "entity_type": item.entity_type,
                "entity_id": item.entity_id,
                "event_id": item.event_id,
                "operation": item.operation,
                "workflow": item.workflow,
                "step": item.step,
                "fields": fields_of(item),
                "position": item.position,
                "attempts": item.attempts,
                "in_doubt": item.in_doubt,
                "created_at": item.created_at,
                "updated_at": item.updated_at,
                "next_attempt_at": item.next_attempt_at,
                "last_error": item.last_error,
                "result": DeliveryResult.of(item.result),
                "confirmed_at": item.confirmed_at,
            }
        )


class OutboxItemList(_Model):
    """Outbox items, newest first."""

    items: list[OutboxItemView]
    next_before: int | None = Field(
        description="Pass as before for the next page; None when this page is the last"
    )


class AttemptView(_Model):
    """One attempt to deliver an item, as recorded."""

    epoch: int = Field(description="The claim it was made under")
    started_at: datetime
    finished_at: datetime
    outcome: str = Field(
        description="synced, retry, dead, conflict, found (an in-doubt write found at the "
        "sink); lost-lease, retried, skipped (not counted)"
    )
    status: int | None = Field(description="The sink's HTTP status, when it answered")
    detail: str = Field(description="What the sink said, or who retried or skipped it")

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptView:
        return cls(
            epoch=attempt.epoch,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
            outcome=attempt.outcome,
            status=attempt.status,
            detail=attempt.detail,
        )


class OutboxItemDetail(_Model):
    """An item with its attempts, oldest first."""

    item: OutboxItemView
    attempts: list[AttemptView]


class OutboxSkip(_Request):
    """Give up on a parked item: the reason is required (it is recorded)."""

    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")


class SinkDepthView(_Model):
    """One sink's queue at a glance."""

    sink: str
    pending: int
    processing: int
    dead: int = Field(description="Dead letters: refused for good, or out of retries")
    conflict: int = Field(description="Parked: the sink changed the record since it was read")
    oldest: datetime | None = Field(description="When the oldest open item was queued")

    @classmethod
    def of(cls, depth: SinkDepth) -> SinkDepthView:
        return cls(
            sink=depth.sink,
            pending=depth.pending,
            processing=depth.processing,
            dead=depth.dead,
            conflict=depth.conflict,
            oldest=depth.oldest,
        )


class SinkStateView(_Model):
    """What one dispatcher last said of one sink: its circuit, concurrency limit, rate, ..."""

    sink: str
    holder: str = Field(description="The dispatcher that saved it")
    state: dict[str, JsonValue] = Field(
        description="circuit, open_until, limit, in_flight, ... as the dispatcher saved them"
    )
    updated_at: datetime
    stale: bool = Field(description="Not saved again lately: its dispatcher stopped or hangs")

    @classmethod
    def of(cls, state: SinkState) -> SinkStateView:
        return cls(
            sink=state.sink,
            holder=state.holder,
            state=dict(state.state),
            updated_at=state.updated_at,
            stale=state.stale,
        )


class OutboxStats(_Model):
    """The outbox by sink: depth, dead letters, the oldest open item, the dispatchers' states."""

    open: int = Field(description="Pending and processing items, all sinks")
    dead: int = Field(description="Dead letters, all sinks")
    conflict: int = Field(description="Items parked as conflicts, all sinks")
    oldest: datetime | None = Field(description="When the oldest open item was queued")
    sinks: list[SinkDepthView] = Field(description="Per sink with items")
    states: list[SinkStateView] = Field(description="Every dispatcher's last word per sink")
