"""The runner's config: a valid file, and errors that name the key path and the line."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest

from ehrbridge.connectors.source import SecretRef
from ehrbridge.errors import ConfigError
from ehrbridge.runner.config import MetricsConfig
from ehrbridge.runner.configfile import FILES, load_config, parse_config
from ehrbridge.runner.yamlfile import read_yaml
from tests.paths import DOCS

VALID = """\
workspace: clinic
database: sqlite:///ehrbridge.db
data_sources:
  - id: ehr
    kind: fhir
    base_url: https://ehr.example.org/fhir/R4
    auth: {kind: bearer, token: {env: EHR_TOKEN}}
    overlap: 2m
    business_hours: {days: mon-fri, start: "07:00", end: "19:00", timezone: America/New_York}
    resources:
      - {type: Patient, every: 5m}
      - {type: Appointment, every: 30s, page_size: 50}
  - id: lab
    kind: fhir
    base_url: https://lab.example.org/fhir
    auth:
      kind: basic
      username: runner
      password: {file: /run/secrets/lab}
    resources:
      - type: Observation
        every: 1h
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.problems


def test_a_valid_file() -> None:
    config = parse_config(VALID)
    assert config.workspace == "clinic" and config.database == "sqlite:///ehrbridge.db"
    ehr, lab = config.data_sources
    assert ehr.auth.kind == "bearer" and ehr.auth.secrets["token"].env == "EHR_TOKEN"
    assert ehr.overlap == timedelta(minutes=2) and lab.overlap == timedelta(minutes=5)
    assert [(r.type, r.every, r.page_size) for r in ehr.resources] == [
        ("Patient", timedelta(minutes=5), 100),
        ("Appointment", timedelta(seconds=30), 50),
    ]
    assert ehr.business_hours is not None
    assert ehr.business_hours.days == frozenset(range(5))
    assert (ehr.business_hours.start, ehr.business_hours.end) == (time(7), time(19))
    assert lab.business_hours is None
    assert lab.auth.settings == {"username": "runner"}
    assert lab.auth.secrets["password"].file == Path("/run/secrets/lab")


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text(VALID.replace("every: 1h", "every: hourly"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{path}:22: data_sources[1].resources[0].every: not a duration: use a number and a "
        "unit (ms, s, m, h, d), e.g. 30s, 5m, 1h"
    ]


def test_an_inline_secret_is_refused_without_showing_it() -> None:
    text = VALID.replace("password: {file: /run/secrets/lab}", "password: hunter2-very-secret")
    problems = errors_of(text)
    assert problems == [
        "config.yaml:19: data_sources[1].auth.password: inline secrets are not allowed; "
        "use {env: NAME} or {file: PATH}"
    ]
    assert "hunter2" not in str(problems)


def test_a_password_in_the_database_url_is_refused() -> None:
    text = VALID.replace("sqlite:///ehrbridge.db", "postgresql://app:s3cret@db/ehr")
    (problem,) = errors_of(text)
    assert problem == (
        "config.yaml:2: database: a password in the URL is not allowed (no inline secrets): give "
        "the whole URL as a secret, e.g. database: {env: EHRBRIDGE_DB} or {file: PATH}"
    )
    assert "s3cret" not in problem


def test_unknown_keys_are_named_with_their_line() -> None:
    text = VALID.replace("    overlap: 2m\n", "    overlap: 2m\n    polling: fast\n")
    text = text.replace("page_size: 50}", "page_size: 50, since: 2020}")
    assert errors_of(text) == [
        "config.yaml:9: data_sources[0].polling: unknown key 'polling'",
        "config.yaml:13: data_sources[0].resources[1].since: unknown key 'since'",
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("kind: fhir", "kind: soap", "config.yaml:5: data_sources[0].kind: expected fhir, rest"),
        ("{kind: bearer,", "{kind: magic,", "config.yaml:7: data_sources[0].auth.kind: expected"),
        ("every: 5m}", "every: 0s}", "config.yaml:11: data_sources[0].resources[0].every: "),
        ("page_size: 50", "page_size: -1", "config.yaml:12: data_sources[0].resources[1].page"),
        ("days: mon-fri", "days: weekdays", "config.yaml:9: data_sources[0].business_hours.days"),
        ("America/New_York", "Mars/Base", "config.yaml:9: data_sources[0].business_hours.tim"),
        ('start: "07:00"', "start: noon", "config.yaml:9: data_sources[0].business_hours.sta"),
        ("  - id: lab\n", "  - id: ehr\n", "config.yaml:13: data_sources[1].id: the same id as an"),
        ("token: {env: EHR_TOKEN}", "token: {vault: x}", "config.yaml:7: data_sources[0].auth.tok"),
        ("database: sqlite:///ehrbridge.db\n", "", "config.yaml:1: missing key 'database'"),
        ("overlap: 2m", "backfill: bulk", "config.yaml:8: data_sources[0].backfill: expected ex"),
    ],
)
def test_each_error_names_key_and_line(old: str, new: str, expected: str) -> None:
    assert old in VALID
    problems = errors_of(VALID.replace(old, new, 1))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_fhir_source_may_start_with_a_bulk_export() -> None:
    config = parse_config(VALID.replace("overlap: 2m", "backfill: export", 1))
    assert [s.backfill for s in config.data_sources] == ["export", "none"]


