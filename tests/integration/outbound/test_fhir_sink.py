"""The FHIR sink against the sandbox EHR on a real socket, with its faults (docs/design.md §9),
and against the Medplum server (``tests/fhirserver``).

Items are built directly (no outbox storage): the sink reads only the item's key, entity type,
operation, payload and result.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ehrbridge.budget import BudgetRegistry, RequestBudget
from ehrbridge.errors import InvalidInput, SinkConflict, SinkError
from ehrbridge.fhir.client import FhirClient
from ehrbridge.fhir.http import Resource
from ehrbridge.outbound.outbox import ItemStatus, OutboxItem
from ehrbridge.outbound.sinks import IDENTIFIER_SYSTEM, Delivered, Sink
from ehrbridge.outbound.sinks.fhir import FhirSink, sink_client
from ehrbridge.storage.sqlite.database import SQLiteDatabase
from ehrbridge.storage.sqlite.runner import SQLiteRunnerStore
from ehrbridge.testing import outbox_item
from tests.fhir_server import MedplumServer
from tests.sandbox_server import SandboxServer

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
PHONE_A, PHONE_B, PHONE_C = "+16175550142", "+16175550143", "+16175550144"
ENTITY = {"name.family": "Rivera", "name.given": ["Ana"], "phone.mobile": PHONE_B}


def item(
    payload: dict[str, Any],
    *,
    key: str = "ob-ehr-0001",
    result: dict[str, Any] | None = None,
    entity_type: str = "Patient",
) -> OutboxItem:
    return outbox_item(
        created_at=T0,
        updated_at=T0,
        next_attempt_at=T0,
        lease_until=T0,
        key=key,
        entity_type=entity_type,
        payload=payload,
        result=result,
    )


def create_item(key: str = "ob-ehr-0001") -> OutboxItem:
    return item({"fields": ENTITY, "entity": ENTITY}, key=key)


def update_item(ref: str, *, base: str | None = PHONE_A, ours: str = PHONE_B) -> OutboxItem:
    return item(
        {"fields": {"phone.mobile": ours}, "base": {"phone.mobile": base}, "ref": ref},
        key=f"ob-ehr-{ours[-4:]}",
    )


def synced(sent: OutboxItem, delivered: Delivered) -> OutboxItem:
    return replace(sent, status=ItemStatus.SYNCED, result=delivered.as_result())


PATIENT: Resource = {
    "resourceType": "Patient",
    "name": [{"family": "Rivera", "given": ["Ana"], "use": "official"}],
    "telecom": [
        {"system": "fax", "value": "+16175550100"},
        {"system": "phone", "value": PHONE_A, "use": "mobile", "rank": 1},
    ],
    "extension": [{"url": "https://clinic.example/favourite-colour", "valueString": "green"}],
    "gender": "female",
}


@pytest.fixture
async def server(sandbox: SandboxServer) -> SandboxServer:
    await sandbox.reset()
    return sandbox


@pytest.fixture
async def fhir(server: SandboxServer) -> AsyncIterator[FhirClient]:
    """A plain client: the front desk, and the test's eyes on the sandbox."""
    async with FhirClient(server.base_url) as client:
        yield client


@pytest.fixture
async def sink(server: SandboxServer) -> AsyncIterator[FhirSink]:
    sink = FhirSink("ehr", sink_client("ehr", server.base_url))
    yield sink
    await sink.aclose()


async def stored(fhir: FhirClient) -> str:
    created = await fhir.create(PATIENT)
    assert created.id is not None
    return f"Patient/{created.id}"


async def holding_key(fhir: FhirClient, key: str) -> list[Resource]:
    query = {"identifier": f"{IDENTIFIER_SYSTEM}|{key}"}
    return [r async for r in fhir.search("Patient", query)]


def test_the_sink_is_a_sink() -> None:
    def accepts(sink: Sink) -> str:
        return sink.id

    assert accepts(FhirSink("ehr", sink_client("ehr", "http://127.0.0.1:9/fhir"))) == "ehr"


def test_a_client_that_retries_is_refused() -> None:
    with pytest.raises(InvalidInput, match="must send every request once"):
        FhirSink("ehr", FhirClient("http://127.0.0.1:9/fhir"))


# -- create --------------------------------------------------------------------------------


