"""The reconcile loop: finds what the dispatcher's guarantees could still have missed, and puts
it right (docs/design.md §9, "Reconcile"). Every ``every`` (5 minutes by default):

- **unconfirmed writes**: a synced item the sink acknowledged at least ``settle`` ago is read
  back; shown → confirmed; not shown (a sink that drops writes silently) → queued again, due now;
- **stuck items**: items still processing past their lease are counted and the dispatcher is
  woken (a lapsed lease makes an item claimable again, in doubt if it was marked sent: nothing
  more is needed than a claimer);
- **missing items**: a second, trailing pass of the feed over the log, with its own cursor,
  decides every fact again; a fact the gate lets through that has no item is queued now and
  counted (zero unless something is wrong: the feed writes its items and cursor in one
  transaction).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ehrbridge.errors import SinkError, StorageError
from ehrbridge.leases import Leases
from ehrbridge.outbound.feed import OutboundFeed
from ehrbridge.outbound.outbox import ItemQuery, ItemStatus, Outbox
from ehrbridge.outbound.sinks import Sink
from ehrbridge.times import pause

log = logging.getLogger("ehrbridge.outbound")

#: how often the loop reconciles unless configured
DEFAULT_EVERY = timedelta(minutes=5)
#: a write is read back only once it is this old: a sink's reads may lag its writes
DEFAULT_SETTLE = timedelta(seconds=30)
#: the trailing feed's cursor
RECONCILE_CURSOR = "outbound-reconcile"
#: the lease a round runs under, one runner at a time per workspace
RECONCILE_LEASE = "outbound-reconcile"


@dataclass(frozen=True, kw_only=True)
class ReconcileReport:
    """What one round found."""

    confirmed: int = 0
    reopened: int = 0
    unknown: int = 0  #: read-backs the sink could not answer (tried again next round)
    stuck: int = 0
    missing: int = 0


class Reconciler:
    """The runner's ``reconcile`` loop for one workspace."""

    name = "reconcile"

    def __init__(
        self,
        outbox: Outbox,
        sinks: Mapping[str, Sink],
        *,
        workspace: str,
        feed: OutboundFeed | None = None,
        every: timedelta = DEFAULT_EVERY,
        settle: timedelta = DEFAULT_SETTLE,
        batch: int = 100,
        wake: Callable[[], None] = lambda: None,
        leases: Leases | None = None,
        holder: str = "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.sinks = dict(sinks)
        self.workspace = workspace
        #: the trailing feed (its ``cursor`` RECONCILE_CURSOR, ``count_missing`` on)
        self.feed = feed
        self.every = every
        self.settle = settle
        self.batch = batch
        #: wakes the dispatcher when there is work for it
        self.wake = wake
        #: with ``leases``, one runner reconciles the workspace per round (``outbound-reconcile``)
        self.leases = leases
        self.holder = holder
        self.clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        while not await pause(self.every, stop):
            try:
                if self.leases is not None:
                    held = await self.leases.acquire(
                        self.workspace, RECONCILE_LEASE, self.holder, self.every * 2
                    )
                    if held is None:
                        continue  # another runner reconciles this round
                report = await self.round()
            except StorageError as exc:  # the database is away: the next round tries again
                log.warning("reconcile: the round failed: %s", exc)
                continue
            if report.reopened or report.stuck or report.missing:
                log.warning(
                    "reconcile: %d writes not shown at their sink queued again, %d items stuck "
                    "past their lease, %d eligible facts without an item queued",
                    report.reopened,
                    report.stuck,
                    report.missing,
                )

    async def round(self) -> ReconcileReport:
        """One reconciliation of every sink and of the log."""
        confirmed = reopened = unknown = 0
        ws = self.workspace
        for sink_id, sink in self.sinks.items():
            before = self.clock() - self.settle
            items = await self.outbox.unconfirmed(
                ws, sink_id, synced_before=before, limit=self.batch
            )
            for item in items:
                try:
                    shown = await sink.read_back(item)
                except SinkError as exc:
                    unknown += 1
                    log.info("reconcile: read-back of item %s failed: %s", item.id, exc)
                    continue
                if shown:
                    confirmed += await self.outbox.confirm(ws, item.id)
                else:
                    why = "the sink acknowledged the write, but a read-back does not show it"
                    reopened += await self.outbox.reopen(ws, item.id, why)
        now = self.clock()
        processing = await self.outbox.items(ws, ItemQuery(status=ItemStatus.PROCESSING))
        stuck = sum(1 for i in processing if i.lease_until is not None and i.lease_until < now)
        missing = 0
        if self.feed is not None:
            while True:
                step = await self.feed.step()
                missing += step.missing
                if not step.events:
                    break
        if reopened or stuck or missing:
            self.wake()
        return ReconcileReport(
            confirmed=confirmed, reopened=reopened, unknown=unknown, stuck=stuck, missing=missing
        )
