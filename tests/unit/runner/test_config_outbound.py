"""A data source's ``outbound:`` section in the runner config: every key, its default and its
bounds, and a clear problem with the line for every bad value (docs/sinks.md)."""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path

import pytest

from ehrbridge.budget import DEFAULT_BUDGET, RequestBudget
from ehrbridge.connectors.schedule import BusinessHours
from ehrbridge.errors import ConfigError
from ehrbridge.outbound.gates import SinkPolicy
from ehrbridge.outbound.settings import Backoff, OnConflict, RetrySettings, SinkSettings
from ehrbridge.runner.configfile import parse_config

FHIR = """\
workspace: clinic
database: sqlite:///ehrbridge.db
data_sources:
  - id: ehr
    kind: fhir
    base_url: https://ehr.example.org/fhir/R4
    resources:
      - {{type: Patient, every: 5m}}
    outbound:
{outbound}"""

REST = """\
workspace: clinic
database: sqlite:///ehrbridge.db
data_sources:
  - id: api
    kind: rest
    base_url: https://api.example.org/v1
    resources:
      - {{type: Patient, every: 5m, path: /patients, fields: {{name.family: last}}}}
    outbound:
{outbound}      writes:
        Patient:
{writes}"""

CREATE = """\
          create:
            url: /patients
            body: {last: "{name.family}", phone: "{phone.mobile}", ref: "{key}"}
            id_from: data.id
"""
UPDATE = """\
          update: {method: PATCH, url: "/patients/{id}", body: {phone: "{phone.mobile}"}}
"""


def fhir_with(outbound: str) -> str:
    return FHIR.format(outbound="".join(f"      {line}\n" for line in outbound.splitlines()))


def rest_with(writes: str = CREATE, outbound: str = "") -> str:
    lines = "".join(f"      {line}\n" for line in outbound.splitlines())
    return REST.format(outbound=lines, writes=writes)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, name="runner.yaml")
    return caught.value.problems


