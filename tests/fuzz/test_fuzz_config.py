"""Fuzzing the runner's config loader (issue 10): valid configs built from the config's own
structure, then mutated — wrong types, huge and negative numbers, bad URLs and durations, unknown
and missing keys, deep nesting, aliases, YAML tags, broken text, bytes that are not UTF-8, a BOM.

Whatever the file holds, :func:`load_config` returns a config or raises :class:`ConfigError`
whose every problem starts with ``file:line:``; no other exception, and no mutated value is
echoed back.
"""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrbridge.errors import ConfigError
from ehrbridge.fhir.mapping.resource_types import R4_RESOURCE_TYPES
from ehrbridge.runner.config import RunnerConfig
from ehrbridge.runner.configfile import load_config, parse_config

#: an existing folder for ``file_drop`` sources
FOLDER = tempfile.gettempdir()
#: put in as a value by some mutations (two words and a character JMESPath does not know, so
#: expressions fail on it): never shown in a problem, not even in part
CANARY_MARK = "zqx7canary"
CANARY = f"{CANARY_MARK} {CANARY_MARK}$"
NAME = "runner.yaml"
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --- valid configs, from the config's structure ----------------------------------------------

cadences = st.builds("{}{}".format, st.integers(1, 59), st.sampled_from(["s", "m", "h"])) | (
    st.sampled_from(["1h30m", "1d", "2500ms", "366d"])
)
short = st.builds("{}{}".format, st.integers(0, 59), st.sampled_from(["s", "m"]))
base_urls = st.sampled_from(
    [
        "https://ehr.example.org/fhir/R4",
        "http://127.0.0.1:8080/fhir",
        "https://[::1]:8443/base/",
        "HTTPS://Ehr.Example.org",
    ]
)
env_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True)
secrets = st.builds(lambda n: {"env": n}, env_names) | st.just({"file": "/run/secrets/key"})
hours = st.fixed_dictionaries(
    {"start": st.sampled_from(["07:00", "00:00", "22:30"]), "end": st.just("19:00")},
    optional={
        "days": st.sampled_from(["mon-fri", "sat,sun", ["mon", "wed"]]),
        "timezone": st.sampled_from(["UTC", "America/New_York", "Europe/Berlin"]),
    },
)
fhir_auth = st.one_of(
    st.just({"kind": "none"}),
    st.builds(lambda s: {"kind": "bearer", "token": s}, secrets),
    st.builds(lambda s: {"kind": "basic", "username": "runner", "password": s}, secrets),
    st.builds(
        lambda s, a: {
            "kind": "smart",
            "client_id": "ehrbridge",
            "token_url": "https://auth.example.org/token",
            "algorithm": a,
            "private_key": s,
        },
        secrets,
        st.sampled_from(["RS384", "ES384"]),
    ),
)
rest_auth = st.one_of(
    st.just({"kind": "none"}),
    st.builds(lambda s: {"kind": "api_key", "header": "X-Api-Key", "key": s}, secrets),
    st.builds(
        lambda s, c: {
            "kind": "oauth2",
            "client_id": "ehrbridge",
            "token_url": "https://auth.example.org/token",
            "client_auth": c,
            "client_secret": s,
        },
        secrets,
        st.sampled_from(["basic", "body"]),
    ),
)

_sink_keys = {
    "threshold": st.sampled_from([0.8, 0.95, 1]),
    "review_required": st.booleans(),
    "human_types": st.just(["MedicationOrder"]),
    "human_fields": st.just(["Patient.name.family"]),
    "rate": st.sampled_from(["5/s", "120/min", "0.5/s"]),
    "concurrency": st.integers(1, 64),
    "business_hours": hours,
    "on_conflict": st.sampled_from(["review", "dead"]),
    "retries": st.fixed_dictionaries(
        {},
        optional={
            "max_attempts": st.integers(1, 100),
            "max_age": st.sampled_from(["1m", "24h", "30d"]),
            "backoff": st.fixed_dictionaries(
                {}, optional={"base": st.just("500ms"), "max": st.sampled_from(["1m", "1d"])}
            ),
        },
    ),
}
#: the ``outbound:`` section of a fhir source (docs/sinks.md)
fhir_outbound = st.fixed_dictionaries(
    {}, optional={"entity_types": st.just(["Patient", "Appointment"]), **_sink_keys}
)
#: a rest sink's writes for the Appointment its resource polls
rest_writes = st.fixed_dictionaries(
    {
        "create": st.fixed_dictionaries(
            {
                "url": st.sampled_from(["/appointments", "/a/{start}?k={key}"]),
                "body": st.just(
                    {"when": "{start}", "state": "{status}", "ref": "key {key}", "n": [1, None]}
                ),
            },
            optional={"method": st.sampled_from(["POST", "PUT"]), "id_from": st.just("data.id")},
        )
    },
    optional={
        "update": st.just({"url": "/appointments/{id}", "body": {"state": "{status}"}}),
        "idempotency_header": st.just("Idempotency-Key"),
        "lookup": st.just({"url": "/appointments?k={key}", "found": "data", "id_from": "id"}),
        "read": st.just({"url": "/appointments/{id}", "record": "data"}),
        "codes": st.just({"status": {"booked": "BKD", "cancelled": "CXL"}}),
    },
)
rest_outbound = st.builds(
    lambda keys, writes: {**keys, "writes": {"Appointment": writes}},
    st.fixed_dictionaries({}, optional=_sink_keys),
    rest_writes,
)


