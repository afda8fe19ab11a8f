"""The runner's config file: data sources, their auth and resources, validated with the line.

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
mappings (docs/rest-connector.md); :mod:`ehrbridge.connectors.rest.spec` checks those parts.

The optional ``runner:`` section holds timings and ``metrics: {port: 9464, host: 127.0.0.1}``.

Every error names the file, the line and the key path, e.g. ``config.yaml:14:
data_sources[1].auth.token: inline secrets are not allowed; use {env: NAME} or {file: PATH}``.
Unknown keys are errors. Secrets are references only (:mod:`.secrets`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from ehrbridge.connectors.rest.spec import (
    RestResource,
    RestSettings,
    check_resource,
    check_settings,
)
from ehrbridge.errors import InvalidInput
from ehrbridge.runner.budget import DEFAULT_BUDGET, MAX_CONCURRENCY, RequestBudget, parse_rate
from ehrbridge.runner.durations import parse_duration
from ehrbridge.runner.schedule import BusinessHours, parse_days
from ehrbridge.runner.secrets import SecretRef
from ehrbridge.runner.yamlfile import LocatedYaml, read_yaml

SourceKind = Literal["fhir", "rest", "file_drop"]
AuthKind = Literal["none", "basic", "bearer", "smart", "api_key", "oauth2"]
#: the one resource of a ``file_drop`` source: every file in its folder
FILES = "files"
_ENTITY_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
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


class ConfigError(InvalidInput):
    """The runner's config is not valid."""

    def __init__(self, problems: list[str]) -> None:
        #: one line per problem: ``file:line: key.path: what is wrong``
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    """How to authenticate to a data source; secrets are references."""

    kind: AuthKind = "none"
    #: plain settings (user name, client id, token URL, header name, scope, ...)
    settings: dict[str, str] = field(default_factory=dict)
    #: secret name (``password``, ``token``, ...) -> where it is
    secrets: dict[str, SecretRef] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ResourceConfig:
    """One resource type polled from a data source."""

    type: str
    #: the cadence
    every: timedelta
    #: results per page asked of the server
    page_size: int = 100
    #: a ``rest`` source's endpoint, paging and field mappings
    rest: RestResource | None = None


@dataclass(frozen=True, kw_only=True)
class DataSourceConfig:
    """One configured external system."""

    id: str
    kind: SourceKind
    base_url: str
    auth: AuthConfig = field(default_factory=AuthConfig)
    resources: tuple[ResourceConfig, ...] = ()
    #: polls run only inside this window; None means always
    business_hours: BusinessHours | None = None
    #: each poll reads again this far back from its cursor (late commits, clock skew)
    overlap: timedelta = timedelta(minutes=5)
    #: the watched folder of a ``file_drop`` source (its ``base_url`` is then empty)
    path: Path | None = None
    #: ``export``: a fhir source's types are first loaded with a Bulk Data ``$export`` backfill,
    #: then polled from its ``transactionTime`` (``none``: the first poll reads everything)
    backfill: Literal["none", "export"] = "none"
    #: a ``rest`` source's defaults (time zone, day-first dates, phone region, headers)
    rest: RestSettings | None = None
    #: how fast and how many at once requests may go to it (``budget: {rate: 5/s}``)
    budget: RequestBudget = DEFAULT_BUDGET


@dataclass(frozen=True, kw_only=True)
class Timing:
    """How often the runner looks at things."""

    #: re-read the config file this often even if it looks unchanged
    refresh_every: timedelta = timedelta(seconds=60)
    #: look at the config file's modification time this often
    watch_every: timedelta = timedelta(seconds=1)
    #: a poll lease lasts at least this long (or two cadences, whichever is longer)
    lease_ttl: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Where ``ehrbridge run`` serves ``GET /metrics`` (:mod:`.metrics`)."""

    #: the address to listen on; loopback unless a scraper elsewhere needs it
    host: str = "127.0.0.1"
    #: 0 picks a free port
    port: int = 9464
    #: the Bearer token a scrape must present; required unless ``host`` is loopback
    token: SecretRef | None = None


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """The whole config file."""

    workspace: str
    #: the world model's database URL (``sqlite:///...`` or ``postgresql://...``), or a reference
    database: str | SecretRef
    data_sources: tuple[DataSourceConfig, ...] = ()
    #: the optional ``runner:`` section: ``{lease_ttl: 5m, refresh_every: 60s}``
    timing: Timing = field(default_factory=Timing)
    #: the ``runner.metrics`` section: ``{port: 9464, host: 127.0.0.1}``; None serves no metrics
    metrics: MetricsConfig | None = None


def load_config(path: Path) -> RunnerConfig:
    """Read and validate the config at ``path``; a :class:`ConfigError` lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config: {exc.strerror}"]) from None
    return parse_config(text, name=str(path))


