"""A sink with more deliveries in flight than the database has pooled connections (PostgreSQL
pools 8): every write's echo is recorded and nothing waits for a connection that never comes.
The echo's record is linked to its entity, so its import takes no resolution lock (a lock held
on a pooled connection of its own while the holder needs another: with enough echoes waiting
for it, the pool was empty and the holder waited out the pool's timeout)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ehrbridge.outbound.dispatch import Dispatcher, SinkRuntime
from ehrbridge.outbound.echo import SinkEcho
from ehrbridge.outbound.gates import SinkPolicy
from ehrbridge.outbound.limits import (
    AdaptiveLimiter,
    BreakerLimits,
    CircuitBreaker,
    ConcurrencyLimits,
    RetryLimits,
)
from ehrbridge.outbound.outbox import ItemStatus
from ehrbridge.outbound.sinks.fhir import FhirSink, sink_client
from tests.integration.outbound.test_dispatch import (
    PHONE_B,
    WS,
    World,
    clock,
    running_until,
    world,
)

__all__ = ["clock", "world"]  # the fixtures, from the dispatch tests

#: more deliveries at once than PostgreSQL's pool holds connections
IN_FLIGHT = 16
FAMILIES = (
    "Abara", "Bianchi", "Castillo", "Dubois", "Eriksen", "Fujita", "Gallagher", "Horvat",
    "Ivanova", "Jensen", "Kaplan", "Laine", "Mensah", "Novak", "Oyelaran", "Petrov",
)  # fmt: skip


def wide_dispatcher(world: World) -> Dispatcher:
    runtime = SinkRuntime(
        sink=FhirSink("ehr", sink_client("ehr", world.server.base_url)),
        policy=SinkPolicy(sink="ehr", entity_types=frozenset({"Patient"})),
        retry=RetryLimits(),
        breaker=CircuitBreaker(BreakerLimits(), clock=lambda: datetime.now(UTC)),
        limiter=AdaptiveLimiter(ConcurrencyLimits(initial=IN_FLIGHT, max=IN_FLIGHT)),
    )
    return Dispatcher(
        world.backend.worldmodel,
        world.backend.outbox,
        [runtime],
        workspace=WS,
        holder="runner-test",
        echo=SinkEcho(world.model),
        catch_up=timedelta(milliseconds=50),
    )


async def test_more_deliveries_than_pooled_connections_all_sync_with_their_echo(
    world: World,
) -> None:
    facts = []  # (entity, fact): one person each, told apart by their numbers
    for n, family in enumerate(FAMILIES):
        _, entity_id = await world.patient_at_ehr(family, f"+1617555{n:04d}")
        facts.append((entity_id, await world.verified_phone(entity_id)))
    dispatcher = wide_dispatcher(world)

    async def all_synced() -> bool:
        found = await world.backend.outbox.of_events(WS, [fact for _, fact in facts])
        items = [item for listed in found.values() for item in listed]
        return len(items) == IN_FLIGHT and all(i.status is ItemStatus.SYNCED for i in items)

    await running_until(dispatcher, all_synced, what="every write synced")
    for entity_id, _ in facts:
        state = await world.model.state("Patient", entity_id)
        assert state is not None
        phone = state.fields["phone.mobile"]
        # the echo was recorded: the field is the EHR's now
        assert (phone.value, phone.source.kind) == (PHONE_B, "ehr")