def test_every_problem_is_listed() -> None:
    text = VALID.replace("kind: fhir", "kind: soap").replace("every: 1h", "every: never")
    assert len(errors_of(text)) == 3


def test_bad_yaml_names_the_line() -> None:
    (problem,) = errors_of("workspace: clinic\ndata_sources: [\n")
    assert problem.startswith("config.yaml:3: ")


def test_a_missing_env_secret_names_the_reference_not_a_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config(VALID)
    token = config.data_sources[0].auth.secrets["token"]
    monkeypatch.delenv("EHR_TOKEN", raising=False)
    with pytest.raises(Exception, match=r"config.yaml:7: data_sources\[0\].auth.token: "):
        token.resolve()
    monkeypatch.setenv("EHR_TOKEN", "tok-123-secret")
    assert token.resolve() == "tok-123-secret"
    assert "tok-123-secret" not in repr(config) + str(config)


def test_a_file_secret_is_read_at_use(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("pa55word\n")
    ref = SecretRef(file=path, where="x")
    assert ref.resolve() == "pa55word"
    assert "pa55word" not in repr(ref)


def test_business_hours_in_a_time_zone_and_past_midnight() -> None:
    from datetime import UTC, datetime

    from ehrbridge.connectors.schedule import BusinessHours, parse_days

    new_york = BusinessHours(
        days=parse_days("mon-fri"), start=time(7), end=time(19), timezone="America/New_York"
    )
    # 11:30 UTC on Monday 23 Nov 2026 is 06:30 in New York: not yet open, opens at 12:00 UTC
    early = datetime(2026, 11, 23, 11, 30, tzinfo=UTC)
    assert not new_york.is_open(early)
    assert new_york.next_open(early) == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    night = BusinessHours(days=parse_days("fri"), start=time(22), end=time(6))
    assert night.is_open(datetime(2026, 11, 27, 23, tzinfo=UTC))  # Friday night
    assert night.is_open(datetime(2026, 11, 28, 5, tzinfo=UTC))  # early Saturday, same window
    assert not night.is_open(datetime(2026, 11, 28, 23, tzinfo=UTC))  # Saturday night


def test_the_runner_section_sets_the_timing() -> None:
    config = parse_config(VALID + "runner: {lease_ttl: 30s, refresh_every: 2m}\n")
    assert config.timing.lease_ttl == timedelta(seconds=30)
    assert config.timing.refresh_every == timedelta(minutes=2)
    assert parse_config(VALID).timing.lease_ttl == timedelta(minutes=5)
    assert errors_of(VALID + "runner: {lease: 30s}\n") == [
        "config.yaml:23: runner.lease: unknown key 'lease'"
    ]


def test_runner_reconcile_cadence() -> None:
    assert parse_config(VALID).timing.reconcile_every == timedelta(minutes=5)
    config = parse_config(VALID + "runner: {reconcile_every: 30s}\n")
    assert config.timing.reconcile_every == timedelta(seconds=30)
    with pytest.raises(ConfigError, match=r"runner\.reconcile_every: expected at least"):
        parse_config(VALID + "runner: {reconcile_every: 10ms}\n")


def test_the_runner_section_can_serve_metrics() -> None:
    config = parse_config(VALID + "runner:\n  lease_ttl: 30s\n  metrics: {port: 9464}\n")
    assert config.metrics == MetricsConfig(host="127.0.0.1", port=9464)
    assert config.timing.lease_ttl == timedelta(seconds=30)
    config = parse_config(
        VALID + "runner: {metrics: {host: 0.0.0.0, port: 0, token: {env: METRICS_TOKEN}}}\n"
    )
    assert config.metrics is not None and config.metrics.host == "0.0.0.0"  # noqa: S104
    assert config.metrics.token is not None and config.metrics.token.env == "METRICS_TOKEN"
    assert parse_config(VALID).metrics is None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "runner:\n  metrics: {port: 70000}\n",
            "config.yaml:24: runner.metrics.port: expected a port number from 0 to 65535",
        ),
        (
            "runner:\n  metrics: {port: http}\n",
            "config.yaml:24: runner.metrics.port: expected a port number from 0 to 65535",
        ),
        (
            "runner:\n  metrics:\n    port: 9464\n    path: /m\n",
            "config.yaml:26: runner.metrics.path: unknown key 'path'",
        ),
        (
            "runner:\n  metrics: {host: 127.0.0.1}\n",
            "config.yaml:24: runner.metrics: missing key 'port'",
        ),
        ("runner:\n  metrics: 9464\n", "config.yaml:24: runner.metrics: expected a mapping"),
        (
            "runner:\n  metrics: {host: 10.0.0.5, port: 9464}\n",
            "config.yaml:24: runner.metrics.token: required when host is not loopback: "
            "scrapers from elsewhere present it as a Bearer token, e.g. "
            "token: {env: METRICS_TOKEN}",
        ),
        (
            "runner:\n  metrics: {port: 9464, token: s3cret}\n",
            "config.yaml:24: runner.metrics.token: inline secrets are not allowed; use "
            "{env: NAME} or {file: PATH}",
        ),
    ],
)
def test_a_bad_metrics_section_names_key_and_line(section: str, expected: str) -> None:
    assert errors_of(VALID + section) == [expected]