async def test_a_create_carries_the_identifier_and_a_second_send_finds_it(
    sink: FhirSink, fhir: FhirClient
) -> None:
    first = await sink.send(create_item())
    assert first.created and first.ref.startswith("Patient/") and first.version == "1"
    assert first.record is not None and first.record["telecom"][0]["value"] == PHONE_B
    again = await sink.send(create_item())
    assert (again.ref, again.created, again.extra) == (first.ref, False, {})
    [held] = await holding_key(fhir, "ob-ehr-0001")
    assert {"system": IDENTIFIER_SYSTEM, "value": "ob-ehr-0001"} in held["identifier"]


async def test_a_conditional_create_finds_a_record_made_by_an_earlier_attempt(
    sink: FhirSink, fhir: FhirClient
) -> None:
    earlier = await fhir.create(
        {**PATIENT, "identifier": [{"system": IDENTIFIER_SYSTEM, "value": "ob-ehr-0001"}]}
    )
    found = await sink.send(create_item())
    assert (found.ref, found.created) == (f"Patient/{earlier.id}", False)
    assert len(await holding_key(fhir, "ob-ehr-0001")) == 1


async def test_duplicates_are_reported_and_none_is_deleted(
    sink: FhirSink, fhir: FhirClient
) -> None:
    tagged = {**PATIENT, "identifier": [{"system": IDENTIFIER_SYSTEM, "value": "ob-ehr-0001"}]}
    one, two = await fhir.create(tagged), await fhir.create(tagged)
    delivered = await sink.send(create_item())  # If-None-Exist matches two: 412, then a search
    assert delivered.ref == f"Patient/{one.id}"
    assert delivered.extra == {"duplicates": [f"Patient/{two.id}"]}
    found = await sink.lookup(create_item())
    assert found is not None and (found.ref, found.extra) == (delivered.ref, delivered.extra)
    assert len(await holding_key(fhir, "ob-ehr-0001")) == 2


# -- update --------------------------------------------------------------------------------