def parse_config(text: str, *, name: str = "config.yaml") -> RunnerConfig:
    """Validate config ``text`` (``name`` is used in errors)."""
    try:
        doc = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError([f"{name}:{line}: {problem}"]) from None
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

    def duration(self, value: Any, path: str) -> timedelta | None:
        try:
            if not isinstance(value, str):
                raise ValueError("expected a duration such as 30s, 5m or 1h")
            return parse_duration(value)
        except ValueError as exc:
            self.fail(path, str(exc))
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
        top = self.mapping(self.doc.data, "", {"workspace", "database"}, {"data_sources", "runner"})
        if top is None:
            return None
        workspace = self.text(top.get("workspace"), "workspace") if "workspace" in top else None
        database = self.database(top["database"]) if "database" in top else None
        sources = top.get("data_sources") or []
        if not isinstance(sources, list):
            self.fail("data_sources", "expected a list")
            sources = []
        checked = [self.source(s, f"data_sources[{i}]") for i, s in enumerate(sources)]
        seen: set[str] = set()
        for i, source in enumerate(checked):
            if source is not None and source.id in seen:
                self.fail(f"data_sources[{i}].id", f"duplicate data source id {source.id!r}")
            if source is not None:
                seen.add(source.id)
        runner = top.get("runner") or {}
        timing = self.timing(runner)
        metrics = None
        if isinstance(runner, dict) and runner.get("metrics") is not None:
            metrics = self.metrics(runner["metrics"], "runner.metrics")
            if metrics is None:
                return None
        if workspace is None or database is None or timing is None:
            return None
        return RunnerConfig(
            workspace=workspace,
            database=database,
            data_sources=tuple(s for s in checked if s is not None),
            timing=timing,
            metrics=metrics,
        )

    def timing(self, value: Any) -> Timing | None:
        raw = self.mapping(value, "runner", set(), {"lease_ttl", "refresh_every", "metrics"})
        if raw is None:
            return None
        known = raw.keys() & {"lease_ttl", "refresh_every"}
        found = {key: self.duration(raw[key], f"runner.{key}") for key in known}
        if len(known) < len(raw.keys() - {"metrics"}):
            return None
        if any(d is None or d <= timedelta(0) for d in found.values()):
            if all(d is not None for d in found.values()):
                self.fail("runner", "durations must be above zero")
            return None
        return Timing(**found)  # type: ignore[arg-type]

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
                f"required when host is not loopback ({host}): scrapers from elsewhere present "
                "it as a Bearer token, e.g. token: {env: METRICS_TOKEN}",
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
            self.fail("database", f"a password in the URL is an {INLINE_SECRET}")
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
            {"auth", "resources", "business_hours", "overlap", "budget"}
            | (_REST_SOURCE_KEYS if rest else {"backfill"}),
        )
        if raw is None:
            return None
        ok = len(self.problems)
        source_id = self.text(raw.get("id"), f"{path}.id")
        kind = raw.get("kind")
        if "kind" in raw and kind not in ("fhir", "rest", "file_drop"):
            self.fail(f"{path}.kind", "expected fhir, rest or file_drop")
        base_url = self.text(raw.get("base_url"), f"{path}.base_url")
        auth = self.auth(raw.get("auth", {"kind": "none"}), f"{path}.auth")
        if rest and auth is not None and auth.kind not in _REST_AUTH:
            self.fail(f"{path}.auth.kind", f"a rest source takes {', '.join(_REST_AUTH)}")
        settings = check_settings(self, raw, path) if rest else None
        resources = raw.get("resources") or []
        if not isinstance(resources, list):
            self.fail(f"{path}.resources", "expected a list")
            resources = []
        checked = [
            self.resource(r, f"{path}.resources[{i}]", rest=rest) for i, r in enumerate(resources)
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
        )

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
                    f"{resource.type} is polled from another endpoint of this source already",
                )
            if resource is not None:
                seen.add(resource.type)

    def file_drop(self, value: dict[str, Any], path: str) -> DataSourceConfig | None:
        raw = self.mapping(value, path, {"id", "kind", "path", "every"}, {"business_hours"})
        if raw is None:
            return None
        ok = len(self.problems)
        source_id = self.text(raw.get("id"), f"{path}.id")
        folder = None
        if "path" in raw:
            folder = self.text(raw["path"], f"{path}.path")
        if folder is not None and not Path(folder).is_dir():
            self.fail(f"{path}.path", f"{folder!r} is not an existing folder")
        every = self.duration(raw.get("every"), f"{path}.every") if "every" in raw else None
        if every is not None and every <= timedelta(0):
            self.fail(f"{path}.every", "expected a duration above zero")
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
        if kind not in _AUTH_KEYS:
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
                checked = self.text(item, _at(path, key))
                if checked is not None:
                    settings[key] = checked
        return AuthConfig(kind=kind, settings=settings, secrets=secrets)

    def resource(self, value: Any, path: str, *, rest: bool = False) -> ResourceConfig | None:
        if rest:
            return self.rest_resource(value, path)
        raw = self.mapping(value, path, {"type", "every"}, {"page_size"})
        if raw is None:
            return None
        resource_type = self.text(raw.get("type"), f"{path}.type")
        every = self.duration(raw.get("every"), f"{path}.every")
        page_size = raw.get("page_size", 100)
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            self.fail(f"{path}.page_size", "expected a positive whole number")
            return None
        if every is not None and every <= timedelta(0):
            self.fail(f"{path}.every", "expected a duration above zero")
            return None
        if resource_type is None or every is None:
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
        every = self.duration(raw.get("every"), f"{path}.every") if "every" in raw else None
        if every is not None and every <= timedelta(0):
            self.fail(f"{path}.every", "expected a duration above zero")
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
        except ValueError as exc:
            self.fail(f"{path}.timezone", str(exc))
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
