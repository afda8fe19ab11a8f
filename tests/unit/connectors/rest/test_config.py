"""A ``kind: rest`` source in the runner's config: a valid one, and errors with key and line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ehrbridge.connectors.rest.spec import FieldMap, Incremental, Link, Paging, Transform
from ehrbridge.errors import ConfigError
from ehrbridge.runner.configfile import parse_config
from tests.paths import DOCS

VALID = """\
workspace: clinic
database: sqlite:///ehrbridge.db
data_sources:
  - id: sched
    kind: rest
    base_url: https://sched.example.com/api/v2
    auth: {kind: api_key, header: X-Api-Key, key: {env: SCHED_KEY}}
    timezone: America/New_York
    resources:
      - type: Appointment
        every: 1m
        path: /appointments
        records: data.items
        id: appt_id
        pagination: {style: cursor, next: meta.next_cursor, param: cursor}
        incremental: {param: updated_since, field: updated_at}
        fields:
          start: {path: start_time, transform: datetime}
          status:
            path: state
            transform: {map: {booked: booked, cxl: cancelled}, default: proposed}
          patient: {path: patient.mrn, link: {type: Patient, by: mrn}}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.problems


def test_a_valid_rest_source() -> None:
    (source,) = parse_config(VALID).data_sources
    assert source.kind == "rest" and source.rest is not None
    assert source.rest.timezone == "America/New_York" and source.rest.phone_region == "US"
    assert source.auth.kind == "api_key" and source.auth.settings == {"header": "X-Api-Key"}
    (resource,) = source.resources
    assert resource.type == "Appointment" and resource.every == timedelta(minutes=1)
    spec = resource.rest
    assert spec is not None
    assert (spec.path, spec.records, spec.id, spec.version) == (
        "/appointments",
        "data.items",
        "appt_id",
        None,
    )
    assert spec.paging == Paging(style="cursor", param="cursor", next="meta.next_cursor")
    assert spec.incremental == Incremental(param="updated_since", field="updated_at")
    assert spec.fields == (
        FieldMap(name="start", path="start_time", transforms=(Transform(name="datetime"),)),
        FieldMap(
            name="status",
            path="state",
            transforms=(
                Transform(
                    name="map",
                    table=(("booked", "booked"), ("cxl", "cancelled")),
                    default="proposed",
                    has_default=True,
                ),
            ),
        ),
        FieldMap(name="patient", path="patient.mrn", link=Link(type="Patient", by="mrn")),
    )


def test_two_loads_of_one_file_are_equal_so_poll_tasks_are_not_restarted() -> None:
    assert parse_config(VALID) == parse_config(VALID)


def test_the_short_forms() -> None:
    text = VALID.replace(
        "start: {path: start_time, transform: datetime}",
        "start: start_time\n          service_type: {value: General practice}",
    )
    (source,) = parse_config(text).data_sources
    spec = source.resources[0].rest
    assert spec is not None
    assert spec.fields[0] == FieldMap(name="start", path="start_time")
    assert spec.fields[1] == FieldMap(name="service_type", value="General practice")