def file_drop(lines: str) -> str:
    return f"workspace: clinic\ndatabase: sqlite:///x.db\ndata_sources:\n  - id: drop\n{lines}"


def test_a_file_drop_source_has_a_folder_and_a_cadence(tmp_path: Path) -> None:
    config = parse_config(file_drop(f"    kind: file_drop\n    path: {tmp_path}\n    every: 30s\n"))
    (drop,) = config.data_sources
    assert drop.kind == "file_drop" and drop.path == tmp_path and drop.base_url == ""
    assert [(r.type, r.every) for r in drop.resources] == [(FILES, timedelta(seconds=30))]


def test_a_file_drop_source_needs_an_existing_folder(tmp_path: Path) -> None:
    assert errors_of(file_drop("    kind: file_drop\n    every: 30s\n")) == [
        "config.yaml:4: data_sources[0]: missing key 'path'"
    ]
    missing = tmp_path / "nowhere"
    assert errors_of(file_drop(f"    kind: file_drop\n    path: {missing}\n    every: 30s\n")) == [
        "config.yaml:6: data_sources[0].path: not an existing folder"
    ]
    a_file = tmp_path / "a.json"
    a_file.write_text("{}")
    assert errors_of(
        file_drop(f"    kind: file_drop\n    path: {a_file}\n    every: 0s\n    base_url: x\n")
    ) == [
        "config.yaml:8: data_sources[0].base_url: unknown key 'base_url'",
        "config.yaml:6: data_sources[0].path: not an existing folder",
        "config.yaml:7: data_sources[0].every: expected at least 1s: a poll runs at most once a "
        "second (docs/runner.md)",
    ]


# --- files the loader must refuse quickly, with where (issue 10, defects 2 and 8) ----------------

HEAD = "workspace: clinic\ndatabase: sqlite:///x.db\n"