def _fhir_resources(types: list[str], everies: list[str], sizes: list[int]) -> list[Any]:
    return [
        {"type": t, "every": e, "page_size": s}
        for t, e, s in zip(types, everies, sizes, strict=False)
    ]


fhir_sources = st.fixed_dictionaries(
    {
        "kind": st.just("fhir"),
        "base_url": base_urls,
        "auth": fhir_auth,
        "resources": st.builds(
            _fhir_resources,
            st.lists(st.sampled_from(sorted(R4_RESOURCE_TYPES)), min_size=1, max_size=4),
            st.lists(cadences, min_size=4, max_size=4),
            st.lists(st.integers(1, 10_000), min_size=4, max_size=4),
        ),
    },
    optional={
        "overlap": short,
        "backfill": st.sampled_from(["none", "export"]),
        "business_hours": hours,
        "outbound": fhir_outbound,
    },
)
rest_resources = st.fixed_dictionaries(
    {
        "type": st.just("Appointment"),
        "every": cadences,
        "path": st.sampled_from(["/appointments", "appointments/v2", "/a/b:list"]),
        "fields": st.just(
            {
                "start": {"path": "start_time", "transform": "datetime"},
                "status": {
                    "path": "state",
                    "transform": {"map": {"booked": "booked", "cxl": "cancelled"}},
                },
                "patient": {"path": "patient.mrn", "link": {"type": "Patient", "by": "mrn"}},
                "service_type": {"value": "General practice"},
            }
        ),
    },
    optional={
        "records": st.sampled_from(["data.items", "@", "results[*]"]),
        "id": st.just("appt_id"),
        "pagination": st.sampled_from(
            [
                {"style": "none"},
                {"style": "page", "param": "page", "size": 50, "start": 1},
                {"style": "cursor", "next": "meta.next_cursor", "param": "cursor"},
                {"style": "link"},
            ]
        ),
        "incremental": st.just({"param": "updated_since", "field": "updated_at"}),
        "params": st.just({"status": "all", "active": True}),
    },
)
rest_sources = st.fixed_dictionaries(
    {
        "kind": st.just("rest"),
        "base_url": base_urls,
        "auth": rest_auth,
        "resources": st.lists(rest_resources, min_size=1, max_size=1),
    },
    optional={
        "timezone": st.sampled_from(["UTC", "America/Chicago"]),
        "dayfirst": st.booleans(),
        "phone_region": st.sampled_from(["US", "GB"]),
        "headers": st.just({"X-Tenant": "clinic-7", "Accept-Language": "en"}),
        "timeout": st.sampled_from(["1s", "30s", "2m"]),
        "outbound": rest_outbound,
    },
)
file_drops = st.fixed_dictionaries(
    {"kind": st.just("file_drop"), "path": st.just(FOLDER), "every": cadences},
    optional={"business_hours": hours},
)


def _with_ids(sources: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": i, **s} for i, s in zip(ids, sources, strict=False)]


configs = st.fixed_dictionaries(
    {
        "workspace": st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True),
        "database": st.sampled_from(
            ["sqlite:///ehrbridge.db", "postgresql://app@db/ehr", {"env": "EHRBRIDGE_DB"}]
        ),
        "data_sources": st.builds(
            _with_ids,
            st.lists(fhir_sources | rest_sources | file_drops, max_size=3),
            st.lists(
                st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True),
                min_size=3,
                max_size=3,
                unique=True,
            ),
        ),
    },
    optional={
        "runner": st.fixed_dictionaries(
            {},
            optional={
                "lease_ttl": cadences,
                "refresh_every": cadences,
                "metrics": st.fixed_dictionaries(
                    {"port": st.integers(0, 65535)}, optional={"host": st.just("127.0.0.1")}
                ),
            },
        )
    },
)

# --- mutations --------------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


nasty = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 2**63, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "not a url",
            "file:///etc/passwd",
            "http://",
            "https://u:p@ehr.example.org/",
            "javascript:alert(1)",
            "http://[::1",
            "http://h:99999/",
            "https://ehr.example.org/fhir?x=1#y",
            "1ms",
            "0s",
            "99999999999999999999h",
            "-5m",
            "5 m",
            "1.5h",
            "",
            "NotAType",
            "patient",
            "((((((((((((((((((((a",
            "[?a==`1`]",
            "\x00\x07\u2028",
        ]
    ),
    st.integers(1, 60).map(_nested),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3),
    st.lists(st.integers() | st.text(max_size=8), max_size=3),
)


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a document."""
    found: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((value, key))
            found += _slots(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((value, index))
            found += _slots(item)
    return found


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with one to three of its slots replaced, removed or joined by another."""
    doc = copy.deepcopy(draw(configs))  # st.just values are shared between examples
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc)
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "replace", "canary", "remove", "unknown"]))
        if action == "replace":
            container[key] = draw(nasty)
        elif action == "canary":
            container[key] = CANARY
        elif action == "remove":
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.sampled_from(["polling", "since", "id2", "<<", ""]))] = draw(nasty)
    return doc