P = "config.yaml:{line}: data_sources[0]"
R = "config.yaml:{line}: data_sources[0].resources[0]"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("records: data.items", "records: data.[items",
         R.format(line=13) + ".records: not a valid JMESPath expression: it ends too early"),
        ("id: appt_id", "id: appt..id",
         R.format(line=14) + ".id: not a valid JMESPath expression: Expecting: "
         "['quoted_identifier', 'unquoted_identifier', 'lbracket', 'lbrace'], "
         "got: dot at position 5"),
        ("style: cursor, next: meta.next_cursor, param: cursor", "style: pages",
         R.format(line=15) + ".pagination.style: expected one of none, page, offset, cursor, link, "
         "next_url"),
        ("style: cursor, next: meta.next_cursor, param: cursor", "style: cursor",
         R.format(line=15) + ".pagination: missing key 'next'"),
        ("style: cursor, next: meta.next_cursor, param: cursor", "style: link, param: page",
         R.format(line=15) + ".pagination.param: unknown key 'param'"),
        ("transform: datetime", "transform: datetyme",
         R.format(line=18) + ".fields.start.transform: unknown transform; "
         "expected one of boolean, date, datetime, integer, join, keywords, list, lower, "
         "map, name, number, phone, prefix, split, string, strip, upper"),
        ("cxl: cancelled", "cxl: canceled",
         R.format(line=21) + ".fields.status.transform.map: a value is not a code of this "
         "field; use proposed, pending, booked, arrived, fulfilled, cancelled, noshow, "
         "entered-in-error, checked-in, waitlist"),
        ("by: mrn", "by: ssn",
         R.format(line=22) + ".fields.patient.link.by: expected one of record, mrn, phone, email, "
         "identifier"),
        ("start: {path: start_time, transform: datetime}", "start: {path: start_time, value: x}",
         R.format(line=18) + ".fields.start: give either path (JMESPath into the record) or value "
         "(a constant)"),
        ("start: {path", "Start: {path",
         R.format(line=18) + ".fields.Start: not a canonical field path like 'name.family' "
         "(docs/entities.md)"),
        ("start: {path: start_time, transform: datetime}",
         "start: {path: start_time, transform: {keywords: {checkup: ['(']}}}",
         R.format(line=18) + ".fields.start.transform.keywords.checkup: not a valid pattern: "
         "missing ), unterminated subpattern at position 0"),
        ("start: {path: start_time, transform: datetime}",
         "start: {path: start_time, transform: {phone: XX}}",
         R.format(line=18) + ".fields.start.transform.phone: expected a region code such as US "
         "or GB"),
        ("field: updated_at}", "field: updated_at, format: rfc}",
         R.format(line=16) + ".incremental.format: expected iso, date, epoch or epoch_ms"),
        ("      - type: Appointment\n", "      - type: appointment\n",
         R.format(line=10) + ".type: expected an entity type such as Appointment"),
        ("        path: /appointments\n", "",
         R.format(line=10) + ": missing key 'path'"),
        ("        path: /appointments\n", "        path: /appointments\n        page_size: 50\n",
         R.format(line=13) + ".page_size: a rest resource sets its page size in pagination.size"),
        ("        path: /appointments\n", "        path: /appointments\n        limit: 50\n",
         R.format(line=13) + ".limit: unknown key 'limit'"),
        ("key: {env: SCHED_KEY}", "key: abc123",
         P.format(line=7) + ".auth.key: inline secrets are not allowed; use {env: NAME} or "
         "{file: PATH}"),
        ("kind: api_key, header: X-Api-Key, key: {env: SCHED_KEY}",
         "kind: smart, client_id: x, token_url: 'https://x.test/t', private_key: {env: K}",
         P.format(line=7) + ".auth.kind: a rest source takes none, basic, bearer, api_key, oauth2"),
        ("timezone: America/New_York", "timezone: Mars/Base",
         P.format(line=8) + ".timezone: expected an IANA time zone such as America/New_York"),
        ("    timezone: America/New_York\n",
         "    timezone: America/New_York\n    headers: {Authorization: Bearer x}\n",
         P.format(line=9) + ".headers.Authorization: credentials belong in auth, as references"),
        ("    timezone: America/New_York\n", "    timezone: America/New_York\n    path: /x\n",
         P.format(line=9) + ".path: unknown key 'path'"),
    ],
)  # fmt: skip
def test_each_error_names_key_and_line(old: str, new: str, expected: str) -> None:
    assert old in VALID
    assert errors_of(VALID.replace(old, new, 1)) == [expected]


def test_a_type_polled_twice_from_one_source_is_refused() -> None:
    start = VALID.index("      - type: Appointment")
    text = VALID + VALID[start:]
    assert errors_of(text) == [
        "config.yaml:23: data_sources[0].resources[1].type: this type is polled from another "
        "endpoint of this source already"
    ]


def test_every_problem_is_listed_at_once() -> None:
    text = VALID.replace("records: data.items", "records: '['").replace("by: mrn", "by: ssn")
    assert [p.split(":")[1] for p in errors_of(text)] == ["13", "22"]