def alias_bomb(levels: int = 9) -> str:
    """Nine anchors, each aliasing the one before nine times: 9^9 values once expanded."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return HEAD + "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    # Measured on the graph of ten distinct nodes: a5 (line 8) is the first with more than
    # 100,000 values once expanded (9^6 of them), so the file is refused there.
    assert errors_of(alias_bomb()) == [
        "config.yaml:8: more than 100,000 values once its aliases are expanded"
    ]
    assert len(read_yaml(alias_bomb(5)).data["a4"]) == 9  # 9^5 values: read


def test_nesting_deeper_through_aliases_than_in_the_text_is_refused() -> None:
    lines = ["a0: &a0 " + "[" * 10 + "x" + "]" * 10]
    lines += [f"a{i}: &a{i} " + "[" * 10 + f"*a{i - 1}" + "]" * 10 for i in range(1, 5)]
    assert errors_of(HEAD + "\n".join(lines) + "\n") == [
        "config.yaml:7: nested more than 40 levels deep through aliases"
    ]


def test_too_many_aliases_are_refused() -> None:
    text = HEAD + "x: &x 1\nys: [" + ", ".join(["*x"] * 1001) + "]\n"
    assert errors_of(text) == ["config.yaml:4: more than 1000 aliases"]


def test_an_alias_inside_itself_is_refused() -> None:
    assert errors_of(HEAD + "loop: &loop [a, {b: *loop}]\n") == [
        "config.yaml:3: an alias inside the value it names"
    ]


@pytest.mark.parametrize("opener", ["[", "{a: ", "- "])
def test_deep_nesting_is_refused_with_its_line(opener: str) -> None:
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
    # Flow mappings deeper than about 1,000 characters are refused by PyYAML's scanner already.
    depth = {"[": 50_000, "{a: ": 100, "- ": 45}[opener]
    if opener == "- ":  # block style: each level one more indent, on its own line
        body = "\n" + "".join(" " * i + "-\n" for i in range(depth))
    else:
        body = opener * depth + "x" + closer * depth + "\n"
    assert errors_of(HEAD + "data_sources: " + body) == [
        "config.yaml:" + ("3" if opener != "- " else "43") + ": nested more than 40 levels deep"
    ]


def test_a_file_too_large_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text(VALID + "#" * 1_000_000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}:1: the file is larger than 1,000,000 bytes"]


def test_bytes_that_are_not_utf8_are_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "runner.yaml"
    path.write_bytes(VALID.replace("runner", "r\xfcnner").encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}:18: not UTF-8 text"]


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "runner.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load_config(path) == parse_config(VALID, name=str(path))
    assert parse_config("\ufeff" + VALID) == parse_config(VALID)


@pytest.mark.parametrize(
    "value",
    ["!!int abc", "!!timestamp soon", "!!binary '%%%'", "!!float x", "!!python/name:os.system",
     "1" * 5000],
)  # fmt: skip
def test_a_value_yaml_cannot_construct_is_named(value: str) -> None:
    problems = errors_of(VALID.replace("overlap: 2m", f"overlap: {value}"))
    assert problems[0].startswith("config.yaml:8: data_sources[0].overlap: "), problems
    assert "abc" not in str(problems) and "soon" not in str(problems)


def test_a_character_yaml_does_not_allow_is_named_by_line() -> None:
    assert errors_of(VALID.replace("runner", "run\x07ner")) == [
        "config.yaml:18: a character that YAML does not allow"
    ]


# --- values the runner cannot use (issue 10, defect 7) -------------------------------------------

P0 = "config.yaml:{line}: data_sources[0]"
CADENCE = "expected at least 1s: a poll runs at most once a second (docs/runner.md)"
NOT_HTTP = "expected an absolute http or https URL such as https://ehr.example.org/fhir"
BASE_URL = P0.format(line=6) + ".base_url: "
TOO_LONG = "longer than the longest duration allowed, 366d"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("https://ehr.example.org/fhir/R4", "not a url", BASE_URL + NOT_HTTP),
        ("https://ehr.example.org/fhir/R4", "file:///etc/passwd", BASE_URL + NOT_HTTP),
        ("https://ehr.example.org/fhir/R4", "https://", BASE_URL + NOT_HTTP),
        ("https://ehr.example.org/fhir/R4", "https://ehr:4x3/fhir",
         P0.format(line=6) + ".base_url: not a valid URL"),
        ("https://ehr.example.org/fhir/R4", "https://me:pw@ehr.example.org/fhir",
         P0.format(line=6) + ".base_url: a user or password in the URL is an inline secrets are "
         "not allowed; use {env: NAME} or {file: PATH}; put credentials in auth"),
        ("https://ehr.example.org/fhir/R4", "https://ehr.example.org/fhir?x=1",
         P0.format(line=6) + ".base_url: a base URL has no query or fragment"),
        ("https://ehr.example.org/fhir/R4", '"https://ehr.example.org/a b"',
         P0.format(line=6) + ".base_url: a URL has no spaces or control characters"),
        ("{type: Patient,", "{type: NotAType,", P0.format(line=11) + ".resources[0].type: not a "
         "FHIR R4 resource type (https://hl7.org/fhir/R4/resourcelist.html)"),
        ("{type: Patient,", "{type: Patients,", P0.format(line=11) + ".resources[0].type: not a "
         "FHIR R4 resource type (did you mean Patient? https://hl7.org/fhir/R4/resourcelist.html)"),
        ("every: 5m}", "every: 1ms}", P0.format(line=11) + ".resources[0].every: " + CADENCE),
        ("every: 5m}", "every: 999ms}", P0.format(line=11) + ".resources[0].every: " + CADENCE),
        ("every: 5m}", "every: 99999999999999999999h}",
         P0.format(line=11) + ".resources[0].every: " + TOO_LONG),
        ("every: 5m}", "every: 367d}", P0.format(line=11) + ".resources[0].every: " + TOO_LONG),
        ("overlap: 2m", "overlap: 1000000000000000000000000d",
         P0.format(line=8) + ".overlap: longer than the longest duration allowed, 366d"),
        ("page_size: 50", "page_size: 100000000000000000000000000000",
         P0.format(line=12) + ".resources[1].page_size: expected a whole number from 1 to 10,000"),
        ("page_size: 50", "page_size: 2.5",
         P0.format(line=12) + ".resources[1].page_size: expected a whole number from 1 to 10,000"),
        ("workspace: clinic", "workspace: My Clinic!", "config.yaml:1: workspace: expected "
         "lower-case letters, digits, _ and - (up to 63)"),
        ("  - id: ehr\n", "  - id: ehr one\n", P0.format(line=4) + ".id: expected letters, "
         "digits, _, . and - (up to 64), e.g. ehr"),
        ("{kind: bearer,", "{kind: [bearer],", P0.format(line=7) + ".auth.kind: expected one of "
         "none, basic, bearer, smart, api_key, oauth2"),
    ],
)  # fmt: skip
def test_a_value_the_runner_cannot_use_is_refused(old: str, new: str, expected: str) -> None:
    assert old in VALID
    assert errors_of(VALID.replace(old, new, 1)) == [expected]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("runner: {refresh_every: 1ms}", "config.yaml:23: runner.refresh_every: expected at "
         "least 1s"),
        ("runner: {lease_ttl: 0s}", "config.yaml:23: runner.lease_ttl: expected at least 1s"),
        ("runner: {lease_ttl: 9999999999999999d}",
         "config.yaml:23: runner.lease_ttl: longer than the longest duration allowed, 366d"),
    ],
)  # fmt: skip
def test_the_runner_timings_are_bounded(section: str, expected: str) -> None:
    assert errors_of(VALID + section + "\n") == [expected]


SMART = """\
workspace: clinic
database: sqlite:///x.db
data_sources:
  - id: lab
    kind: fhir
    base_url: https://lab.example.org/fhir
    auth:
      kind: smart
      client_id: ehrbridge
      token_url: https://lab.example.org/oauth/token
      algorithm: RS384
      private_key: {file: /run/secrets/lab-key.pem}
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("https://lab.example.org/oauth/token", "/oauth/token", ".token_url: " + NOT_HTTP),
        ("https://lab.example.org/oauth/token", "gopher://lab/token", ".token_url: " + NOT_HTTP),
        ("algorithm: RS384", "algorithm: HS256", ".algorithm: expected RS384 or ES384"),
    ],
)
def test_smart_settings_the_runner_cannot_use_are_refused(
    old: str, new: str, expected: str
) -> None:
    problems = errors_of(SMART.replace(old, new))
    assert problems == [
        f"config.yaml:{11 if 'algo' in old else 10}: data_sources[0].auth{expected}"
    ]