async def test_an_update_changes_only_the_field_and_keeps_what_the_mapping_does_not_know(
    sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    delivered = await sink.send(update_item(ref))
    assert (delivered.ref, delivered.version, delivered.created) == (ref, "2", False)
    now = await fhir.read("Patient", ref.split("/")[1])
    assert now["telecom"] == [
        {"system": "fax", "value": "+16175550100"},
        {"system": "phone", "value": PHONE_B, "use": "mobile", "rank": 1},
    ]
    assert now["extension"] == PATIENT["extension"] and now["name"] == PATIENT["name"]


async def test_an_update_already_at_the_sink_is_delivered_without_a_write(
    sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    delivered = await sink.send(update_item(ref, ours=PHONE_A))
    assert (delivered.version, delivered.extra) == ("1", {"unchanged": True})


async def test_a_change_at_the_sink_since_the_base_is_a_conflict_and_is_not_written_over(
    sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    current = await fhir.read("Patient", ref.split("/")[1])
    current["telecom"][1]["value"] = PHONE_C  # the front desk, version 2
    await fhir.update(current)
    with pytest.raises(SinkConflict) as caught:
        await sink.send(update_item(ref))
    [conflict] = caught.value.conflicts
    assert (conflict.field, conflict.ours, conflict.theirs, conflict.version) == (
        "phone.mobile",
        PHONE_B,
        PHONE_C,
        "2",
    )
    assert PHONE_C not in str(caught.value) and PHONE_B not in str(caught.value)
    assert caught.value.operation == f"update PUT /fhir/R4/{ref}"
    assert (await fhir.read("Patient", ref.split("/")[1]))["meta"]["versionId"] == "2"


class FrontDeskFirst(httpx.AsyncBaseTransport):
    """Before the sink's first PUT goes out, the front desk writes the record (a race)."""

    def __init__(self, change: Callable[[], Awaitable[None]]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.change: Callable[[], Awaitable[None]] | None = change
        self.puts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.puts += 1
            if self.change is not None:
                change, self.change = self.change, None
                await change()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def racing_sink(
    server: SandboxServer, fhir: FhirClient, ref: str, edit: Callable[[Resource], None]
) -> tuple[FhirSink, FrontDeskFirst]:
    async def front_desk() -> None:
        current = await fhir.read("Patient", ref.split("/")[1])
        edit(current)
        await fhir.update(current)

    transport = FrontDeskFirst(front_desk)
    return FhirSink("ehr", sink_client("ehr", server.base_url, transport=transport)), transport


async def test_a_412_race_with_a_front_desk_change_of_the_field_is_a_conflict(
    server: SandboxServer, fhir: FhirClient
) -> None:
    ref = await stored(fhir)

    def phone_c(resource: Resource) -> None:
        resource["telecom"][1]["value"] = PHONE_C

    sink, transport = await racing_sink(server, fhir, ref, phone_c)
    async with sink.client:
        with pytest.raises(SinkConflict) as caught:
            await sink.send(update_item(ref))
    assert [(c.theirs, c.version) for c in caught.value.conflicts] == [(PHONE_C, "2")]
    assert transport.puts == 1  # the If-Match PUT got 412; nothing was sent after the re-read
    now = await fhir.read("Patient", ref.split("/")[1])
    assert (now["meta"]["versionId"], now["telecom"][1]["value"]) == ("2", PHONE_C)


async def test_a_412_race_with_an_unrelated_change_reads_again_and_keeps_both(
    server: SandboxServer, fhir: FhirClient
) -> None:
    ref = await stored(fhir)

    def birth_date(resource: Resource) -> None:
        resource["birthDate"] = "1980-02-03"

    sink, transport = await racing_sink(server, fhir, ref, birth_date)
    async with sink.client:
        delivered = await sink.send(update_item(ref))
    assert (delivered.version, transport.puts) == ("3", 2)
    now = await fhir.read("Patient", ref.split("/")[1])
    assert (now["birthDate"], now["telecom"][1]["value"]) == ("1980-02-03", PHONE_B)


# -- faults --------------------------------------------------------------------------------


async def test_a_throttle_is_transient_with_its_retry_after(
    server: SandboxServer, sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    server.app.faults.set(throttle=1, retry_after=7)
    with pytest.raises(SinkError) as caught:  # the update's read
        await sink.send(update_item(ref))
    assert (caught.value.status, caught.value.transient, caught.value.retry_after) == (429, True, 7)
    assert not caught.value.may_have_reached_sink
    server.app.faults.set(throttle=1, retry_after=5)
    with pytest.raises(SinkError) as caught:  # the create's POST
        await sink.send(create_item())
    assert (caught.value.status, caught.value.retry_after) == (429, 5)
    assert caught.value.transient and not caught.value.may_have_reached_sink
    assert server.app.faults.injected == {"throttle": 2}  # each sent once, never retried


async def test_a_5xx_is_transient_and_a_write_that_got_one_may_have_reached_the_sink(
    server: SandboxServer, sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    server.app.faults.set(errors=1, error_status=502)
    with pytest.raises(SinkError) as caught:
        await sink.send(update_item(ref))
    assert (caught.value.status, caught.value.transient) == (502, True)
    assert not caught.value.may_have_reached_sink  # it was the read
    assert caught.value.operation == f"read GET /fhir/R4/{ref}"
    server.app.faults.set(errors=1, error_status=500)
    with pytest.raises(SinkError) as caught:
        await sink.send(create_item())
    assert (caught.value.status, caught.value.transient) == (500, True)
    assert caught.value.may_have_reached_sink and caught.value.retry_after is None


async def test_an_outage_is_transient(
    server: SandboxServer, sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    server.app.faults.set(outage=True)
    with pytest.raises(SinkError) as caught:
        await sink.send(update_item(ref))
    assert (caught.value.status, caught.value.transient) == (503, True)
    server.app.faults.set(outage=True, outage_mode="drop")
    with pytest.raises(SinkError) as caught:
        await sink.lookup(create_item())
    assert caught.value.transient and caught.value.status is None
    assert server.app.faults.injected == {"outage": 2}


async def test_a_throttle_pauses_the_sinks_budget_for_every_runner(server: SandboxServer) -> None:
    database = await SQLiteDatabase.open(":memory:")
    try:
        pace = SQLiteRunnerStore(database)
        budgets = BudgetRegistry(pace, "ws")
        limit = RequestBudget(rate=1000, concurrency=2)
        sink = FhirSink("ehr", sink_client("ehr", server.base_url, budgets=budgets, limit=limit))
        async with sink.client:
            server.app.faults.set(throttle=1, retry_after=30)
            with pytest.raises(SinkError):
                await sink.send(create_item())
        interval = limit.interval
        assert await pace.take_slot("ws", "sink:ehr", interval) > interval  # paused
        assert await pace.take_slot("ws", "source:ehr", interval) == timedelta(0)
    finally:
        await database.close()


async def test_a_timeout_after_sending_a_write_may_have_reached_the_sink(
    server: SandboxServer, fhir: FhirClient
) -> None:
    sink = FhirSink("ehr", sink_client("ehr", server.base_url, timeout=0.2))
    async with sink.client:
        server.app.faults.set(latency=2.0)
        with pytest.raises(SinkError, match="ReadTimeout") as caught:
            await sink.lookup(create_item("ob-ehr-late"))  # a read: nothing to look up
        assert caught.value.transient and not caught.value.may_have_reached_sink
        with pytest.raises(SinkError, match="ReadTimeout") as caught:
            await sink.send(create_item("ob-ehr-late"))
        assert caught.value.transient and caught.value.may_have_reached_sink
        # Whether it landed is what a lookup tells (the sandbox gives up on a write whose
        # client went away; a server that does not would hold it).
        server.app.faults.clear()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a_connection_refused_before_sending_is_transient_and_nothing_was_sent() -> None:
    sink = FhirSink("ehr", sink_client("ehr", f"http://127.0.0.1:{closed_port()}/fhir/R4"))
    async with sink.client:
        with pytest.raises(SinkError) as caught:
            await sink.send(create_item())
    assert caught.value.transient and not caught.value.may_have_reached_sink
    assert "ConnectError" in str(caught.value)


async def test_a_reset_after_the_create_landed_is_found_by_lookup_and_one_copy_is_held(
    server: SandboxServer, sink: FhirSink, fhir: FhirClient
) -> None:
    server.app.faults.set(resets_after_write=1)
    with pytest.raises(SinkError) as caught:
        await sink.send(create_item())
    assert caught.value.transient and caught.value.may_have_reached_sink
    found = await sink.lookup(create_item())
    assert found is not None and found.created and found.extra == {}
    [held] = await holding_key(fhir, "ob-ehr-0001")
    assert found.ref == f"Patient/{held['id']}"
    assert server.app.faults.injected == {"reset_after_write": 1}


async def test_a_reset_before_the_create_landed_finds_nothing_and_the_resend_makes_one_copy(
    server: SandboxServer, sink: FhirSink, fhir: FhirClient
) -> None:
    server.app.faults.set(resets=1)
    with pytest.raises(SinkError) as caught:
        await sink.send(create_item())
    assert caught.value.transient and caught.value.may_have_reached_sink
    assert await sink.lookup(create_item()) is None
    delivered = await sink.send(create_item())
    assert delivered.created
    assert len(await holding_key(fhir, "ob-ehr-0001")) == 1


async def test_a_reset_after_an_update_landed_is_found_by_lookup(
    server: SandboxServer, sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    assert await sink.lookup(update_item(ref)) is None
    server.app.faults.set(resets_after_write=1)
    with pytest.raises(SinkError) as caught:
        await sink.send(update_item(ref))
    assert caught.value.may_have_reached_sink
    found = await sink.lookup(update_item(ref))
    assert found is not None and (found.ref, found.version) == (ref, "2")


async def test_a_dropped_update_shows_in_read_back_and_the_resend_lands(
    server: SandboxServer, sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    sent = update_item(ref)
    server.app.faults.set(dropped_writes=1)
    dropped = await sink.send(sent)  # answered as stored, rolled back
    assert dropped.version == "2"
    assert not await sink.read_back(synced(sent, dropped))
    landed = await sink.send(sent)
    assert await sink.read_back(synced(sent, landed))
    # A later change at the sink does not hide our write from the read-back of its version.
    current = await fhir.read("Patient", ref.split("/")[1])
    current["telecom"][1]["value"] = PHONE_C
    await fhir.update(current)
    assert await sink.read_back(synced(sent, landed))


async def test_a_dropped_create_is_not_delivered_and_read_back_finds_nothing(
    server: SandboxServer, sink: FhirSink
) -> None:
    server.app.faults.set(dropped_writes=1)
    with pytest.raises(SinkError, match="finds nothing") as caught:
        await sink.send(create_item())
    assert caught.value.may_have_reached_sink and caught.value.transient
    assert not await sink.read_back(create_item())
    delivered = await sink.send(create_item())
    assert await sink.read_back(synced(create_item(), delivered))


async def test_a_422_is_permanent_with_its_diagnostics(
    server: SandboxServer, sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    server.app.faults.set(unprocessable=1)
    with pytest.raises(SinkError) as caught:
        await sink.send(update_item(ref))
    error = caught.value
    assert (error.status, error.transient, error.may_have_reached_sink) == (422, False, False)
    assert "error processing: injected fault" in str(error)
    assert PHONE_B not in str(error)


async def test_an_invalid_resource_is_permanent_and_names_the_element(
    sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    bad = item({"fields": {"gender": "robot"}, "ref": ref})
    with pytest.raises(SinkError, match=r"Patient\.gender") as caught:
        await sink.send(bad)
    assert not caught.value.transient and "robot" not in str(caught.value)


async def test_a_deleted_record_is_permanent_and_lookup_finds_nothing(
    sink: FhirSink, fhir: FhirClient
) -> None:
    ref = await stored(fhir)
    await fhir.delete("Patient", ref.split("/")[1])
    with pytest.raises(SinkError) as caught:
        await sink.send(update_item(ref))
    assert (caught.value.status, caught.value.transient) == (410, False)
    assert await sink.lookup(update_item(ref)) is None


async def test_an_update_that_would_change_another_field_is_refused_before_sending(
    sink: FhirSink, fhir: FhirClient
) -> None:
    group = {"type": {"coding": [{"code": "group"}]}, "value": "770412", "name": "Harborlight"}
    coverage = await fhir.create(
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": {"reference": "Patient/7"},
            "payor": [{"display": "Harborlight Health"}],
            "class": [group],
        }
    )
    ref = f"Coverage/{coverage.id}"
    # FHIR's Coverage.class needs a value: without the number the group's name goes too.
    drop = item({"fields": {"group_number": None}, "ref": ref}, entity_type="InsurancePlan")
    with pytest.raises(SinkError, match="would also change group_name") as caught:
        await sink.send(drop)
    assert not caught.value.transient and "Harborlight" not in str(caught.value)
    assert (await fhir.read("Coverage", str(coverage.id)))["meta"]["versionId"] == "1"
    renumber = item({"fields": {"group_number": "770413"}, "ref": ref}, entity_type="InsurancePlan")
    assert (await sink.send(renumber)).version == "2"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"fields": {}}, "fields is empty"),
        ({"fields": {"Phone": PHONE_B}, "ref": "Patient/1"}, "'Phone' is not a field path"),
        ({"fields": {"gender": "male"}, "ref": "Practitioner/1"}, "ref is a Practitioner"),
        ({"fields": {"gender": "male"}, "ref": "nope"}, "ref must be a FHIR reference"),
        ({"fields": {"gender": "male"}, "extra": 1}, "unknown keys extra"),
    ],
)
async def test_a_bad_payload_is_permanent_and_says_what_is_wrong(
    sink: FhirSink, payload: dict[str, Any], problem: str
) -> None:
    with pytest.raises(SinkError, match=problem) as caught:
        await sink.send(item(payload))
    assert not caught.value.transient


# -- the Medplum server --------------------------------------------------------------------


@pytest.fixture
async def medplum_sink(medplum: MedplumServer) -> AsyncIterator[FhirSink]:
    await medplum.reset()
    sink = FhirSink("ehr", sink_client("ehr", medplum.base_url))
    yield sink
    await sink.aclose()


@pytest.mark.fhir_server
async def test_medplum_a_second_create_of_the_key_finds_the_first(
    medplum_sink: FhirSink, medplum: MedplumServer
) -> None:
    first = await medplum_sink.send(create_item())
    again = await medplum_sink.send(create_item())
    assert first.created and not again.created and again.ref == first.ref
    async with FhirClient(medplum.base_url) as fhir:
        assert len(await holding_key(fhir, "ob-ehr-0001")) == 1
    assert await medplum_sink.read_back(synced(create_item(), first))


@pytest.mark.fhir_server
async def test_medplum_an_update_with_if_match_and_a_conflict(
    medplum_sink: FhirSink, medplum: MedplumServer
) -> None:
    async with FhirClient(medplum.base_url) as fhir:
        ref = await stored(fhir)
        sent = update_item(ref)
        delivered = await medplum_sink.send(sent)
        assert delivered.version is not None and delivered.version != "1"
        assert await medplum_sink.read_back(synced(sent, delivered))
        now = await fhir.read("Patient", ref.split("/")[1])
        assert now["telecom"][0] == PATIENT["telecom"][0] and now["extension"]
        now["telecom"][1]["value"] = PHONE_C
        await fhir.update(now)
    with pytest.raises(SinkConflict) as caught:
        await medplum_sink.send(update_item(ref, base=PHONE_B, ours=PHONE_A))
    assert [c.theirs for c in caught.value.conflicts] == [PHONE_C]