def assert_problem(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_an_empty_section_takes_every_default() -> None:
    (ehr,) = parse_config(FHIR.format(outbound="      {}\n")).data_sources
    assert ehr.outbound == SinkSettings()
    assert ehr.outbound.retries == RetrySettings(
        max_attempts=10,
        max_age=timedelta(hours=24),
        backoff=Backoff(base=timedelta(seconds=1), max=timedelta(minutes=5)),
    )
    assert ehr.outbound.budget == DEFAULT_BUDGET
    assert ehr.outbound.on_conflict is OnConflict.REVIEW


def test_a_source_without_the_section_is_no_sink() -> None:
    text = FHIR.replace("    outbound:\n", "").format(outbound="")
    (ehr,) = parse_config(text).data_sources
    assert ehr.outbound is None


def test_every_key_is_read() -> None:
    text = fhir_with(
        "entity_types: [Patient, Appointment]\n"
        "threshold: 0.9\n"
        "review_required: true\n"
        "human_types: [MedicationOrder]\n"
        "human_fields: [Patient.name.family]\n"
        "rate: 120/min\n"
        "concurrency: 3\n"
        'business_hours: {days: mon-fri, start: "08:00", end: "18:00", timezone: Europe/Berlin}\n'
        "on_conflict: dead\n"
        "retries: {max_attempts: 4, max_age: 2h, backoff: {base: 500ms, max: 1m}}\n"
    )
    (ehr,) = parse_config(text).data_sources
    settings = ehr.outbound
    assert settings is not None
    assert settings.entity_types == frozenset({"Patient", "Appointment"})
    assert settings.budget == RequestBudget(rate=2.0, concurrency=3)
    assert settings.business_hours == BusinessHours(
        days=frozenset(range(5)), start=time(8), end=time(18), timezone="Europe/Berlin"
    )
    assert settings.on_conflict is OnConflict.DEAD
    assert settings.retries == RetrySettings(
        max_attempts=4,
        max_age=timedelta(hours=2),
        backoff=Backoff(base=timedelta(milliseconds=500), max=timedelta(minutes=1)),
    )
    assert settings.policy("ehr") == SinkPolicy(
        sink="ehr",
        entity_types=frozenset({"Patient", "Appointment"}),
        threshold=0.9,
        review_required=True,
        human_types=frozenset({"MedicationOrder"}),
        human_fields=frozenset({"Patient.name.family"}),
    )


def test_two_loads_of_one_file_compare_equal() -> None:
    text = rest_with(CREATE + UPDATE, "rate: 5/s")
    assert parse_config(text) == parse_config(text)


@pytest.mark.parametrize(
    ("outbound", "expected"),
    [
        ("threshold: 0.5", "10: data_sources[0].outbound.threshold: expected a number above 0.5"),
        ("threshold: 1.5", "10: data_sources[0].outbound.threshold: expected a number above 0.5"),
        ("threshold: yes", "10: data_sources[0].outbound.threshold: expected a number"),
        ("threshold: .nan", "10: data_sources[0].outbound.threshold: expected a number"),
        ("review_required: maybe", "10: data_sources[0].outbound.review_required: expected true"),
        ("entity_types: Patient", "10: data_sources[0].outbound.entity_types: expected a list"),
        ("entity_types: [patient]", "10: data_sources[0].outbound.entity_types[0]: expected an"),
        ("entity_types: [Patinet]", "did you mean Patient?"),
        ("entity_types: [Widget]", "data_sources[0].outbound.entity_types[0]: not a first-class"),
        ("human_types: [x]", "10: data_sources[0].outbound.human_types[0]: expected an entity"),
        ("human_fields: [Patient]", "10: data_sources[0].outbound.human_fields[0]: expected"),
        ("rate: 5", "10: data_sources[0].outbound.rate: expected a rate such as 5/s"),
        ("rate: 0/s", "10: data_sources[0].outbound.rate: a rate must be above zero"),
        ("rate: 5000/s", "10: data_sources[0].outbound.rate: a rate must be at most 1000/s"),
        ("concurrency: 0", "10: data_sources[0].outbound.concurrency: expected a whole number"),
        ("concurrency: 65", "10: data_sources[0].outbound.concurrency: expected a whole number"),
        ("business_hours: {start: 25}", "10: data_sources[0].outbound.business_hours: missing"),
        (
            'business_hours: {start: "08:00", end: "09:00", days: [funday]}',
            "business_hours.days: exp",
        ),
        ("on_conflict: ignore", "10: data_sources[0].outbound.on_conflict: expected review"),
        ("retries: 3", "10: data_sources[0].outbound.retries: expected a mapping"),
        ("retries: {max_attempts: 0}", "outbound.retries.max_attempts: expected a whole number"),
        ("retries: {max_attempts: 101}", "outbound.retries.max_attempts: expected a whole"),
        ("retries: {max_age: 30s}", "outbound.retries.max_age: expected at least 1m"),
        ("retries: {max_age: 60d}", "outbound.retries.max_age: expected at most 30d"),
        ("retries: {backoff: {base: 1ms}}", "outbound.retries.backoff.base: expected at least"),
        ("retries: {backoff: {base: 1m, max: 30s}}", "retries.backoff.max: expected at least 1m"),
        ("retries: {backoff: {max: 2d}}", "outbound.retries.backoff.max: expected at most 1d"),
        ("retries: {backoff: {cap: 1m}}", "backoff.cap: unknown key 'cap'"),
        ("retries: {max_attempt: 3}", "unknown key 'max_attempt'; did you mean max_attempts?"),
        ("treshold: 0.9", "10: data_sources[0].outbound.treshold: unknown key 'treshold'; did"),
        ("writes: {}", "10: data_sources[0].outbound.writes: only a rest sink has writes"),
    ],
)
def test_a_bad_value_names_its_key_and_line(outbound: str, expected: str) -> None:
    assert_problem(fhir_with(outbound), expected)


def test_a_bare_key_is_a_mapping_problem() -> None:
    assert_problem(FHIR.format(outbound="      - 1\n"), "outbound: expected a mapping")


def test_a_file_drop_source_is_no_sink(tmp_path: object) -> None:
    text = (
        "workspace: clinic\ndatabase: sqlite:///x.db\ndata_sources:\n"
        f"  - {{id: drop, kind: file_drop, path: {tmp_path}, every: 30s, outbound: {{}}}}\n"
    )
    assert_problem(text, "4: data_sources[0].outbound: a file_drop source takes no writes")


# --- a rest sink's writes ------------------------------------------------------------------


def test_a_rest_sink_takes_the_types_it_has_writes_for() -> None:
    (api,) = parse_config(rest_with(CREATE + UPDATE)).data_sources
    assert api.outbound is not None
    assert api.outbound.entity_types == frozenset({"Patient"})
    writes = api.outbound.writes_for("Patient")
    assert writes is not None and writes.create is not None and writes.update is not None
    assert (writes.create.method, writes.create.id_from) == ("POST", "data.id")
    assert writes.update.method == "PATCH"
    assert writes.create.body.names == {"name.family", "phone.mobile", "key"}
    assert api.outbound.writes_for("Appointment") is None


def test_a_full_writes_entry_is_read() -> None:
    writes = (
        CREATE
        + UPDATE
        + "          idempotency_header: Idempotency-Key\n"
        + "          idempotent: true\n"
        + '          lookup: {url: "/patients?ref={key}", found: "length(data) > `0`", '
        + 'id_from: "data[0].id"}\n'
        + '          read: {url: "/patients/{id}", record: data}\n'
    )
    (api,) = parse_config(rest_with(writes)).data_sources
    assert api.outbound is not None
    entry = api.outbound.writes_for("Patient")
    assert entry is not None and entry.lookup is not None and entry.read is not None
    assert (entry.idempotency_header, entry.idempotent) == ("Idempotency-Key", True)
    assert (entry.lookup.method, entry.lookup.found) == ("GET", "length(data) > `0`")
    assert entry.read.record == "data"


def test_a_lookup_may_name_the_key_in_its_body() -> None:
    lookup = '          lookup: {method: POST, url: /search, found: hits, id_from: "hits[0]", '
    text = rest_with(CREATE + lookup + 'body: {ref: "{key}"}}\n')
    (api,) = parse_config(text).data_sources
    entry = api.outbound.writes_for("Patient") if api.outbound else None
    assert entry is not None and entry.lookup is not None and entry.lookup.body is not None
    assert entry.lookup.body.names == {"key"}


def test_codes_are_read() -> None:
    (api,) = parse_config(
        rest_with(CREATE + "          codes: {gender: {female: F}}\n")
    ).data_sources
    assert api.outbound is not None
    entry = api.outbound.writes_for("Patient")
    assert entry is not None and entry.codes == (("gender", (("female", "F"),)),)


def _line_of(text: str, piece: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if piece in line)


@pytest.mark.parametrize(
    ("writes", "where", "expected"),
    [
        (
            CREATE.replace("{phone.mobile}", "{phone.mobil}"),
            "Patient.create.body.phone",
            "no Patient field (did you mean phone.mobile?)",
        ),
        (
            CREATE.replace("{phone.mobile}", "{id}"),
            "Patient.create.body.phone",
            "{id} is known only for an update or a read",
        ),
        (CREATE.replace("{phone.mobile}", "{phone"), "create.body.phone", "an unmatched {"),
        (CREATE.replace("{phone.mobile}", "{phone.mobile!r}"), "body.phone", "no format"),
        (CREATE.replace("{phone.mobile}", "{}"), "create.body.phone", "empty braces"),
        (CREATE.replace("{phone.mobile}", "{a[0]}"), "create.body.phone", "a field path like"),
        (CREATE.replace("url: /patients", "url: https://x.org/p"), "create.url", "no scheme"),
        (CREATE.replace("url: /patients", "url: '/p/{name}'"), "create.url", "no Patient field"),
        (CREATE.replace("id_from: data.id", "id_from: 'data.['"), "create.id_from", "JMESPath"),
        (CREATE.replace("            id_from: data.id\n", "            method: GET\n"),
         "create.method", "expected POST, PUT or PATCH"),
        (CREATE.replace("            id_from: data.id\n", "            budy: {}\n"),
         "create.budy", "unknown key 'budy'; did you mean body?"),
        (CREATE.replace("body: {last", "body: 'x' #"), "create.body", "expected a mapping"),
        (UPDATE.replace('"/patients/{id}"', "/patients"), "update.url", "names the record as {id}"),
        ("          delete: {url: /p}\n", "Patient.delete", "unknown key 'delete'"),
        ("          idempotent: true\n", "Patient", "give create, update or both"),
        (CREATE + "          idempotent: true\n", "Patient.idempotent", "name the idempotency_h"),
        (CREATE + "          idempotency_header: Host\n", "idempotency_header", "a header"),
        (CREATE + "          idempotent: 1\n", "Patient.idempotent", "expected true or false"),
        (CREATE + '          lookup: {url: "/p?k={key}", found: ok}\n', "Patient.lookup",
         "a lookup of creates needs id_from"),
        (CREATE + '          lookup: {url: "/p", found: ok, id_from: id}\n', "lookup.url",
         "finds the write by its {key}"),
        (CREATE + '          lookup: {url: "/p?k={key}", id_from: id}\n', "Patient.lookup",
         "missing key 'found'"),
        (CREATE + '          lookup: {url: "/p?k={key}", found: ok, id_from: id, method: PUT}\n',
         "lookup.method", "expected GET or POST"),
        (CREATE + '          read: {url: "/patients"}\n', "read.url", "names the record as {id}"),
        (CREATE + "          codes: {gender: {femme: F}}\n", "codes.gender", "not a code of this"),
        (CREATE.replace("            url: /patients\n", ""), "Patient.create", "missing key 'url'"),
        (CREATE.replace('ref: "{key}"', "big: .inf"), "create.body.big", "expected JSON values"),
        (UPDATE.replace("PATCH", "DELETE"), "update.method", "expected POST, PUT or PATCH"),
        (UPDATE.replace('"{phone.mobile}"', '"{key"'), "update.body.phone", "an unmatched {"),
        (CREATE + '          read: {url: "/p/{id}", method: PUT}\n', "read.method", "GET or POST"),
        (CREATE + '          read: {url: "/p/{id}", records: x}\n', "read.records", "did you mean"),
        (CREATE + '          lookup: {url: "/p", found: ok, id_from: id, body: {k: "{id}"}}\n',
         "lookup.body.k", "{id} is known only for an update"),
        (CREATE + '          lookup: {url: "/p", found: ok, id_from: id, body: 3}\n',
         "lookup.body", "expected a mapping"),
        (CREATE + "          codes: {gendr: {female: F}}\n", "codes.gendr", "did you mean gender?"),
        (CREATE + "          codes: {gender: {female: [F]}}\n", "codes.gender", "plain values"),
        (CREATE + "          codes: {gender: F}\n", "codes.gender", "expected a mapping"),
        (CREATE + "          codes: {key: {a: b}}\n", "codes.key", "id and key are not coded"),
        (CREATE + "          codes: [gender]\n", "Patient.codes", "expected a mapping of fields"),
        (CREATE + '          read: {url: "/p/{id}", record: "a[", }\n', "read.record", "JMESPath"),
    ],
)  # fmt: skip
def test_a_bad_write_names_its_key_and_line(writes: str, where: str, expected: str) -> None:
    text = rest_with(writes)
    found = problems(text)
    assert any(f"{where}: " in p and expected in p for p in found), found
    for problem in found:
        assert problem.startswith("runner.yaml:")


def test_a_bad_template_names_the_line_of_its_leaf() -> None:
    writes = (
        "          create:\n"
        "            url: /patients\n"
        "            body:\n"
        "              last: '{name.family}'\n"
        "              contact:\n"
        "                phone: '{phone.mobil}'\n"
    )
    text = rest_with(writes)
    (problem,) = problems(text)
    line = _line_of(text, "{phone.mobil}")
    assert problem.startswith(
        f"runner.yaml:{line}: data_sources[0].outbound.writes.Patient.create.body.contact.phone:"
    )


def test_an_open_entity_type_takes_any_field_path() -> None:
    writes = CREATE.replace("{phone.mobile}", "{colour.name}")
    text = rest_with(writes).replace("        Patient:\n", "        Widget:\n")
    (api,) = parse_config(text).data_sources
    assert api.outbound is not None and api.outbound.entity_types == frozenset({"Widget"})


def test_a_type_like_a_first_class_one_is_taken_for_a_typo() -> None:
    text = rest_with().replace("        Patient:\n", "        Patinet:\n")
    assert_problem(text, "outbound.writes.Patinet: not a first-class entity type (did you mean")


def test_listed_types_need_writes() -> None:
    text = rest_with(CREATE, "entity_types: [Patient, Appointment]")
    assert_problem(text, "outbound.entity_types: Appointment has no entry in writes")


def test_a_rest_sink_needs_writes() -> None:
    text = rest_with().replace("      writes:\n        Patient:\n" + CREATE, "      rate: 5/s\n")
    assert_problem(text, "data_sources[0].outbound.writes: a rest sink needs writes")


def test_problems_never_show_the_value() -> None:
    secret = "hunter2secret"
    text = rest_with(CREATE.replace("{phone.mobile}", "{" + secret + "}"))
    for problem in problems(text):
        assert secret not in problem


def test_the_examples_in_the_doc_load() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "sinks.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        text = "workspace: clinic\ndatabase: sqlite:///ehrbridge.db\n" + block
        (source,) = parse_config(text, name="sinks.md").data_sources
        assert source.outbound is not None


def test_a_rest_sink_need_not_be_polled() -> None:
    resources = "    resources:\n      - {type: Patient, every: 5m, path: /patients, "
    text = rest_with().replace(resources + "fields: {name.family: last}}\n", "")
    (api,) = parse_config(text).data_sources
    assert api.resources == () and api.outbound is not None