def test_a_file_drop_cadence_has_the_same_floor(tmp_path: Path) -> None:
    text = file_drop(f"    kind: file_drop\n    path: {tmp_path}\n    every: 10ms\n")
    assert errors_of(text) == ["config.yaml:7: data_sources[0].every: " + CADENCE]


def test_the_example_in_the_docs_is_valid(tmp_path: Path) -> None:
    doc = (DOCS / "runner.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(example.replace("/srv/ehrbridge/inbox", str(tmp_path)), name="runner.md")
    assert [s.id for s in config.data_sources] == ["ehr", "lab", "inbox"]


def test_empty_days_and_an_unreadable_tag_are_refused_with_the_line(tmp_path: Path) -> None:
    # both found by the config fuzzer: a TypeError and a KeyError instead of a ConfigError
    text = file_drop(
        f"    kind: file_drop\n    path: {tmp_path}\n    every: 30s\n"
        "    business_hours: {start: '07:00', end: '19:00', days: null}\n"
    )
    assert errors_of(text) == [
        "config.yaml:8: data_sources[0].business_hours.days: "
        "expected day names such as mon-fri or [sat, sun]"
    ]
    assert errors_of("workspace: clinic\ndatabase: !!bool maybe\n")[0] == (
        "config.yaml:2: database: a value that cannot be read as its YAML type"
    )
