"""The REST sink against a clinic API on a real loopback socket (docs/sinks.md).

The API (:class:`ClinicApi`) is a bare ASGI app under uvicorn, so a fault can do what a framework
would tidy away: apply a write and drop the connection before the answer is complete. It keeps
patients under ``/api/patients``, checks an API key, honours ``Idempotency-Key`` when told to,
and finds a write by the key the sink stores in ``external_key``. The sink is built from a runner
config through :func:`~ehrbridge.connectors.rest.sink.rest_sink`, as the runner builds it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn

from ehrbridge.budget import BudgetRegistry, source_budget
from ehrbridge.connectors.rest.sink import rest_sink, sink_budget
from ehrbridge.errors import ConfigError, SinkConflict, SinkError
from ehrbridge.outbound.outbox import OutboxItem
from ehrbridge.outbound.sinks.rest import UNKNOWN_OUTCOME, RestSink
from ehrbridge.runner.configfile import parse_config
from ehrbridge.storage.sqlite.database import SQLiteDatabase
from ehrbridge.storage.sqlite.runner import SQLiteRunnerStore
from ehrbridge.testing import outbox_item

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

API_KEY = "clinic-key-321"
#: a value only the entity holds: never in an error message
PHONE = "+16175550199"


@dataclass
class ClinicApi:
    """Patients behind an API key; ``faults`` apply to the next writes, one each."""

    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``429``, ``503``, ``500``, ``422``, ``409``, ``drop-after`` (apply, then cut the answer),
    #: ``drop-before`` (cut the answer, apply nothing), ``hang-after`` (apply, answer late),
    #: ``race:<key>=<value>`` (a PUT finds the record changed just before it: then
    #: ``If-Match`` fails with 412)
    faults: list[str] = field(default_factory=list)
    #: honour ``Idempotency-Key``: a second write with a seen key is answered, not applied
    idempotent: bool = True
    seen: dict[str, str] = field(default_factory=dict)
    #: the JSON body of every write, in order
    bodies: list[dict[str, Any]] = field(default_factory=list)
    #: each record's version, counted per write (sent as a weak ETag)
    versions: dict[str, int] = field(default_factory=dict)
    #: (method, path, headers) of every request that passed the key check
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.patients, self.faults, self.seen, self.requests = {}, [], {}, []
            self.versions, self.bodies = {}, []
            self.idempotent = True

    def writes(self) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if r[0] in ("POST", "PUT")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        if headers.get("x-api-key") != API_KEY:
            await _answer(send, 401, {"error": "bad key"})
            return
        self.requests.append((method, path, headers))
        query = dict(parse_qsl(scope["query_string"].decode()))
        if method in ("POST", "PUT"):
            self.bodies.append(json.loads(body))
            await self.write(send, method, path, json.loads(body), headers)
        elif path == "/api/patients":
            key = query.get("external_key")
            found = [p for p in self.patients.values() if p.get("external_key") == key]
            await _answer(send, 200, {"data": found})
        elif path.startswith("/api/patients/") and path[14:] in self.patients:
            record_id = path[14:]
            tag = {"ETag": f'W/"{self.versions.get(record_id, 0)}"'}
            await _answer(send, 200, {"data": self.patients[record_id]}, tag)
        else:
            await _answer(send, 404, {"error": "not found"})

    async def write(
        self, send: Send, method: str, path: str, record: dict[str, Any], headers: dict[str, str]
    ) -> None:
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault in ("429", "503", "500"):
            await _answer(send, int(fault), {"error": "busy"}, {"Retry-After": "7"})
            return
        if fault == "422":
            await _answer(send, 422, {"error": f"phone {record.get('phone')} is not valid"})
            return
        if fault == "drop-before":
            await _drop(send)
            return
        if fault == "409":
            await _answer(send, 409, {"error": "a request with this key is in progress"})
            return
        key = headers.get("idempotency-key")
        if self.idempotent and key and key in self.seen:
            await _answer(send, 200, {"data": self.patients[self.seen[key]]})
            return
        if method == "POST" and path == "/api/patients":
            record_id = f"P{len(self.patients) + 1}"
            status = 201
        elif method == "PUT" and path[14:] in self.patients:
            record_id, status = path[14:], 200
            if fault is not None and fault.startswith("race:"):
                # the front desk changes a field just before our write arrives
                name, value = fault[5:].split("=")
                self.patients[record_id][name] = value
                self.versions[record_id] = self.versions.get(record_id, 0) + 1
            match = headers.get("if-match")
            if match is not None and match != f'W/"{self.versions.get(record_id, 0)}"':
                await _answer(send, 412, {"error": "precondition failed"})
                return
        else:
            await _answer(send, 404, {"error": "not found"})
            return
        self.patients[record_id] = {**record, "id": record_id}
        if key:
            self.seen[key] = record_id
        if fault == "drop-after":
            await _drop(send)
            return
        if fault == "hang-after":
            await asyncio.sleep(3)  # well past the sink's timeout: the answer comes too late
        self.versions[record_id] = self.versions.get(record_id, 0) + 1
        tags = {"Location": f"/api/patients/{record_id}", "ETag": f'W/"{self.versions[record_id]}"'}
        await _answer(send, status, {"data": self.patients[record_id]}, tags)


async def _answer(
    send: Send, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def _drop(send: Send) -> None:
    """Promise a body, send a few bytes of it, and close the connection."""
    raw = [(b"content-type", b"application/json"), (b"content-length", b"200")]
    await send({"type": "http.response.start", "status": 201, "headers": raw})
    await send({"type": "http.response.body", "body": b'{"da', "more_body": True})


@dataclass(frozen=True, kw_only=True)
class Served:
    origin: str
    api: ClinicApi


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    api = ClinicApi()
    config = uvicorn.Config(
        api, host="127.0.0.1", port=0, log_level="critical", access_log=False, http="h11",
        lifespan="off", loop="asyncio", timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="clinic-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the clinic API did not start")
        time.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield Served(origin=f"http://{host}:{port}", api=api)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def api(served: Served) -> ClinicApi:
    served.api.reset()
    return served.api


WRITES = """\
        Patient:
          create:
            url: /patients
            body:
              family: "{name.family}"
              given: "{name.given}"
              phone: "{phone.mobile}"
              sex: "{gender}"
              external_key: "{key}"
              note: "Dr. {name.family}, called in"
            id_from: {id_from}
          update:
            url: /patients/{{id}}
            body:
              family: "{name.family}"
              given: "{name.given}"
              phone: "{phone.mobile}"
              sex: "{gender}"
              external_key: "{key}"
{extra}"""

CONFIG = """\
workspace: clinic
database: sqlite:///ehrbridge.db
data_sources:
  - id: clinic
    kind: rest
    base_url: {origin}/api
    auth: {{kind: api_key, header: X-Api-Key, key: {{env: CLINIC_KEY}}}}
    timeout: 5s
    resources:
      - type: Patient
        every: 5m
        path: /patients
        records: data
        fields:
          name.family: family
          name.given: given
          phone.mobile: {{path: phone, transform: phone}}
          gender: {{path: sex, transform: {{map: {{F: female, M: male, female: female}}}}}}
    outbound:
      rate: 50/s
      writes:
"""
LOOKUP = """\
          lookup:
            url: /patients?external_key={key}
            found: "length(data) > `0`"
            id_from: data[0].id
"""
IDEMPOTENT = """\
          idempotency_header: Idempotency-Key
          idempotent: true
"""
READ = """\
          read: {url: "/patients/{id}", record: data}
"""
CODES = """\
          codes: {gender: {female: F, male: M}}
"""


@pytest.fixture
async def build(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., RestSink]]:
    """Builds the sink from the runner config with ``extras`` in its writes entry."""
    monkeypatch.setenv("CLINIC_KEY", API_KEY)
    made: list[RestSink] = []

    def make(
        *extras: str,
        id_from: str = "data.id",
        origin: str | None = None,
        budgets: BudgetRegistry | None = None,
        timeout: str = "5s",
    ) -> RestSink:
        text = CONFIG.format(origin=origin or served.origin) + WRITES.replace(
            "{id_from}", id_from
        ).replace("{extra}", "".join(extras)).replace("{{id}}", "{id}")
        text = text.replace("    timeout: 5s\n", f"    timeout: {timeout}\n")
        (source,) = parse_config(text).data_sources
        sink = rest_sink(source, budgets=budgets)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


ENTITY = {
    "name.family": "Santos",
    "name.given": ["Ana", "M"],
    "phone.mobile": "+16175550101",
    "gender": "female",
}


def item(
    *,
    key: str = "ob-clinic-1",
    fields: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
    ref: str | None = None,
    result: dict[str, Any] | None = None,
    entity: bool = True,
) -> OutboxItem:
    """An item to write; ``entity=False``: no entity state, as the outbound feed sends an
    update."""
    now = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    fields = fields if fields is not None else {"phone.mobile": PHONE}
    payload: dict[str, Any] = {"fields": fields, "ref": ref}
    if entity:
        payload["entity"] = {**ENTITY, **fields}
    if base is not None:
        payload["base"] = base
    return outbox_item(
        workspace="clinic",
        sink="clinic",
        key=key,
        payload=payload,
        result=result,
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
        lease_until=now,
    )


async def test_a_create_sends_the_rendered_body_and_reads_the_id_back(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build()
    delivered = await sink.send(item())
    assert (delivered.ref, delivered.created, delivered.version) == ("Patient/P1", True, "1")
    stored = api.patients["P1"]
    # a whole-leaf name keeps its JSON type; text around names is text
    assert stored["given"] == ["Ana", "M"]
    assert stored["phone"] == PHONE
    assert stored["note"] == "Dr. Santos, called in"
    assert stored["external_key"] == "ob-clinic-1"


async def test_the_created_id_can_come_from_the_location_header(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(id_from="location")
    assert (await sink.send(item())).ref == "Patient/P1"


async def test_an_update_puts_to_the_record_by_its_id(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build()
    await sink.send(item(key="ob-create"))
    delivered = await sink.send(
        item(key="ob-update", fields={"name.family": "Silva"}, ref="Patient/P1")
    )
    assert (delivered.ref, delivered.created, delivered.version) == ("Patient/P1", False, "2")
    assert [(m, p) for m, p, _ in api.writes()] == [
        ("POST", "/api/patients"),
        ("PUT", "/api/patients/P1"),
    ]
    assert api.patients["P1"]["family"] == "Silva"


async def test_the_idempotency_header_carries_the_key_and_a_second_send_makes_no_copy(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(IDEMPOTENT)
    first = await sink.send(item())
    second = await sink.send(item())
    assert [h.get("idempotency-key") for _, _, h in api.writes()] == ["ob-clinic-1"] * 2
    assert first.ref == second.ref == "Patient/P1"
    assert len(api.patients) == 1


async def test_a_write_cut_off_after_it_landed_is_found_by_the_lookup(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(LOOKUP)
    api.faults = ["drop-after"]
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    assert caught.value.transient and caught.value.may_have_reached_sink
    found = await sink.lookup(item())
    assert found is not None and (found.ref, found.created) == ("Patient/P1", True)
    assert len(api.patients) == 1


async def test_a_write_cut_off_before_it_landed_is_not_found_and_sent_again_once(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(LOOKUP)
    api.faults = ["drop-before"]
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    assert caught.value.may_have_reached_sink
    assert await sink.lookup(item()) is None
    await sink.send(item())
    assert len(api.patients) == 1


async def test_an_in_doubt_write_with_no_way_to_tell_is_never_sent_blindly(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build()
    with pytest.raises(SinkError) as caught:
        await sink.lookup(item())
    assert not caught.value.transient
    assert UNKNOWN_OUTCOME in str(caught.value)
    assert api.requests == []


async def test_an_in_doubt_write_to_an_idempotent_sink_may_be_sent_again(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(IDEMPOTENT)
    api.faults = ["drop-after"]
    with pytest.raises(SinkError):
        await sink.send(item())
    assert await sink.lookup(item()) is None
    assert (await sink.send(item())).ref == "Patient/P1"
    assert len(api.patients) == 1


async def test_a_429_with_retry_after_is_transient_with_the_wait(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build()
    api.faults = ["429"]
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    error = caught.value
    assert (error.status, error.transient, error.retry_after) == (429, True, 7.0)
    assert not error.may_have_reached_sink
    assert api.patients == {}


async def test_a_429_pauses_the_sinks_budget_for_every_runner(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    database = await SQLiteDatabase.open(":memory:")
    try:
        pace = SQLiteRunnerStore(database)
        sink = build(budgets=BudgetRegistry(pace, "clinic"))
        await sink.send(item(key="ob-1"))  # under the budget, as any write
        api.faults = ["429"]
        with pytest.raises(SinkError) as caught:
            await sink.send(item(key="ob-2"))
        assert caught.value.retry_after == 7.0
        # the sink's budget is paused for every taker; the source's polling budget is not
        slot = timedelta(milliseconds=20)
        assert await pace.take_slot("clinic", sink_budget("clinic"), slot) > timedelta(0)
        assert await pace.take_slot("clinic", source_budget("clinic"), slot) == timedelta(0)
    finally:
        await database.close()


@pytest.mark.parametrize(("fault", "after"), [("503", 7.0), ("500", None)])
async def test_a_5xx_is_transient(
    api: ClinicApi,
    build: Callable[..., RestSink],
    fault: str,
    after: float | None,
) -> None:
    sink = build()
    api.faults = [fault]
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    assert (caught.value.status, caught.value.transient) == (int(fault), True)
    assert caught.value.retry_after == after


async def test_a_422_is_permanent_and_its_message_has_no_field_value(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build()
    api.faults = ["422"]
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    assert (caught.value.status, caught.value.transient) == (422, False)
    assert "POST /api/patients" in str(caught.value)
    assert PHONE not in str(caught.value)


async def test_no_connection_is_transient_and_never_reached_the_sink(
    build: Callable[..., RestSink],
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = build(origin=f"http://127.0.0.1:{port}")
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    assert caught.value.transient and not caught.value.may_have_reached_sink


async def test_an_update_over_a_newer_change_at_the_sink_is_a_conflict_not_a_write(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ)
    await sink.send(item(key="ob-create", fields={"phone.mobile": "+16175550101"}))
    api.patients["P1"]["phone"] = "+16175550177"  # the front desk changed it
    update = item(key="ob-update", ref="Patient/P1", base={"phone.mobile": "+16175550101"})
    with pytest.raises(SinkConflict) as caught:
        await sink.send(update)
    (conflict,) = caught.value.conflicts
    assert (conflict.field, conflict.ours, conflict.theirs) == (
        "phone.mobile",
        PHONE,
        "+16175550177",
    )
    assert PHONE not in str(caught.value)
    assert api.patients["P1"]["phone"] == "+16175550177"
    assert [m for m, _, _ in api.writes()] == ["POST"]


async def test_an_update_the_sink_already_holds_is_not_sent_again(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ)
    await sink.send(item(key="ob-create"))
    update = item(key="ob-update", ref="Patient/P1", base={"phone.mobile": "+16175550101"})
    delivered = await sink.send(update)
    assert (delivered.ref, delivered.created) == ("Patient/P1", False)
    assert [m for m, _, _ in api.writes()] == ["POST"]


async def test_an_in_doubt_update_is_looked_up_by_reading_the_record(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ)
    await sink.send(item(key="ob-create", fields={"phone.mobile": "+16175550101"}))
    update = item(key="ob-update", ref="Patient/P1", base={"phone.mobile": "+16175550101"})
    assert await sink.lookup(update) is None  # not there yet: send it again
    api.faults = ["drop-after"]
    with pytest.raises(SinkError) as caught:
        await sink.send(update)
    assert caught.value.may_have_reached_sink
    found = await sink.lookup(update)
    assert found is not None and found.ref == "Patient/P1"


async def test_read_back_says_whether_the_write_shows_at_the_sink(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ)
    delivered = await sink.send(item())
    synced = item(result=delivered.as_result())
    assert await sink.read_back(synced)
    api.patients["P1"]["phone"] = "+16175550177"
    assert not await sink.read_back(synced)
    del api.patients["P1"]
    assert not await sink.read_back(synced)


async def test_read_back_by_lookup_when_there_is_no_read(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(LOOKUP)
    assert not await sink.read_back(item())
    await sink.send(item())
    assert await sink.read_back(item())


async def test_a_wrong_key_is_a_permanent_credentials_error(
    api: ClinicApi,
    build: Callable[..., RestSink],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = build()
    monkeypatch.setenv("CLINIC_KEY", "wrong")
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    assert (caught.value.status, caught.value.transient) == (401, False)
    assert "wrong" not in str(caught.value)


def test_a_template_naming_no_entity_field_is_refused_at_load_with_its_line(
    served: Served,
) -> None:
    text = CONFIG.format(origin=served.origin) + WRITES.replace("{id_from}", "data.id").replace(
        "{extra}", ""
    ).replace("{{id}}", "{id}").replace('phone: "{phone.mobile}"', 'phone: "{phone.mobil}"', 1)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, name="runner.yaml")
    line = text.splitlines().index('              phone: "{phone.mobil}"') + 1
    (problem,) = caught.value.problems
    assert problem.startswith(
        f"runner.yaml:{line}: data_sources[0].outbound.writes.Patient.create.body.phone: "
    )
    assert "did you mean phone.mobile?" in problem


async def test_codes_are_written_as_the_sink_spells_them_and_compared_so(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ, CODES)
    await sink.send(item(key="ob-create"))
    assert api.patients["P1"]["sex"] == "F"
    # the sink still holds our base (F for female): not a conflict, the update is sent
    update = item(key="ob-update", ref="Patient/P1", fields={"gender": "male"},
                  base={"gender": "female"})  # fmt: skip
    await sink.send(update)
    assert api.patients["P1"]["sex"] == "M"
    # and now it holds ours: nothing more to send
    await sink.send(update)
    assert [m for m, _, _ in api.writes()] == ["POST", "PUT"]


async def test_without_codes_the_world_models_code_is_written(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build()
    await sink.send(item())
    assert api.patients["P1"]["sex"] == "female"


async def test_a_change_between_our_read_and_our_write_is_caught_by_if_match(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ)
    await sink.send(item(key="ob-create", fields={"phone.mobile": "+16175550101"}))
    api.faults = ["race:phone=+16175550177"]
    update = item(key="ob-update", ref="Patient/P1", base={"phone.mobile": "+16175550101"})
    with pytest.raises(SinkConflict) as caught:
        await sink.send(update)
    assert [c.field for c in caught.value.conflicts] == ["phone.mobile"]
    assert api.patients["P1"]["phone"] == "+16175550177"
    puts = [h for m, _, h in api.writes() if m == "PUT"]
    assert [h.get("if-match") for h in puts] == ['W/"1"']


async def test_an_unrelated_change_in_between_is_read_again_and_written_over_if_match(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ)
    await sink.send(item(key="ob-create", fields={"phone.mobile": "+16175550101"}))
    api.faults = ["race:family=Silva"]
    update = item(key="ob-update", ref="Patient/P1", base={"phone.mobile": "+16175550101"})
    delivered = await sink.send(update)
    assert api.patients["P1"]["phone"] == PHONE
    # what we do not change is written back as the sink holds it, not as our copy has it
    assert api.patients["P1"]["family"] == "Silva"
    puts = [h for m, _, h in api.writes() if m == "PUT"]
    assert [h.get("if-match") for h in puts] == ['W/"1"', 'W/"2"']
    assert delivered.version == "3"


async def test_a_409_for_a_key_still_in_progress_is_transient(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(IDEMPOTENT)
    api.faults = ["409"]
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    assert (caught.value.status, caught.value.transient) == (409, True)


async def test_a_409_without_an_idempotency_key_is_permanent(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build()
    api.faults = ["409"]
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    assert (caught.value.status, caught.value.transient) == (409, False)


async def test_a_record_that_keeps_changing_is_left_for_the_next_attempt(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ)
    await sink.send(item(key="ob-create", fields={"phone.mobile": "+16175550101"}))
    api.faults = ["race:family=Silva", "race:family=Sousa"]
    update = item(key="ob-update", ref="Patient/P1", base={"phone.mobile": "+16175550101"})
    with pytest.raises(SinkError) as caught:
        await sink.send(update)
    assert (caught.value.status, caught.value.transient) == (412, True)
    assert api.patients["P1"]["phone"] == "+16175550101"


async def test_a_timeout_after_the_write_was_sent_may_have_reached_the_sink(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(LOOKUP, timeout="1s")
    api.faults = ["hang-after"]
    with pytest.raises(SinkError) as caught:
        await sink.send(item())
    assert caught.value.transient and caught.value.may_have_reached_sink
    assert "timed out" in str(caught.value)
    found = await sink.lookup(item())
    assert found is not None and found.ref == "Patient/P1"


async def test_a_read_that_shows_none_of_the_fields_cannot_tell(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ)
    await sink.send(item(key="ob-create"))
    # the bodies do not place email: a read of the record says nothing about it
    update = item(key="ob-update", ref="Patient/P1", fields={"email": "ana@example.org"})
    synced = item(
        key="ob-update", fields={"email": "ana@example.org"}, result={"ref": "Patient/P1"}
    )
    with pytest.raises(SinkError, match="cannot tell"):
        await sink.read_back(synced)
    with pytest.raises(SinkError) as caught:
        await sink.lookup(update)
    assert UNKNOWN_OUTCOME in str(caught.value) and not caught.value.transient


async def test_an_update_without_the_entity_sends_only_what_it_knows(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build()
    await sink.send(item(key="ob-create"))
    await sink.send(item(key="ob-update", ref="Patient/P1", entity=False))
    # no null for the fields it neither changes nor knows
    assert api.bodies[-1] == {"phone": PHONE, "external_key": "ob-update"}


async def test_an_update_with_a_read_writes_back_what_it_does_not_change(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ, CODES)
    await sink.send(item(key="ob-create", fields={"phone.mobile": "+16175550101"}))
    update = item(key="ob-update", ref="Patient/P1", base={"phone.mobile": "+16175550101"},
                  entity=False)  # fmt: skip
    await sink.send(update)
    assert api.bodies[-1] == {
        "family": "Santos",
        "given": ["Ana", "M"],
        "phone": PHONE,
        "sex": "F",
        "external_key": "ob-update",
    }


async def test_a_read_record_is_compared_in_canonical_fields_through_the_sources_mapping(
    api: ClinicApi, build: Callable[..., RestSink]
) -> None:
    sink = build(READ)
    await sink.send(item(key="ob-create", fields={"phone.mobile": "+16175550101"}))
    api.patients["P1"]["phone"] = "(617) 555-0101"  # the API keeps its own format: no change
    update = item(key="ob-update", ref="Patient/P1", base={"phone.mobile": "+16175550101"})
    await sink.send(update)  # not a conflict
    assert api.patients["P1"]["phone"] == PHONE
    api.patients["P1"]["phone"] = "(617) 555-0199"  # ours, as the API formats it
    assert await sink.read_back(item(key="ob-update", result={"ref": "Patient/P1"}))