def test_the_rest_keys_are_refused_on_a_fhir_source() -> None:
    text = VALID.replace("kind: rest", "kind: fhir")
    assert P.format(line=8) + ".timezone: unknown key 'timezone'" in errors_of(text)


def test_the_example_in_the_docs_is_valid() -> None:
    doc = (DOCS / "rest-connector.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    (source,) = parse_config(example, name="rest-connector.md").data_sources
    assert source.kind == "rest" and [r.type for r in source.resources] == [
        "Patient",
        "Appointment",
    ]


TZ = "    timezone: America/New_York\n"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("https://sched.example.com/api/v2", "sched.example.com/api",
         P.format(line=6) + ".base_url: expected an absolute http or https URL such as "
         "https://ehr.example.org/fhir"),
        ("every: 1m", "every: 1ms", R.format(line=11) + ".every: expected at least 1s: a poll "
         "runs at most once a second (docs/runner.md)"),
        ("path: /appointments", "path: https://elsewhere.example/x",
         R.format(line=12) + ".path: expected a path under the base URL such as /appointments"),
        ("path: /appointments", "path: /appointments?all=1",
         R.format(line=12) + ".path: expected a path under the base URL such as /appointments"),
        ("param: cursor}", "param: cursor, size: 100000000000000000000}",
         R.format(line=15) + ".pagination.size: expected a whole number from 1 to 10,000"),
        ("param: cursor}", "param: cursor, max_pages: 0}",
         R.format(line=15) + ".pagination.max_pages: expected a whole number from 1 to 1,000,000"),
        (TZ, TZ + "    timeout: 1ms\n", P.format(line=9) + ".timeout: expected at least 1s"),
        (TZ, TZ + "    timeout: 99999999999999999999999h\n",
         P.format(line=9) + ".timeout: longer than the longest duration allowed, 366d"),
        (TZ, TZ + "    phone_region: [US]\n",
         P.format(line=9) + ".phone_region: expected a region code such as US or GB"),
        (TZ, TZ + "    headers: {X-Tenant: \"a\\nb\"}\n",
         P.format(line=9) + ".headers.X-Tenant: a header value is one line of printable text"),
        (TZ, TZ + "    headers: {X Tenant: a}\n",
         P.format(line=9) + ".headers.X Tenant: not an HTTP header name"),
        ("header: X-Api-Key", "header: X Api Key",
         P.format(line=7) + ".auth.header: expected an HTTP header name such as X-Api-Key"),
        ("records: data.items", "records: " + "(" * 600 + "a" + ")" * 600,
         R.format(line=13) + ".records: a JMESPath expression is at most 500 characters"),
        ("records: data.items", "records: '" + "(" * 240 + "a" + ")" * 240 + "'", None),
        ("booked: booked", "booked: booked, '[': booked", None),
        # a JMESPath error names the kind of token, not the token (it is part of the value)
        ("records: data.items", "records: 'secret7 secret7'",
         R.format(line=13) + ".records: not a valid JMESPath expression: unexpected "
         "unquoted_identifier at position 8"),
        ("records: data.items", "records: 'secret7$'",
         R.format(line=13) + ".records: not a valid JMESPath expression: an unknown character "
         "or an unclosed quote at position 7"),
    ],
)  # fmt: skip
def test_values_the_runner_cannot_use_are_refused(old: str, new: str, expected: str | None) -> None:
    assert old in VALID
    text = VALID.replace(old, new, 1)
    if expected is None:  # an edge the loader accepts
        parse_config(text)
    else:
        assert errors_of(text) == [expected]


def test_a_pattern_too_long_for_the_regex_parser_is_a_config_error() -> None:
    # 400 nested groups make re.compile raise RecursionError: refused by length before that.
    deep = "(" * 400 + "a" + ")" * 400
    text = VALID.replace(
        "transform: {map: {booked: booked, cxl: cancelled}, default: proposed}",
        f"transform: {{keywords: {{booked: ['{deep}']}}}}",
    )
    assert errors_of(text) == [
        R.format(line=21) + ".fields.status.transform.keywords.booked: a pattern is at most 500 "
        "characters"
    ]