TAGS = [
    "!!int abc",
    "!!float x",
    "!!timestamp soon",
    "!!binary '%%%'",
    "!!python/object:os.system {}",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!bool maybe",
    "!!str",
    "!custom x",
    "!!merge x",
]


def _text_mutations(text: str) -> st.SearchStrategy[str]:
    lines = text.splitlines(keepends=True)
    where = st.integers(0, len(text))
    line_at = st.integers(0, len(lines))

    def insert(at: int, piece: str) -> str:
        return text[:at] + piece + text[at:]

    def new_line(at: int, piece: str) -> str:
        return "".join(lines[:at]) + piece + "".join(lines[at:])

    bomb = "".join(
        [f"b0: &b0 [{', '.join(['lol'] * 9)}]\n"]
        + [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]\n" for i in range(1, 9)]
    )
    return st.one_of(
        st.builds(lambda n: text[:n], where),  # cut short
        st.builds(insert, where, st.text(max_size=3)),
        st.builds(
            insert,
            where,
            st.sampled_from([":", "- ", "\t", "'", '"', "{", "]", "&a ", "*a", "#", "\n  "]),
        ),
        st.builds(new_line, line_at, st.sampled_from([bomb, "loop: &l [*l]\n", "x: *nowhere\n"])),
        st.builds(lambda at, n: insert(at, "[" * n + "]" * n), where, st.integers(30, 50_000)),
        st.builds(lambda at, tag: insert(at, " " + tag + " "), where, st.sampled_from(TAGS)),
        st.builds(
            lambda a, b: text.replace(a, b, 1),
            st.sampled_from(["every: ", "type: "]),
            st.sampled_from(TAGS),
        ),
        # the same, as a top-level key of their own: always YAML that composes
        st.builds(lambda n: f"{text}deep: {'[' * n}{']' * n}\n", st.integers(30, 50_000)),
        st.builds(
            lambda n: f"{text}deep:\n" + "".join(" " * i + "-\n" for i in range(n)),
            st.integers(30, 200),
        ),
        st.just(text + bomb),
        st.just(text + "loop: &l [a, {b: *l}]\n"),
        st.just(text + "---\nsecond: document\n"),
        st.just("\ufeff" + text),
        st.just(""),
    )


def _byte_mutations(data: bytes) -> st.SearchStrategy[bytes]:
    where = st.integers(0, len(data))
    return st.one_of(
        st.builds(
            lambda at, b: data[:at] + b + data[at:], where, st.binary(min_size=1, max_size=4)
        ),
        st.builds(
            lambda at, b: data[:at] + b + data[at:],
            where,
            st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf"]),
        ),
        st.just(b"\xef\xbb\xbf" + data),
        st.just(b"\xff\xfe" + data.decode().encode("utf-16-le")),
        st.just(data.decode().encode("utf-16")),
    )


# --- the property -----------------------------------------------------------------------------

_LOCATED = re.compile(r"^(?P<name>.+?):(?P<line>[1-9][0-9]*): \S")


def assert_located(load: Any, name: str) -> RunnerConfig | None:
    """``load()`` accepts, or raises a ConfigError whose every problem names file and line."""
    try:
        return load()  # type: ignore[no-any-return]
    except ConfigError as exc:
        problems = exc.problems
    assert problems
    for problem in problems:
        found = _LOCATED.match(problem)
        assert found and found["name"] == name, problem
        assert CANARY_MARK not in problem, problem
    return None


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@FUZZ
@given(configs)
def test_every_generated_valid_config_is_accepted(doc: dict[str, Any]) -> None:
    config = parse_config(_dump(doc), name=NAME)
    assert [s.id for s in config.data_sources] == [s["id"] for s in doc["data_sources"]]


@FUZZ
@given(mutated())
def test_a_mutated_config_is_accepted_or_refused_with_where(doc: dict[str, Any]) -> None:
    assert_located(lambda: parse_config(_dump(doc), name=NAME), NAME)


@FUZZ
@given(st.data())
def test_mutated_text_is_accepted_or_refused_with_where(data: st.DataObject) -> None:
    text = data.draw(_text_mutations(_dump(data.draw(configs))))
    assert_located(lambda: parse_config(text, name=NAME), NAME)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_bytes_are_accepted_or_refused_with_where(data: st.DataObject) -> None:
    raw = data.draw(_byte_mutations(_dump(data.draw(configs)).encode()))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / NAME
        path.write_bytes(raw)
        assert_located(lambda: load_config(path), str(path))


@pytest.mark.parametrize("levels", [6, 9, 12])
def test_alias_bombs_of_any_size_are_refused_with_where(levels: int) -> None:
    lines = [f"a0: &a0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    with pytest.raises(ConfigError) as caught:
        parse_config("\n".join(lines), name=NAME)
    assert caught.value.problems == [
        f"{NAME}:6: more than 100,000 values once its aliases are expanded"
    ]
