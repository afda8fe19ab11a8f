"""The runner's outbound metrics on ``/metrics``, on both backends: the ``metrics`` loop reads the
outbox's depth and every dispatcher's saved sink state from the store, and a scrape of the real
endpoint shows per sink the queue, the oldest item's age, dead letters, conflicts, and per
dispatcher the circuit, the concurrency limit and the deliveries by outcome."""

from __future__ import annotations

from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ehrbridge.outbound.outbox import Attempt, ItemQuery, ItemStatus, NewItem, Settle, item_key
from ehrbridge.runner.loops.metrics import MetricsLoop
from ehrbridge.runner.metrics import RunnerMetrics
from ehrbridge.storage import Backend
from ehrbridge.testing import FakeClock

WS = "clinic"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def queue(backend: Backend, sink: str, entity_id: str, event_id: str) -> None:
    await backend.outbox.enqueue(
        WS,
        [
            NewItem(
                sink=sink,
                key=item_key(sink, event_id),
                lane=f"Patient/{entity_id}",
                entity_type="Patient",
                entity_id=entity_id,
                event_id=event_id,
                operation="upsert",
                payload={"fields": {"email": "someone@example.org"}},
            )
        ],
    )


async def park(backend: Backend, clock: FakeClock, sink: str, status: ItemStatus) -> None:
    """Claim ``sink``'s first ready head and park it as ``status``."""
    (claim,) = await backend.outbox.claim(WS, sink, "w", limit=1, lease=timedelta(minutes=1))
    attempt = Attempt(
        item_id=claim.item.id,
        epoch=claim.epoch,
        started_at=clock(),
        finished_at=clock(),
        outcome=status.value,
    )
    settle = Settle(status=status, attempt=attempt, error="refused")
    assert await backend.outbox.settle(WS, claim.item.id, claim.epoch, settle)


def scrape(metrics: RunnerMetrics) -> Samples:
    server = metrics.serve("127.0.0.1", 0)
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    finally:
        server.close()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def at(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


async def test_the_outbox_and_the_dispatchers_states_reach_metrics(
    backend: Backend, clock: FakeClock
) -> None:
    outbox = backend.outbox
    await queue(backend, "ehr", "p1", "e1")  # the oldest open item of ehr
    clock.advance(timedelta(minutes=1))
    await queue(backend, "ehr", "p2", "e2")
    await queue(backend, "billing", "p3", "e3")
    await queue(backend, "billing", "p4", "e4")
    await park(backend, clock, "billing", ItemStatus.DEAD)
    await park(backend, clock, "billing", ItemStatus.CONFLICT)
    await outbox.save_sink_state(WS, "ehr", "gone", {"circuit": "closed", "limit": 9})
    clock.advance(timedelta(minutes=4))  # the "gone" dispatcher's state is stale now
    await outbox.save_sink_state(
        WS,
        "ehr",
        "runner-a",
        {
            "circuit": "half-open",
            "limit": 3,
            "in_flight": 1,
            "deliveries": {"synced": 5, "retry": 2, "dead": 1},
        },
    )
    metrics = RunnerMetrics(clock=clock)
    await MetricsLoop(metrics, backend.runner, WS, outbox).step()
    got = scrape(metrics)

    assert got[("ehrbridge_outbox_depth", at(sink="ehr"))] == 2
    assert got[("ehrbridge_outbox_depth", at(sink="billing"))] == 0
    assert got[("ehrbridge_outbox_items", at(sink="ehr", status="pending"))] == 2
    assert got[("ehrbridge_outbox_dead_letters", at(sink="billing"))] == 1
    assert got[("ehrbridge_outbox_conflicts", at(sink="billing"))] == 1
    assert got[("ehrbridge_outbox_dead_letters", at(sink="ehr"))] == 0
    # the oldest was queued five minutes before the store's clock now
    assert got[("ehrbridge_outbox_oldest_age_seconds", at(sink="ehr"))] == 300
    assert ("ehrbridge_outbox_oldest_age_seconds", at(sink="billing")) not in got

    a = {"sink": "ehr", "dispatcher": "runner-a"}
    assert got[("ehrbridge_sink_circuit", at(**a, state="half-open"))] == 1
    assert got[("ehrbridge_sink_circuit", at(**a, state="closed"))] == 0
    assert got[("ehrbridge_sink_concurrency_limit", at(**a))] == 3
    assert got[("ehrbridge_sink_in_flight", at(**a))] == 1
    assert got[("ehrbridge_outbox_deliveries_total", at(**a, outcome="synced"))] == 5
    assert got[("ehrbridge_outbox_deliveries_total", at(**a, outcome="retry"))] == 2
    # a dispatcher that stopped saving is left out
    assert not [key for key in got if ("dispatcher", "gone") in key[1]]

    # the next reload replaces the figures: the dead letter was skipped
    dead = await outbox.items(WS, ItemQuery(status=ItemStatus.DEAD))
    await outbox.skip(WS, dead[0].id, "ops", "fixed at the EHR")
    await MetricsLoop(metrics, backend.runner, WS, outbox).step()
    assert scrape(metrics)[("ehrbridge_outbox_dead_letters", at(sink="billing"))] == 0


def test_without_an_outbox_there_are_no_outbound_samples() -> None:
    metrics = RunnerMetrics()
    names = {name for name, _ in scrape(metrics)}
    assert not [n for n in names if n.startswith(("ehrbridge_outbox", "ehrbridge_sink"))]
