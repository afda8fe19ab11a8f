"""Reading the runner's config file: data sources, their auth and resources, validated with the
line.

::

    workspace: clinic
    database: sqlite:///ehrbridge.db
    data_sources:
      - id: ehr
        kind: fhir
        base_url: https://ehr.example.org/fhir/R4
        auth: {kind: bearer, token: {env: EHR_TOKEN}}
        overlap: 5m
        business_hours: {days: mon-fri, start: "07:00", end: "19:00", timezone: America/New_York}
        resources:
          - {type: Patient, every: 5m}
          - {type: Appointment, every: 30s}
      - id: drop
        kind: file_drop
        path: /srv/ehrbridge/inbox
        every: 30s

A ``file_drop`` source has a ``path`` (an existing folder) and an ``every`` instead of a
``base_url`` and ``resources``: it becomes one resource, :data:`FILES`, at that cadence.

A ``rest`` source's resources each name an endpoint, its paging, incremental parameter and field
mappings (docs/rest-connector.md); :mod:`ehrbridge.connectors.rest.checks` checks those parts.

The optional ``runner:`` section holds timings and ``metrics: {port: 9464, host: 127.0.0.1}``.

The optional ``review:`` section runs the review loop (docs/review.md)::

    review:
      judge: grounding            # grounding (default), llm, or policy (grounding, then the LLM)
      timezone: America/New_York  # the clinic's zone: relative dates in a call resolve in it
      contradicted: reject        # reject (0.0) or human
      human_types: [MedicationOrder, AllergyIntolerance]   # always a human (these by default)
      human_fields: [Patient.name.family]
      catch_up: 500ms             # how often the log is read when nothing wakes the loop

Every error names the file, the line and the key path, e.g. ``config.yaml:14:
data_sources[1].auth.token: inline secrets are not allowed; use {env: NAME} or {file: PATH}``,
and never shows a value. Unknown keys are errors. Secrets are references only
(:class:`~ehrbridge.connectors.source.SecretRef`).

Only values the runner can use are accepted: absolute ``http``/``https`` URLs, FHIR R4 resource
types, cadences of at least :data:`MIN_EVERY`, durations up to a year, bounded page sizes. Any
file, however broken or hostile (an alias bomb, 50,000 levels of nesting, bytes that are not
UTF-8), ends in a :class:`ConfigError` quickly: reading is bounded (:mod:`.yamlfile`).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from ehrbridge.budget import DEFAULT_BUDGET, MAX_CONCURRENCY, RequestBudget, parse_rate
from ehrbridge.connectors.rest.checks import check_resource, check_settings
from ehrbridge.connectors.schedule import BusinessHours, parse_days
from ehrbridge.connectors.source import AuthConfig, DataSourceConfig, ResourceConfig, SecretRef
from ehrbridge.errors import ConfigError
from ehrbridge.fhir.mapping.resource_types import R4_RESOURCE_TYPES
from ehrbridge.review.loop import ReviewPolicy
from ehrbridge.review.verdicts import Route
from ehrbridge.runner.config import (
    JUDGES,
    LlmConfig,
    MetricsConfig,
    ReviewConfig,
    RunnerConfig,
    Timing,
)
from ehrbridge.runner.durations import format_duration, parse_duration
from ehrbridge.runner.sinkconfig import check_outbound
from ehrbridge.runner.yamlfile import LocatedYaml, YamlRefused, read_yaml

#: the one resource of a ``file_drop`` source: every file in its folder
FILES = "files"
_ENTITY_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
#: ``EntityType.field.path``: a field a review policy names
_ENTITY_FIELD = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}(\.[a-z_][a-z0-9_]{0,63})+$")
#: as the world model takes them (``worldmodel.events``)
_WORKSPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: a data source id names tasks, leases, metric labels and provenance
_SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: an HTTP header name (RFC 9110 token)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
#: the largest config file read, in bytes
MAX_BYTES = 1_000_000
#: the shortest cadence of a poll: more often is load on the source, not fresher data
MIN_EVERY = timedelta(seconds=1)
#: the shortest lease, config refresh and request timeout
MIN_TIMING = timedelta(seconds=1)
#: the shortest catch-up a review loop takes (a read of the log each time)
MIN_CATCH_UP = timedelta(milliseconds=100)
#: the largest page asked of a server
MAX_PAGE_SIZE = 10_000
INLINE_SECRET = "inline secrets are not allowed; use {env: NAME} or {file: PATH}"  # noqa: S105

#: per auth kind: its plain keys and its secret keys (references only)
_AUTH_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "none": (set(), set()),
    "basic": ({"username"}, {"password"}),
    "bearer": (set(), {"token"}),
    "smart": ({"client_id", "token_url", "key_id", "algorithm", "scope"}, {"private_key"}),
    "api_key": ({"header"}, {"key"}),
    "oauth2": ({"client_id", "token_url", "scope", "client_auth"}, {"client_secret"}),
}
#: the plain auth settings that must be one of a few values
_AUTH_CHOICES = {"algorithm": ("RS384", "ES384"), "client_auth": ("basic", "body")}
#: the auth kinds a ``rest`` source takes
_REST_AUTH = ("none", "basic", "bearer", "api_key", "oauth2")
#: the source-wide keys of a ``rest`` source beyond the common ones
_REST_SOURCE_KEYS = {"timezone", "dayfirst", "phone_region", "headers", "timeout"}
_REQUIRED_AUTH = {
    "basic": {"username", "password"},
    "bearer": {"token"},
    "smart": {"client_id", "token_url", "private_key"},
    "api_key": {"key"},
    "oauth2": {"client_id", "token_url", "client_secret"},
}


def load_config(path: Path) -> RunnerConfig:
    """Read and validate the config at ``path``; a :class:`ConfigError` lists every problem.

    At most :data:`MAX_BYTES` are read (a FIFO or ``/dev/zero`` ends too); UTF-8, with or
    without a byte-order mark.
    """
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config: {exc.strerror}"]) from None
    if len(data) > MAX_BYTES:
        raise ConfigError([f"{path}:1: the file is larger than {MAX_BYTES:,} bytes"])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text"]) from None
    return parse_config(text, name=str(path))


def parse_config(text: str, *, name: str = "config.yaml") -> RunnerConfig:
    """Validate config ``text`` (``name`` is used in errors)."""
    try:
        doc = read_yaml(text.removeprefix("\ufeff"))
    except YamlRefused as exc:
        where = f"{exc.path}: " if exc.path else ""
        raise ConfigError([f"{name}:{exc.line}: {where}{exc.problem}"]) from None
    checker = _Checker(doc, name)
    config = checker.config()
    if checker.problems:
        raise ConfigError(checker.problems)
    assert config is not None
    return config


class _Checker:
    """Walks the plain data, collecting every problem with its line."""

    def __init__(self, doc: LocatedYaml, name: str) -> None:
        self.doc = doc
        self.name = name
        self.problems = [f"{name}:{line}: {path}: {what}" for line, path, what in doc.problems]

    def fail(self, path: str, problem: str) -> None:
        where = f"{path}: " if path else ""
        self.problems.append(f"{self.name}:{self.doc.line(path)}: {where}{problem}")

    def mapping(
        self, value: Any, path: str, required: set[str], optional: set[str]
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, "expected a mapping")
            return None
        for key in value:
            if key not in required | optional:
                self.fail(_at(path, key), f"unknown key {key!r}")
        for key in sorted(required - value.keys()):
            self.fail(path, f"missing key {key!r}")
        return value

    def text(self, value: Any, path: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.fail(path, "expected a non-empty string")
        return None

    def duration(
        self, value: Any, path: str, *, at_least: timedelta = timedelta(0), what: str = ""
    ) -> timedelta | None:
        try:
            if not isinstance(value, str):
                raise ValueError("expected a duration such as 30s, 5m or 1h")
            found = parse_duration(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return None
        if found < at_least:
            self.fail(path, f"expected at least {format_duration(at_least)}{what}")
            return None
        return found

    def cadence(self, value: Any, path: str) -> timedelta | None:
        """A poll's ``every``: at least :data:`MIN_EVERY` (docs/runner.md)."""
        return self.duration(
            value,
            path,
            at_least=MIN_EVERY,
            what=": a poll runs at most once a second (docs/runner.md)",
        )

    def url(self, value: Any, path: str) -> str | None:
        """An absolute ``http``/``https`` URL with a host, and no credentials, query or
        fragment (a value the HTTP client can use as it is)."""
        text = self.text(value, path)
        if text is None:
            return None
        problem = _url_problem(text)
        if problem is not None:
            self.fail(path, problem)
            return None
        return text

    def number(self, value: Any, path: str, least: int, most: int) -> int | None:
        """A whole number from ``least`` to ``most``."""
        if isinstance(value, int) and not isinstance(value, bool) and least <= value <= most:
            return value
        self.fail(path, f"expected a whole number from {least:,} to {most:,}")
        return None

    def secret(self, value: Any, path: str) -> SecretRef | None:
        if not isinstance(value, dict):
            # Never echo the value: it may be the secret itself.
            self.fail(path, INLINE_SECRET)
            return None
        if set(value) not in ({"env"}, {"file"}):
            self.fail(path, "a secret reference is {env: NAME} or {file: PATH}, nothing else")
            return None
        where = f"{self.name}:{self.doc.line(path)}: {path}"
        ref = self.text(value.get("env") or value.get("file"), _at(path, next(iter(value))))
        if ref is None:
            return None
        if "env" in value:
            return SecretRef(env=ref, where=where)
        return SecretRef(file=Path(ref), where=where)

    def config(self) -> RunnerConfig | None:
        top = self.mapping(
            self.doc.data, "", {"workspace", "database"}, {"data_sources", "runner", "review"}
        )
        if top is None:
            return None
        workspace = self.text(top.get("workspace"), "workspace") if "workspace" in top else None
        if workspace is not None and not _WORKSPACE.fullmatch(workspace):
            self.fail("workspace", "expected lower-case letters, digits, _ and - (up to 63)")
            workspace = None
        database = self.database(top["database"]) if "database" in top else None
        sources = top.get("data_sources") or []
        if not isinstance(sources, list):
            self.fail("data_sources", "expected a list")
            sources = []
        checked = [self.source(s, f"data_sources[{i}]") for i, s in enumerate(sources)]
        seen: set[str] = set()
        for i, source in enumerate(checked):
            if source is not None and source.id in seen:
                self.fail(f"data_sources[{i}].id", "the same id as an earlier data source")
            if source is not None:
                seen.add(source.id)
        runner = top.get("runner") or {}
        timing = self.timing(runner)
        metrics = None
        if isinstance(runner, dict) and runner.get("metrics") is not None:
            metrics = self.metrics(runner["metrics"], "runner.metrics")
            if metrics is None:
                return None
        review = None
        if top.get("review") is not None:
            review = self.review(top["review"], "review")
            if review is None:
                return None
        if workspace is None or database is None or timing is None:
            return None
        return RunnerConfig(
            review=review,
            workspace=workspace,
            database=database,
            data_sources=tuple(s for s in checked if s is not None),
            timing=timing,
            metrics=metrics,
        )

    def timing(self, value: Any) -> Timing | None:
        timings = {"lease_ttl", "refresh_every", "reconcile_every"}
        raw = self.mapping(value, "runner", set(), timings | {"metrics"})
        if raw is None:
            return None
        known = raw.keys() & timings
        found = {
            key: self.duration(raw[key], f"runner.{key}", at_least=MIN_TIMING) for key in known
        }
        if len(known) < len(raw.keys() - {"metrics"}):
            return None
        if any(d is None for d in found.values()):
            return None
        return Timing(**found)  # type: ignore[arg-type]

    def review(self, value: Any, path: str) -> ReviewConfig | None:
        keys = {"judge", "timezone", "contradicted", "human_types", "human_fields", "catch_up"}
        keys |= {"llm"}
        raw = self.mapping(value, path, set(), keys)
        if raw is None:
            return None
        ok = len(self.problems)
        judge = self.text(raw.get("judge", "grounding"), f"{path}.judge")
        if judge is not None and judge not in JUDGES:
            self.fail(f"{path}.judge", f"expected one of {', '.join(JUDGES)}")
        zone = self.text(raw.get("timezone", "UTC"), f"{path}.timezone")
        if zone is not None and not _is_zone(zone):
            self.fail(f"{path}.timezone", "expected an IANA time zone such as America/New_York")
        contradicted = raw.get("contradicted", "reject")
        if contradicted not in ("reject", "human"):
            self.fail(f"{path}.contradicted", "expected reject or human")
        types = self.names(raw.get("human_types"), f"{path}.human_types", _ENTITY_TYPE)
        fields = self.names(raw.get("human_fields"), f"{path}.human_fields", _ENTITY_FIELD)
        catch_up = (
            self.duration(raw["catch_up"], f"{path}.catch_up", at_least=MIN_CATCH_UP)
            if "catch_up" in raw
            else ReviewPolicy().catch_up
        )
        llm = self.llm(raw["llm"], f"{path}.llm") if raw.get("llm") is not None else None
        if judge in ("llm", "policy") and "llm" not in raw:
            self.fail(f"{path}.llm", f"the {judge} judge needs the LLM's base_url and model")
        if len(self.problems) > ok or judge is None or zone is None or catch_up is None:
            return None
        defaults = ReviewPolicy()
        policy = ReviewPolicy(
            timezone=zone,
            contradicted=Route.HUMAN if contradicted == "human" else Route.REJECTED,
            human_types=defaults.human_types if types is None else types,
            human_fields=defaults.human_fields if fields is None else fields,
            catch_up=catch_up,
        )
        return ReviewConfig(judge=judge, policy=policy, llm=llm)

    def llm(self, value: Any, path: str) -> LlmConfig | None:
        keys = {"api_key", "timeout", "response_format"}
        raw = self.mapping(value, path, {"base_url", "model"}, keys)
        if raw is None:
            return None
        ok = len(self.problems)
        if "base_url" not in raw or "model" not in raw:
            return None  # named by mapping()
        base_url = self.url(raw["base_url"], f"{path}.base_url")
        model = self.text(raw["model"], f"{path}.model")
        api_key = self.secret(raw["api_key"], f"{path}.api_key") if "api_key" in raw else None
        timeout = (
            self.duration(raw["timeout"], f"{path}.timeout", at_least=MIN_TIMING)
            if "timeout" in raw
            else timedelta(seconds=30)
        )
        form = raw.get("response_format", "json_schema")
        if form not in ("json_schema", "json_object"):
            self.fail(f"{path}.response_format", "expected json_schema or json_object")
        if len(self.problems) > ok or base_url is None or model is None or timeout is None:
            return None
        return LlmConfig(
            base_url=base_url, model=model, api_key=api_key, timeout=timeout, response_format=form
        )

    def names(self, value: Any, path: str, pattern: re.Pattern[str]) -> frozenset[str] | None:
        """A list of names matching ``pattern`` (None when absent or wrong)."""
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path, "expected a list of names")
            return None
        wrong = [i for i, v in enumerate(value) if not pattern.fullmatch(v)]
        if wrong:
            self.fail(f"{path}[{wrong[0]}]", "not a name of that kind")
            return None
        return frozenset(value)

    def metrics(self, value: Any, path: str) -> MetricsConfig | None:
        raw = self.mapping(value, path, {"port"}, {"host", "token"})
        if raw is None:
            return None
        ok = len(self.problems)
        port = raw.get("port")
        if "port" in raw and (
            not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535
        ):
            self.fail(f"{path}.port", "expected a port number from 0 to 65535")
        host = self.text(raw["host"], f"{path}.host") if "host" in raw else "127.0.0.1"
        token = self.secret(raw["token"], f"{path}.token") if "token" in raw else None
        if "token" not in raw and host is not None and not _loopback(host):
            self.fail(
                f"{path}.token",
                "required when host is not loopback: scrapers from elsewhere present it as a "
                "Bearer token, e.g. token: {env: METRICS_TOKEN}",
            )
        if len(self.problems) > ok or host is None or not isinstance(port, int):
            return None
        return MetricsConfig(host=host, port=port, token=token)

    def database(self, value: Any) -> str | SecretRef | None:
        if isinstance(value, dict):
            return self.secret(value, "database")
        url = self.text(value, "database")
        if url is None:
            return None
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            self.fail("database", "use sqlite:///path.db or postgresql://...")
            return None
        userinfo = url.split("://", 1)[1].split("@", 1)
        if len(userinfo) == 2 and ":" in userinfo[0]:
            self.fail(
                "database",
                "a password in the URL is not allowed (no inline secrets): give the whole URL "
                "as a secret, e.g. database: {env: EHRBRIDGE_DB} or {file: PATH}",
            )
            return None
        return url

    def source(self, value: Any, path: str) -> DataSourceConfig | None:
        if isinstance(value, dict) and value.get("kind") == "file_drop":
            return self.file_drop(value, path)
        rest = isinstance(value, dict) and value.get("kind") == "rest"
        raw = self.mapping(
            value,
            path,
            {"id", "kind", "base_url"},
            {"auth", "resources", "business_hours", "overlap", "budget", "outbound"}
            | (_REST_SOURCE_KEYS if rest else {"backfill"}),
        )
        if raw is None:
            return None
        ok = len(self.problems)
        source_id = self.source_id(raw.get("id"), f"{path}.id")
        kind = raw.get("kind")
        if "kind" in raw and kind not in ("fhir", "rest", "file_drop"):
            self.fail(f"{path}.kind", "expected fhir, rest or file_drop")
        base_url = self.url(raw.get("base_url"), f"{path}.base_url")
        auth = self.auth(raw.get("auth", {"kind": "none"}), f"{path}.auth")
        if rest and auth is not None and auth.kind not in _REST_AUTH:
            self.fail(f"{path}.auth.kind", f"a rest source takes {', '.join(_REST_AUTH)}")
        settings = check_settings(self, raw, path) if rest else None
        resources = raw.get("resources") or []
        if not isinstance(resources, list):
            self.fail(f"{path}.resources", "expected a list")
            resources = []
        checked = [
            self.resource(r, f"{path}.resources[{i}]", kind=kind) for i, r in enumerate(resources)
        ]
        if rest:
            self.unique_types(checked, path)
        hours = None
        if raw.get("business_hours") is not None:
            hours = self.hours(raw["business_hours"], f"{path}.business_hours")
        overlap = self.duration(raw.get("overlap", "5m"), f"{path}.overlap")
        backfill = raw.get("backfill", "none")
        if backfill not in ("none", "export"):
            self.fail(f"{path}.backfill", "expected export (Bulk Data $export first) or none")
        budget = self.budget(raw["budget"], f"{path}.budget") if "budget" in raw else None
        outbound = None
        if raw.get("outbound") is not None and kind in ("fhir", "rest"):
            outbound = check_outbound(self, raw["outbound"], f"{path}.outbound", kind=kind)
        if len(self.problems) > ok:
            return None
        assert source_id and base_url and auth and overlap is not None
        return DataSourceConfig(
            id=source_id,
            kind=kind,  # type: ignore[arg-type]  # checked above
            base_url=base_url,
            auth=auth,
            resources=tuple(r for r in checked if r is not None),
            business_hours=hours,
            overlap=overlap,
            rest=settings,
            backfill=backfill,
            budget=budget or DEFAULT_BUDGET,
            outbound=outbound,
        )

    def source_id(self, value: Any, path: str) -> str | None:
        source_id = self.text(value, path)
        if source_id is not None and not _SOURCE_ID.fullmatch(source_id):
            self.fail(path, "expected letters, digits, _, . and - (up to 64), e.g. ehr")
            return None
        return source_id

    def budget(self, value: Any, path: str) -> RequestBudget | None:
        """``{rate: 5/s, concurrency: 2}``; an unset key keeps :data:`DEFAULT_BUDGET`'s."""
        raw = self.mapping(value, path, set(), {"rate", "concurrency"})
        if raw is None:
            return None
        rate, concurrency = DEFAULT_BUDGET.rate, raw.get("concurrency", DEFAULT_BUDGET.concurrency)
        if "rate" in raw:
            try:
                if not isinstance(raw["rate"], str):
                    raise ValueError("expected a rate such as 5/s, 120/min or 1000/h")
                rate = parse_rate(raw["rate"])
            except ValueError as exc:
                self.fail(f"{path}.rate", str(exc))
                return None
        if (
            not isinstance(concurrency, int)
            or isinstance(concurrency, bool)
            or not 1 <= concurrency <= MAX_CONCURRENCY
        ):
            self.fail(f"{path}.concurrency", f"expected a whole number from 1 to {MAX_CONCURRENCY}")
            return None
        return RequestBudget(rate=rate, concurrency=concurrency)

    def unique_types(self, resources: list[ResourceConfig | None], path: str) -> None:
        """A rest source's cursors and poll tasks are per resource type: one endpoint each."""
        seen: set[str] = set()
        for i, resource in enumerate(resources):
            if resource is not None and resource.type in seen:
                self.fail(
                    f"{path}.resources[{i}].type",
                    "this type is polled from another endpoint of this source already",
                )
            if resource is not None:
                seen.add(resource.type)

    def file_drop(self, value: dict[str, Any], path: str) -> DataSourceConfig | None:
        raw = self.mapping(
            value, path, {"id", "kind", "path", "every"}, {"business_hours", "outbound"}
        )
        if raw is None:
            return None
        ok = len(self.problems)
        if "outbound" in raw:
            self.fail(f"{path}.outbound", "a file_drop source takes no writes: it is not a sink")
        source_id = self.source_id(raw.get("id"), f"{path}.id")
        folder = None
        if "path" in raw:
            folder = self.text(raw["path"], f"{path}.path")
        if folder is not None and not _is_dir(folder):
            self.fail(f"{path}.path", "not an existing folder")
        every = self.cadence(raw.get("every"), f"{path}.every") if "every" in raw else None
        hours = None
        if raw.get("business_hours") is not None:
            hours = self.hours(raw["business_hours"], f"{path}.business_hours")
        if len(self.problems) > ok or source_id is None or folder is None or every is None:
            return None
        return DataSourceConfig(
            id=source_id,
            kind="file_drop",
            base_url="",
            path=Path(folder),
            resources=(ResourceConfig(type=FILES, every=every),),
            business_hours=hours,
        )

    def auth(self, value: Any, path: str) -> AuthConfig | None:
        kind = value.get("kind") if isinstance(value, dict) else None
        if not isinstance(kind, str) or kind not in _AUTH_KEYS:
            if isinstance(value, dict) and "kind" in value:
                self.fail(f"{path}.kind", f"expected one of {', '.join(_AUTH_KEYS)}")
            else:
                self.fail(path, "expected a mapping with a kind")
            return None
        plain, secret = _AUTH_KEYS[kind]
        required = _REQUIRED_AUTH.get(kind, set()) | {"kind"}
        raw = self.mapping(value, path, required, plain | secret)
        if raw is None:
            return None
        settings: dict[str, str] = {}
        secrets: dict[str, SecretRef] = {}
        for key, item in raw.items():
            if key in secret:
                ref = self.secret(item, _at(path, key))
                if ref is not None:
                    secrets[key] = ref
            elif key in plain:
                checked = self.setting(key, item, _at(path, key))
                if checked is not None:
                    settings[key] = checked
        return AuthConfig(kind=kind, settings=settings, secrets=secrets)  # type: ignore[arg-type]  # a key of _AUTH_KEYS

    def setting(self, key: str, value: Any, path: str) -> str | None:
        """A plain auth setting: a URL, one of a few choices, a header name, or text."""
        if key == "token_url":
            return self.url(value, path)
        checked = self.text(value, path)
        if checked is None:
            return None
        if key in _AUTH_CHOICES and checked not in _AUTH_CHOICES[key]:
            self.fail(path, f"expected {' or '.join(_AUTH_CHOICES[key])}")
            return None
        if key == "header" and not _HEADER_NAME.fullmatch(checked):
            self.fail(path, "expected an HTTP header name such as X-Api-Key")
            return None
        return checked

    def resource(self, value: Any, path: str, *, kind: Any = "fhir") -> ResourceConfig | None:
        if kind == "rest":
            return self.rest_resource(value, path)
        raw = self.mapping(value, path, {"type", "every"}, {"page_size"})
        if raw is None:
            return None
        ok = len(self.problems)
        resource_type = self.text(raw.get("type"), f"{path}.type") if "type" in raw else None
        if resource_type is not None and resource_type not in R4_RESOURCE_TYPES:
            self.fail(f"{path}.type", _not_a_resource_type(resource_type))
        every = self.cadence(raw.get("every"), f"{path}.every") if "every" in raw else None
        page_size = self.number(raw.get("page_size", 100), f"{path}.page_size", 1, MAX_PAGE_SIZE)
        if len(self.problems) > ok or resource_type is None or every is None or page_size is None:
            return None
        return ResourceConfig(type=resource_type, every=every, page_size=page_size)

    def rest_resource(self, value: Any, path: str) -> ResourceConfig | None:
        optional = {"path", "records", "id", "version", "params", "pagination", "incremental"}
        raw = self.mapping(value, path, {"type", "every", "fields"}, optional | {"page_size"})
        if raw is None:
            return None
        ok = len(self.problems)
        resource_type = self.text(raw.get("type"), f"{path}.type") if "type" in raw else None
        if resource_type is not None and not _ENTITY_TYPE.fullmatch(resource_type):
            self.fail(f"{path}.type", "expected an entity type such as Appointment")
        every = self.cadence(raw.get("every"), f"{path}.every") if "every" in raw else None
        spec = check_resource(self, raw, path, resource_type or "")
        if len(self.problems) > ok or resource_type is None or every is None:
            return None
        return ResourceConfig(
            type=resource_type, every=every, page_size=spec.paging.size, rest=spec
        )

    def hours(self, value: Any, path: str) -> BusinessHours | None:
        raw = self.mapping(value, path, {"start", "end"}, {"days", "timezone"})
        if raw is None:
            return None
        ok = len(self.problems)
        days = frozenset(range(7))
        try:
            days = parse_days(raw.get("days", "mon-sun"))
        except ValueError as exc:
            self.fail(f"{path}.days", str(exc))
        start, end = (self.clock_time(raw.get(k), f"{path}.{k}") for k in ("start", "end"))
        zone = raw.get("timezone", "UTC")
        try:
            hours = BusinessHours(
                days=days, start=start or time(0), end=end or time(0), timezone=str(zone)
            )
        except ValueError:
            self.fail(f"{path}.timezone", "expected an IANA time zone such as America/New_York")
            return None
        return hours if len(self.problems) == ok else None

    def clock_time(self, value: Any, path: str) -> time | None:
        # YAML 1.1 reads an unquoted 07:00 as a number of minutes (sexagesimal): accept both.
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            return time(value // 60, value % 60)
        try:
            return time.fromisoformat(str(value))
        except ValueError:
            self.fail(path, 'expected a time of day such as "07:30"')
            return None


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as a server's base or token URL, or None.

    >>> [_url_problem(u) for u in ("https://ehr.example.org/fhir", "not a url")]
    [None, 'expected an absolute http or https URL such as https://ehr.example.org/fhir']
    >>> _url_problem("file:///etc/passwd")
    'expected an absolute http or https URL such as https://ehr.example.org/fhir'
    """
    if not url.lower().startswith(("http://", "https://")):
        return "expected an absolute http or https URL such as https://ehr.example.org/fhir"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return "a URL has no spaces or control characters"
    try:
        parsed = httpx.URL(url)
        host = parsed.host
    except (httpx.InvalidURL, ValueError, TypeError):
        return "not a valid URL"
    if parsed.scheme not in ("http", "https") or not host:
        return "expected an absolute http or https URL such as https://ehr.example.org/fhir"
    if parsed.userinfo:
        return f"a user or password in the URL is an {INLINE_SECRET}; put credentials in auth"
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        return "a base URL has no query or fragment"
    return None


def _not_a_resource_type(name: str) -> str:
    """The problem with a type that is not a FHIR R4 resource type, with the nearest one."""
    near = difflib.get_close_matches(name, R4_RESOURCE_TYPES, n=1) if len(name) <= 64 else []
    hint = f"did you mean {near[0]}? " if near else ""
    return f"not a FHIR R4 resource type ({hint}https://hl7.org/fhir/R4/resourcelist.html)"


def _is_dir(folder: str) -> bool:
    try:
        return Path(folder).is_dir()
    except (OSError, ValueError):  # a NUL in the path, a name too long
        return False


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (only this machine can connect).

    >>> _loopback("127.0.0.1"), _loopback("::1"), _loopback("localhost"), _loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
