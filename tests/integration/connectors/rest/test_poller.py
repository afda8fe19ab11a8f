"""The REST poller against three real HTTP sources, into the world model on both backends.

The same appointments come from three differently shaped APIs (tests/rest_sources.py) with three
paging styles and three kinds of auth, and must come out as the same canonical values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ehrbridge.connectors.rest.poller import RestPoller, client_for
from ehrbridge.connectors.source import DataSourceConfig, ResourceConfig
from ehrbridge.http.retry import RetryPolicy
from ehrbridge.runner.config import RunnerConfig
from ehrbridge.runner.configfile import parse_config
from ehrbridge.runner.polling import poll_once
from ehrbridge.runner.store import RunnerStore
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel
from tests.rest_sources import (  # the fixtures are used by name
    APPOINTMENTS,
    CONFIG,
    PATIENTS,
    SECRETS,
    RestServer,
    rest_server,  # noqa: F401
    rest_sources,  # noqa: F401
)

WS = "clinic"
COMPARED = ("start", "end", "status", "appointment_type", "patient")


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def config(server: RestServer) -> RunnerConfig:
    return parse_config(CONFIG.format(origin=server.origin, database="sqlite:///unused.db"))


def resource(cfg: RunnerConfig, source: str, kind: str) -> tuple[DataSourceConfig, ResourceConfig]:
    found = next(s for s in cfg.data_sources if s.id == source)
    return found, next(r for r in found.resources if r.type == kind)


class Harness:
    """A poller on the store, and the config of the three sources."""

    def __init__(self, backend: Backend, server: RestServer) -> None:
        store = self.store = backend.worldmodel
        self.server = server
        self.cfg = config(server)
        self.cursors: RunnerStore = backend.runner
        fast = RetryPolicy(max_retries=2, backoff=0.0)
        self.poller = RestPoller(
            WorldModel(store, WS), self.cursors, client_for=lambda s: client_for(s, retry=fast)
        )

    async def poll(self, source: str, kind: str = "Appointment") -> Any:
        return await poll_once(
            self.poller, *resource(self.cfg, source, kind), workspace=WS, clock=self.poller.clock
        )

    async def cursor(self, source: str) -> str | None:
        return await self.cursors.get_cursor(WS, source, "Appointment")

    async def appointments(self, source: str, ids: list[str]) -> list[dict[str, Any]]:
        keys = [
            RecordKey(data_source=source, resource_type="Appointment", external_id=i) for i in ids
        ]
        entities = await self.store.record_entities(WS, keys)
        out = []
        for key in keys:
            entity_type, entity_id = entities[key]
            state = await self.store.get_state(WS, entity_type, entity_id)
            assert state is not None
            out.append(state)
        return [s.values for s in out]

    async def patient_refs(self) -> list[str]:
        refs = []
        for patient in PATIENTS:
            (state,) = await self.store.find(WS, f"mrn:{patient['mrn']}", "Patient")
            refs.append(f"Patient/{state.entity_id}")
        return refs


@pytest.fixture
async def harness(backend: Backend, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h = Harness(backend, request.getfixturevalue("rest_sources"))
    yield h
    await h.poller.aclose()


ALPHA_IDS = [f"A-{1001 + i}" for i in range(len(APPOINTMENTS))]
BETA_IDS = [str(7001 + i) for i in range(len(APPOINTMENTS))]
GAMMA_IDS = [f"g{i + 1}" for i in range(len(APPOINTMENTS))]


async def test_three_differently_shaped_sources_normalise_to_the_same_appointments(
    harness: Harness,
) -> None:
    patients = await harness.poll("alpha", "Patient")
    assert patients.ok, patients.error
    assert patients.fetched == 2
    refs = await harness.patient_refs()
    expected = [
        {**{k: a[k] for k in COMPARED if k != "patient"}, "patient": refs[a["patient"]]}
        for a in APPOINTMENTS
    ]
    for source, ids in (("alpha", ALPHA_IDS), ("beta", BETA_IDS), ("gamma", GAMMA_IDS)):
        outcome = await harness.poll(source)
        assert outcome.ok, outcome.error
        assert outcome.fetched == len(APPOINTMENTS) and outcome.events == len(APPOINTMENTS)
        got = [
            {k: v for k, v in values.items() if k in COMPARED}
            for values in await harness.appointments(source, ids)
        ]
        assert got == expected, source
    # Each source's record is an entity of its own, with that source as provenance.
    (state,) = [
        s
        for s in [
            await harness.store.get_state(WS, "Appointment", e[1])
            for e in (
                await harness.store.record_entities(
                    WS,
                    [RecordKey(data_source="gamma", resource_type="Appointment", external_id="g1")],
                )
            ).values()
        ]
        if s is not None
    ]
    assert state.fields["start"].source.id == "gamma"
    assert state.fields["start"].source.ref == "Appointment/g1"
    assert state.fields["start"].confidence == 1.0
    # the free text is kept as the description, its category is the canonical type
    assert state.values["description"] == "Annual physical exam"
    assert state.values["appointment_type"] == "checkup"
    # the patients were split into given and family names, the phone made E.164
    (ana,) = await harness.store.find(WS, "mrn:M100", "Patient")
    assert ana.values["name.family"] == "Santos" and ana.values["name.given"] == ["Ana", "M"]
    assert ana.values["phone.mobile"] == "+16175550101" and ana.values["birth_date"] == "1984-03-12"


async def test_a_repoll_writes_zero_events_and_a_change_writes_one(harness: Harness) -> None:
    await harness.poll("alpha", "Patient")
    for source in ("alpha", "beta", "gamma"):
        assert (await harness.poll(source)).ok
    before = (await harness.store.counts(WS)).events
    for source in ("alpha", "beta", "gamma"):
        again = await harness.poll(source)
        assert again.ok and again.events == 0, (source, again)
        # every record read again is known by its id and version (or digest): none is mapped
        assert again.unchanged == again.fetched > 0
    assert (await harness.store.counts(WS)).events == before
    # With the same version (etag) a record is skipped before it is mapped...
    alpha = harness.server.sources.alpha
    alpha[1] |= {"state": "booked", "updated_at": "2026-11-20T07:00:00Z"}
    same = await harness.poll("alpha")
    # (two are read: the changed one and the newest, inside the overlap)
    assert same.ok and same.events == 0 and same.unchanged == same.fetched == 2
    # ...and a new version is mapped and stored: one event, asserting only what changed.
    alpha[1] |= {"etag": '"4"'}
    changed = await harness.poll("alpha")
    assert changed.ok and changed.events == 1 and changed.fetched == 1
    (values,) = await harness.appointments("alpha", ["A-1002"])
    assert values["status"] == "booked"


async def test_malformed_records_are_reported_with_their_position_and_the_good_ones_kept(
    harness: Harness,
) -> None:
    await harness.poll("alpha", "Patient")
    alpha = harness.server.sources.alpha
    alpha[2] = alpha[2] | {"start_time": "the 5th at noonish"}  # page 2, record 0
    alpha[4] = {k: v for k, v in alpha[4].items() if k != "appt_id"}  # page 3, record 0
    alpha.insert(4, "not an object")  # type: ignore[arg-type]  # page 3, record 0; id-less → 1
    outcome = await harness.poll("alpha")
    assert not outcome.ok and outcome.fetched == 6
    problems = [str(p) for p in harness.poller.problems[("alpha", "Appointment")]]
    assert problems == [
        "page 2 record 0 (id A-1003): start: datetime: not a date or time this transform can read",
        "page 3 record 0: the record is not a JSON object",
        "page 3 record 1: id (appt_id): missing, or not a string or number",
    ]
    assert outcome.error == f"3 records not stored, first: {problems[0]}"
    assert "noonish" not in str(outcome.error)
    # the good ones are stored
    values = await harness.appointments("alpha", ["A-1001", "A-1002", "A-1004"])
    assert [v["appointment_type"] for v in values] == ["checkup", "followup", "routine"]
    # A failed record without a change time holds the cursor where it was (nowhere yet).
    assert await harness.cursor("alpha") is None


async def test_a_required_link_holds_the_record_until_its_patient_arrives(
    harness: Harness,
) -> None:
    text = CONFIG.format(origin=harness.server.origin, database="sqlite:///unused.db")
    harness.cfg = parse_config(
        text.replace(
            "patient: {path: patient.mrn, link: {type: Patient, by: mrn}}",
            "patient: {path: patient.mrn, link: {type: Patient, by: mrn}, required: true}",
        )
    )
    early = await harness.poll("alpha")
    assert not early.ok and early.events == 0
    assert "patient: no Patient with that mrn" in str(early.error)
    assert await harness.cursor("alpha") is None
    await harness.poll("alpha", "Patient")
    later = await harness.poll("alpha")
    assert later.ok and later.events == len(APPOINTMENTS)


async def test_the_incremental_cursor_is_sent_with_the_overlap_and_moves_to_the_newest(
    harness: Harness,
) -> None:
    sources = harness.server.sources
    for source in ("alpha", "beta", "gamma"):
        assert (await harness.poll(source)).ok
    newest = "2026-11-19T14:00:00.000000+00:00"
    assert [await harness.cursor(s) for s in ("alpha", "beta", "gamma")] == [newest] * 3
    assert "updated_since" not in sources.asked("alpha")[0]
    sources.requests.clear()
    for source in ("alpha", "beta", "gamma"):
        assert (await harness.poll(source)).ok
    # the stored cursor less the five-minute overlap, in each source's format
    assert sources.asked("alpha")[0]["updated_since"] == "2026-11-19T13:55:00Z"
    assert sources.asked("beta")[0]["modified_after"] == "2026-11-19T13:55:00Z"
    since = int(datetime(2026, 11, 19, 13, 55, tzinfo=UTC).timestamp())
    assert sources.asked("gamma")[0]["since"] == str(since)
    # only the records changed since were served (one page, then the empty stop)
    assert [p["page"] for p in sources.asked("alpha")] == ["1", "2"]


async def test_a_failed_record_keeps_the_cursor_before_it(harness: Harness) -> None:
    await harness.poll("alpha", "Patient")
    harness.server.sources.alpha[3] |= {"start_time": "soon"}  # updated 2026-11-19T13:00
    outcome = await harness.poll("alpha")
    assert not outcome.ok
    assert await harness.cursor("alpha") == "2026-11-19T12:59:59.999999+00:00"


GET = "GET /alpha/api/v2/appointments"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("503", f"RestUnavailable: {GET}: HTTP 503: still failing after 2 retries: HTTP 503"),
        ("html", f"RestProtocolError: {GET}: HTTP 200: expected JSON, got an HTML page (37 bytes)"),
        ("truncated", f"RestProtocolError: {GET}: HTTP 200: the body is not valid JSON"),
        ("not_list", f"RestProtocolError: {GET}: records (data.items) is an object, not a list"),
    ],
)
async def test_a_bad_response_fails_the_poll_and_leaves_the_cursor(
    harness: Harness, fault: str, expected: str
) -> None:
    assert (await harness.poll("alpha")).ok
    cursor = await harness.cursor("alpha")
    harness.server.sources.alpha[0] |= {"updated_at": "2026-11-21T00:00:00Z", "state": "cxl"}
    # on the second page, so the first page was read (and is stored) before the failure
    harness.server.sources.faults["alpha"] = (
        ["", fault, fault, fault] if fault == "503" else ["", fault]
    )
    outcome = await harness.poll("alpha")
    assert not outcome.ok
    assert str(outcome.error).startswith(expected), outcome.error
    assert await harness.cursor("alpha") == cursor


async def test_retry_after_is_honoured_and_the_poll_succeeds(harness: Harness) -> None:
    harness.server.sources.faults["gamma"] = ["429", "503"]
    outcome = await harness.poll("gamma")
    assert outcome.ok, outcome.error
    assert outcome.fetched == len(APPOINTMENTS)


async def test_oauth2_tokens_are_cached_and_fetched_again_once_on_401(harness: Harness) -> None:
    sources = harness.server.sources
    assert (await harness.poll("beta")).ok
    assert (await harness.poll("beta")).ok
    assert sources.tokens_issued == 1
    sources.tokens.clear()  # the source revokes the token
    outcome = await harness.poll("beta")
    assert outcome.ok, outcome.error
    assert sources.tokens_issued == 2


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("loop", "the next link points to a page already read"),
        ("elsewhere", "the next link points to another server"),
    ],
)
async def test_a_next_link_that_loops_or_leaves_the_host_is_refused(
    harness: Harness, fault: str, expected: str
) -> None:
    harness.server.sources.faults["gamma"] = [fault]
    outcome = await harness.poll("gamma")
    assert not outcome.ok and expected in str(outcome.error)
    assert await harness.cursor("gamma") is None


async def test_a_changed_mapping_maps_every_record_again(harness: Harness) -> None:
    assert (await harness.poll("gamma")).ok
    text = CONFIG.format(origin=harness.server.origin, database="sqlite:///unused.db")
    harness.cfg = parse_config(
        text.replace("          description: description\n", "          comment: description\n")
    )
    await harness.cursors.set_cursor(WS, "gamma", "Appointment", "2026-01-01T00:00:00+00:00")
    again = await harness.poll("gamma")
    assert again.ok and again.unchanged == 0 and again.events == len(APPOINTMENTS)
    (values,) = await harness.appointments("gamma", ["g1"])
    assert values["comment"] == "Annual physical exam" and "description" not in values


async def test_a_link_by_the_sources_own_record_id(harness: Harness) -> None:
    text = CONFIG.format(origin=harness.server.origin, database="sqlite:///unused.db")
    harness.cfg = parse_config(
        text.replace("type: Patient, by: mrn}", "type: Patient, by: record}")
    )
    await harness.poll("alpha", "Patient")
    assert (await harness.poll("alpha")).ok
    refs = await harness.patient_refs()
    values = await harness.appointments("alpha", ALPHA_IDS)
    assert [v["patient"] for v in values] == [refs[a["patient"]] for a in APPOINTMENTS]


async def test_a_phone_two_patients_share_links_to_neither(harness: Harness) -> None:
    sources = harness.server.sources
    sources.patients[1]["phone"] = sources.patients[0]["phone"]
    await harness.poll("alpha", "Patient")
    assert (await harness.poll("gamma")).ok
    values = await harness.appointments("gamma", GAMMA_IDS)
    # Ana's phone is now Chidi's too: her appointments are not linked; nobody has Chidi's old one
    assert all("patient" not in v for v in values)
