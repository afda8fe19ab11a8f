"""The runner's config: a valid file, and errors that name the key path and the line."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest

from ehrbridge.runner.config import (
    FILES,
    ConfigError,
    MetricsConfig,
    load_config,
    parse_config,
)
from ehrbridge.runner.secrets import SecretRef

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
        ("  - id: lab\n", "  - id: ehr\n", "config.yaml:13: data_sources[1].id: duplicate"),
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

    from ehrbridge.runner.schedule import BusinessHours, parse_days

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
            "config.yaml:24: runner.metrics.token: required when host is not loopback "
            "(10.0.0.5): scrapers from elsewhere present it as a Bearer token, e.g. "
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
        f"config.yaml:6: data_sources[0].path: '{missing}' is not an existing folder"
    ]
    a_file = tmp_path / "a.json"
    a_file.write_text("{}")
    assert errors_of(
        file_drop(f"    kind: file_drop\n    path: {a_file}\n    every: 0s\n    base_url: x\n")
    ) == [
        "config.yaml:8: data_sources[0].base_url: unknown key 'base_url'",
        f"config.yaml:6: data_sources[0].path: '{a_file}' is not an existing folder",
        "config.yaml:7: data_sources[0].every: expected a duration above zero",
    ]
