"""What both outbox adapters share (:mod:`ehrbridge.outbound.outbox`): the item columns, the
claim's head-of-lane rule, and the checks of what callers pass in.

The rule is written once with ``{p}`` for the driver's placeholder and the bound values in the
order the query names them (``now`` twice), so the two backends cannot drift apart on which
items are ready.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from ehrbridge.errors import InvalidInput
from ehrbridge.outbound.outbox import (
    ItemQuery,
    ItemStatus,
    NewItem,
    OutboxItem,
    Settle,
)

#: the columns an :class:`OutboxItem` is read from, in its fields' order
ITEM_COLUMNS = (
    "id, workspace, sink, key, lane, position, entity_type, entity_id, event_id, operation, "
    "payload, workflow, step, status, attempts, created_at, updated_at, next_attempt_at, "
    "holder, lease_until, epoch, in_doubt, last_error, result, confirmed_at"
)
#: the statuses that hold a lane: every status but the final ones
OPEN_SQL = "('pending', 'processing', 'dead', 'conflict')"
#: A ready lane head of one sink, as the candidates of a claim. Bound: workspace, sink, now
#: (due), now (lease ran out), now (another item of the lane still held). The lane check is a
#: scalar subquery with LIMIT, not NOT EXISTS: the planner then always looks it up per candidate
#: on ``outbox_items_lanes`` (an anti join may scan the sink's every open item per candidate).
#: The status list lets SQLite see that the partial index ``outbox_items_ready`` applies.
READY = (
    "i.workspace = {p} AND i.sink = {p} AND i.status IN ('pending', 'processing') AND ("
    "(i.status = 'pending' AND i.next_attempt_at <= {p}) OR "
    "(i.status = 'processing' AND i.lease_until <= {p})) AND (SELECT 1 FROM outbox_items o "
    "WHERE o.workspace = i.workspace AND o.sink = i.sink AND o.lane = i.lane "
    f"AND o.status IN {OPEN_SQL} AND (o.position < i.position "
    "OR (o.status = 'processing' AND o.lease_until > {p})) LIMIT 1) IS NULL"
)
#: what a settle may end in
SETTLED = frozenset(
    {
        ItemStatus.SYNCED,
        ItemStatus.PENDING,
        ItemStatus.DEAD,
        ItemStatus.CONFLICT,
        ItemStatus.CANCELLED,
    }
)
#: the most items one listing returns
MAX_LIMIT = 1000
#: why a lost lease's attempt ended, in the attempts it leaves
LOST_LEASE = "lost-lease"


def ready(placeholder: str) -> str:
    """The head-of-lane rule with the driver's placeholder (``?`` or ``%s``)."""
    return READY.format(p=placeholder)


def item_from_row(
    row: Any, *, time: Callable[[Any], datetime], json: Callable[[Any], Any]
) -> OutboxItem:
    """An item from a row of :data:`ITEM_COLUMNS`, reading times and JSON the backend's way."""

    def maybe_time(value: Any) -> datetime | None:
        return None if value is None else time(value)

    return OutboxItem(
        id=row[0],
        workspace=row[1],
        sink=row[2],
        key=row[3],
        lane=row[4],
        position=int(row[5]),
        entity_type=row[6],
        entity_id=row[7],
        event_id=row[8],
        operation=row[9],
        payload=json(row[10]),
        workflow=row[11],
        step=int(row[12]),
        status=ItemStatus(row[13]),
        attempts=int(row[14]),
        created_at=time(row[15]),
        updated_at=time(row[16]),
        next_attempt_at=time(row[17]),
        holder=row[18],
        lease_until=maybe_time(row[19]),
        epoch=int(row[20]),
        in_doubt=bool(row[21]),
        last_error=row[22],
        result=None if row[23] is None else json(row[23]),
        confirmed_at=maybe_time(row[24]),
    )


def json_text(value: Mapping[str, Any], what: str) -> str:
    """``value`` as JSON text; InvalidInput naming ``what`` when it is not JSON."""
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise InvalidInput(f"{what} is not JSON: {exc}") from exc


def check_items(items: list[NewItem]) -> None:
    """Refuse items a store could not queue: empty names, or one key twice with different
    contents in one call (the second would be dropped silently)."""
    seen: dict[str, NewItem] = {}
    for item in items:
        for name in ("sink", "key", "lane", "entity_type", "entity_id", "operation"):
            if not getattr(item, name):
                raise InvalidInput(f"an outbox item has no {name}")
        if item.step < 0:
            raise InvalidInput("an outbox item's step is 0 or more")
        earlier = seen.setdefault(item.key, item)
        if earlier != item:
            raise InvalidInput(f"outbox key {item.key} is given twice with different items")


def check_claim(limit: int, lease: timedelta) -> None:
    if limit < 1:
        raise InvalidInput("claim at least one item (limit >= 1)")
    if lease <= timedelta(0):
        raise InvalidInput("a claim's lease must be longer than zero")


def check_settle(outcome: Settle) -> None:
    if outcome.status not in SETTLED:
        raise InvalidInput(
            f"an attempt cannot end in {outcome.status.value}: settle to synced, pending, "
            "dead, conflict or cancelled"
        )
    if not outcome.attempt.outcome:
        raise InvalidInput("an attempt needs an outcome")


def check_query(query: ItemQuery) -> None:
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidInput(f"an outbox listing's limit is 1 to {MAX_LIMIT}, not {query.limit}")


def query_filters(query: ItemQuery, placeholder: str) -> tuple[list[str], list[Any]]:
    """The WHERE clauses (after the workspace's) and their values for ``query``."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("sink", query.sink),
        ("status", None if query.status is None else query.status.value),
        ("entity_type", query.entity_type),
        ("entity_id", query.entity_id),
        ("event_id", query.event_id),
        ("workflow", query.workflow),
    ):
        if value is not None:
            where.append(f"{column} = {placeholder}")
            args.append(value)
    if query.before is not None:
        where.append(f"position < {placeholder}")
        args.append(query.before)
    return where, args
