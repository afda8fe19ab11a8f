"""Sync status: where a value the agent heard or an operator set stands at each sink
(docs/design.md §9), for the agent's entity reads and ambient context.

Only voice and operator values go out through the outbox, so only their event ids are looked up,
in one :meth:`~ehrbridge.outbound.outbox.Outbox.of_events` query per read; a read with none (EHR
data only) costs no query. A fact delivered by several items at one sink (a workflow's steps)
shows the least advanced of them.

>>> from ehrbridge.outbound.outbox import SyncStatus as S
>>> combined([S.SYNCED, S.PENDING]).value, combined([S.SYNCED, S.NOT_APPLICABLE]).value
('pending', 'synced')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ehrbridge.api.models import OUTBOUND_KINDS, SyncMap
from ehrbridge.outbound.outbox import Outbox, OutboxItem, SyncStatus, sync_status
from ehrbridge.worldmodel.projection import EntityState

#: from the status that says most to the agent to the least: a parked item first, a final one
#: that will never reach the sink last
_RANK = (
    SyncStatus.CONFLICT,
    SyncStatus.FAILED,
    SyncStatus.PROCESSING,
    SyncStatus.PENDING,
    SyncStatus.SYNCED,
    SyncStatus.NOT_APPLICABLE,
)


def combined(statuses: Sequence[SyncStatus]) -> SyncStatus:
    """One sink's status for a fact its items (``statuses``, at least one) deliver together:
    the first of conflict, failed, processing, pending, synced, not applicable."""
    return min(statuses, key=_RANK.index)


def per_sink(items: Iterable[OutboxItem]) -> dict[str, str]:
    """A fact's sync status at each sink its ``items`` go to."""
    by_sink: dict[str, list[SyncStatus]] = {}
    for item in items:
        by_sink.setdefault(item.sink, []).append(sync_status(item.status))
    return {sink: combined(found).value for sink, found in sorted(by_sink.items())}


def outbound_events(states: Iterable[EntityState]) -> list[str]:
    """The event ids of the voice and operator values of ``states`` (projected and pending),
    each once, in the order met."""
    ids: dict[str, None] = {}
    for state in states:
        for value in state.fields.values():
            if value.source.kind in OUTBOUND_KINDS:
                ids[value.event_id] = None
        for values in state.pending.values():
            for value in values:
                if value.source.kind in OUTBOUND_KINDS:
                    ids[value.event_id] = None
    return list(ids)


async def sync_of(
    outbox: Outbox | None, workspace: str, states: Iterable[EntityState]
) -> SyncMap | None:
    """The sync status of every voice and operator fact of ``states``, by event id and sink
    (a fact without items is absent: it goes to no sink yet); None without an outbox (nothing
    is looked up, and the views say so). One query, or none when there is no such fact."""
    if outbox is None:
        return None
    ids = outbound_events(states)
    if not ids:
        return {}
    found = await outbox.of_events(workspace, ids)
    return {event_id: per_sink(items) for event_id, items in found.items()}
