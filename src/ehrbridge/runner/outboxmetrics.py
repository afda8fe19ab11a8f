"""Prometheus metrics of the outbound half: the outbox per sink and each dispatcher's state
(docs/design.md §9).

They are derived at scrape time from what the ``metrics`` loop last read from the store
(:meth:`~ehrbridge.outbound.outbox.Outbox.depth` and
:meth:`~ehrbridge.outbound.outbox.Outbox.sink_states`), so they count every runner's
dispatcher, not only this process's; the oldest item's age grows between reads, as it should.
A dispatcher's saved state carries its circuit, its concurrency limit and its deliveries by
outcome since it started (a counter that restarts with the dispatcher, which Prometheus'
``rate`` allows for). A state not saved again lately (``stale``: its dispatcher stopped or
hangs) is left out. Labels are sink ids, dispatcher ids, statuses and outcomes: never patient
data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TypeGuard

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ehrbridge.outbound.limits import Circuit
from ehrbridge.outbound.outbox import SinkDepth, SinkState

#: the values of the ``state`` label of ``ehrbridge_sink_circuit``
CIRCUITS = tuple(c.value for c in Circuit)


class OutboxCollector:
    """The outbound gauges and counters, from the last :meth:`seed`."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self._depths: list[SinkDepth] = []
        self._states: list[SinkState] = []
        # The HTTP server's thread scrapes while the event loop seeds.
        self._lock = threading.Lock()

    def seed(self, depths: Iterable[SinkDepth], states: Iterable[SinkState]) -> None:
        """Replace what the metrics are derived from (the store's latest)."""
        fresh = list(depths), list(states)
        with self._lock:
            self._depths, self._states = fresh

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            depths, states = list(self._depths), list(self._states)
        yield from self._queue(depths)
        yield from self._dispatchers([s for s in states if not s.stale])

    def _queue(self, depths: list[SinkDepth]) -> Iterator[Metric]:
        items = GaugeMetricFamily(
            "ehrbridge_outbox_items",
            "Outbox items per sink by status: pending and processing (the queue), dead (dead "
            "letters) and conflict (parked for review).",
            labels=["sink", "status"],
        )
        depth = GaugeMetricFamily(
            "ehrbridge_outbox_depth",
            "Open (pending or processing) outbox items per sink.",
            labels=["sink"],
        )
        dead = GaugeMetricFamily(
            "ehrbridge_outbox_dead_letters",
            "Dead letters per sink: refused for good or out of retries, each holding its lane.",
            labels=["sink"],
        )
        conflicts = GaugeMetricFamily(
            "ehrbridge_outbox_conflicts",
            "Items per sink parked because the sink changed the record since it was read.",
            labels=["sink"],
        )
        oldest = GaugeMetricFamily(
            "ehrbridge_outbox_oldest_age_seconds",
            "Seconds since the sink's oldest open item was queued (absent: none open).",
            labels=["sink"],
        )
        now = self.clock()
        for d in depths:
            for status, count in (
                ("pending", d.pending),
                ("processing", d.processing),
                ("dead", d.dead),
                ("conflict", d.conflict),
            ):
                items.add_metric([d.sink, status], float(count))
            depth.add_metric([d.sink], float(d.pending + d.processing))
            dead.add_metric([d.sink], float(d.dead))
            conflicts.add_metric([d.sink], float(d.conflict))
            if d.oldest is not None:
                oldest.add_metric([d.sink], max((now - d.oldest).total_seconds(), 0.0))
        yield from (items, depth, dead, conflicts, oldest)

    def _dispatchers(self, states: list[SinkState]) -> Iterator[Metric]:
        labels = ["sink", "dispatcher"]
        circuit = GaugeMetricFamily(
            "ehrbridge_sink_circuit",
            "1 for the sink's circuit state (closed, open, half-open) in each dispatcher, 0 "
            "for the others.",
            labels=[*labels, "state"],
        )
        limit = GaugeMetricFamily(
            "ehrbridge_sink_concurrency_limit",
            "Deliveries to the sink a dispatcher lets run at once now (its adaptive limit).",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "ehrbridge_sink_in_flight",
            "Deliveries to the sink a dispatcher has running.",
            labels=labels,
        )
        deliveries = CounterMetricFamily(
            "ehrbridge_outbox_deliveries",
            "Delivery attempts settled by a dispatcher since it started, by outcome (synced, "
            "found, retry, dead, conflict, cancelled).",
            labels=[*labels, "outcome"],
        )
        for s in states:
            at = [s.sink, s.holder]
            state = s.state
            if isinstance(name := state.get("circuit"), str):
                for each in CIRCUITS:
                    circuit.add_metric([*at, each], 1.0 if name == each else 0.0)
            if _number(value := state.get("limit")):
                limit.add_metric(at, float(value))
            if _number(value := state.get("in_flight")):
                in_flight.add_metric(at, float(value))
            counted = state.get("deliveries")
            if isinstance(counted, dict):
                for outcome, count in sorted(counted.items()):
                    if _number(count):
                        deliveries.add_metric([*at, str(outcome)], float(count))
        yield from (circuit, limit, in_flight, deliveries)


def _number(value: object) -> TypeGuard[int | float]:
    """A JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
