"""The checks that build a ``kind: rest`` data source's settings and resources from its YAML.

The runner's config checker (:mod:`ehrbridge.runner.configfile`) reads the YAML and calls
:func:`check_resource` and :func:`check_settings` with itself as the :class:`Checks`, so every
problem names the file, the line and the key path; what they build is the plain data of
:mod:`ehrbridge.connectors.rest.spec`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
import phonenumbers
from jmespath.exceptions import (
    IncompleteExpressionError,
    JMESPathError,
    LexerError,
    ParseError,
)

from ehrbridge.connectors.rest.spec import (
    ARGUMENT_TRANSFORMS,
    LINK_BY,
    PAGING_STYLES,
    SIMPLE_TRANSFORMS,
    FieldMap,
    Incremental,
    Link,
    Paging,
    RestResource,
    RestSettings,
    Transform,
    fold_key,
)
from ehrbridge.worldmodel.entities import spec_for

_ALL_TRANSFORMS = sorted(SIMPLE_TRANSFORMS | ARGUMENT_TRANSFORMS)
_FIELD = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_PARAM = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,64}$")
_ENTITY_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
#: an HTTP header name (RFC 9110 token) and value (one line of visible characters)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\U0010ffff]{0,4096}$")
#: a resource path under the base URL: no scheme, query, fragment, spaces or control characters
_ENDPOINT = re.compile(r"^/?[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,1024}$")
#: the longest JMESPath expression or keyword pattern (both parsers recurse per nesting level)
MAX_EXPRESSION = 500
#: the shortest per-request timeout
MIN_TIMEOUT = timedelta(seconds=1)
#: bounds of the pagination numbers
_PAGING_NUMBERS = (
    ("size", 100, 1, 10_000),
    ("start", 1, 0, 1_000_000),
    ("max_pages", 1000, 1, 1_000_000),
)


class Checks(Protocol):
    """What the config checker offers: problems with their lines, and small validators."""

    def fail(self, path: str, problem: str) -> None:
        """Record a problem at a key path."""

    def mapping(
        self, value: Any, path: str, required: set[str], optional: set[str]
    ) -> dict[str, Any] | None:
        """``value`` as a mapping with only known keys, or None (problems recorded)."""

    def text(self, value: Any, path: str) -> str | None:
        """A non-empty string, or None (problem recorded)."""

    def duration(
        self, value: Any, path: str, *, at_least: timedelta = timedelta(0), what: str = ""
    ) -> timedelta | None:
        """A duration such as ``30s`` of at least ``at_least``, or None (problem recorded;
        ``what`` is added to the problem when it is too short)."""


def check_settings(c: Checks, raw: dict[str, Any], path: str) -> RestSettings:
    """The source-wide keys ``timezone``, ``dayfirst``, ``phone_region``, ``headers``,
    ``timeout`` of a REST source (problems recorded on ``c``)."""
    out = RestSettings()
    zone = raw.get("timezone", "UTC")
    if not _zone_ok(zone):
        c.fail(f"{path}.timezone", "expected an IANA time zone such as America/New_York")
    dayfirst = raw.get("dayfirst", False)
    if not isinstance(dayfirst, bool):
        c.fail(f"{path}.dayfirst", "expected true or false")
    region = raw.get("phone_region", "US")
    if not isinstance(region, str) or region not in phonenumbers.SUPPORTED_REGIONS:
        c.fail(f"{path}.phone_region", "expected a region code such as US or GB")
    headers: list[tuple[str, str]] = []
    raw_headers = raw.get("headers", {})
    if not isinstance(raw_headers, dict):
        c.fail(f"{path}.headers", "expected a mapping of header names to values")
    else:
        for name, value in raw_headers.items():
            if name.lower() in ("authorization", "cookie") or isinstance(value, dict):
                c.fail(f"{path}.headers.{name}", "credentials belong in auth, as references")
            elif not _HEADER_NAME.fullmatch(name):
                c.fail(f"{path}.headers.{name}", "not an HTTP header name")
            elif isinstance(value, bool) or not isinstance(value, str | int):
                c.fail(f"{path}.headers.{name}", "expected a string")
            elif not _HEADER_VALUE.fullmatch(str(value)):
                c.fail(f"{path}.headers.{name}", "a header value is one line of printable text")
            else:
                headers.append((str(name), str(value)))
    timeout = c.duration(raw.get("timeout", "30s"), f"{path}.timeout", at_least=MIN_TIMEOUT)
    if isinstance(zone, str) and isinstance(dayfirst, bool) and isinstance(region, str):
        out = RestSettings(
            timezone=zone,
            dayfirst=dayfirst,
            phone_region=region,
            headers=tuple(headers),
            timeout=timeout or out.timeout,
        )
    return out


_RESOURCE_KEYS = {
    "path",
    "records",
    "id",
    "version",
    "params",
    "pagination",
    "incremental",
    "fields",
    "page_size",
}


def check_resource(c: Checks, raw: dict[str, Any], path: str, entity_type: str) -> RestResource:
    """The REST part of one resource entry (``type`` and ``every`` are the checker's)."""
    endpoint = c.text(raw.get("path"), f"{path}.path") if "path" in raw else None
    if "path" not in raw:
        c.fail(path, "missing key 'path'")
    elif endpoint is not None and (not _ENDPOINT.fullmatch(endpoint) or "://" in endpoint):
        c.fail(f"{path}.path", "expected a path under the base URL such as /appointments")
        endpoint = None
    exprs = {}
    for key, default in (("records", "@"), ("id", "id"), ("version", None)):
        given = raw.get(key, default)
        exprs[key] = _expression(c, given, f"{path}.{key}") if given is not None else None
    params: list[tuple[str, str]] = []
    raw_params = raw.get("params", {})
    if not isinstance(raw_params, dict):
        c.fail(f"{path}.params", "expected a mapping of query parameters to values")
    else:
        for name, value in raw_params.items():
            if isinstance(value, dict | list) or value is None:
                c.fail(f"{path}.params.{name}", "expected a plain value")
            else:
                params.append(
                    (str(name), str(value).lower() if isinstance(value, bool) else str(value))
                )
    paging = _paging(c, raw.get("pagination", {"style": "none"}), f"{path}.pagination")
    if "page_size" in raw:
        c.fail(f"{path}.page_size", "a rest resource sets its page size in pagination.size")
    incremental = None
    if raw.get("incremental") is not None:
        incremental = _incremental(c, raw["incremental"], f"{path}.incremental")
    fields = _fields(c, raw.get("fields"), f"{path}.fields", entity_type)
    return RestResource(
        type=entity_type,
        path=endpoint or "/",
        records=exprs["records"] or "@",
        id=exprs["id"] or "id",
        version=exprs["version"],
        params=tuple(params),
        paging=paging or Paging(),
        incremental=incremental,
        fields=fields,
    )


def _paging(c: Checks, value: Any, path: str) -> Paging | None:
    style = value.get("style") if isinstance(value, dict) else None
    if style not in PAGING_STYLES:
        c.fail(f"{path}.style" if isinstance(value, dict) else path, _one_of(PAGING_STYLES))
        return None
    optional = {
        "none": set(),
        "page": {"param", "size_param", "size", "start"},
        "offset": {"param", "size_param", "size"},
        "cursor": {"param", "size_param", "size"},
        "link": {"size_param", "size"},
        "next_url": {"size_param", "size"},
    }[style] | {"max_pages"}
    required = {"style"} | ({"next"} if style in ("cursor", "next_url") else set())
    raw = c.mapping(value, path, required, optional)
    if raw is None:
        return None
    default_param = {"page": "page", "offset": "offset", "cursor": "cursor"}.get(style)
    param = raw.get("param", default_param)
    for key in ("param", "size_param"):
        if key in raw and (not isinstance(raw[key], str) or not _PARAM.fullmatch(raw[key])):
            c.fail(f"{path}.{key}", "expected a query parameter name")
    numbers = {}
    for key, default, least, most in _PAGING_NUMBERS:
        number = raw.get(key, default)
        if not isinstance(number, int) or isinstance(number, bool) or not least <= number <= most:
            c.fail(f"{path}.{key}", f"expected a whole number from {least:,} to {most:,}")
            number = default
        numbers[key] = number
    nxt = _expression(c, raw["next"], f"{path}.next") if "next" in raw else None
    return Paging(
        style=style,
        param=param,
        size_param=raw.get("size_param"),
        size=numbers["size"],
        start=numbers["start"],
        next=nxt,
        max_pages=numbers["max_pages"],
    )


def _incremental(c: Checks, value: Any, path: str) -> Incremental | None:
    raw = c.mapping(value, path, {"param", "field"}, {"format"})
    if raw is None:
        return None
    param = raw.get("param")
    if "param" in raw and (not isinstance(param, str) or not _PARAM.fullmatch(param)):
        c.fail(f"{path}.param", "expected a query parameter name")
        param = None
    expr = _expression(c, raw["field"], f"{path}.field") if "field" in raw else None
    fmt = raw.get("format", "iso")
    if fmt not in ("iso", "date", "epoch", "epoch_ms"):
        c.fail(f"{path}.format", "expected iso, date, epoch or epoch_ms")
        return None
    if not isinstance(param, str) or expr is None:
        return None
    return Incremental(param=param, field=expr, format=fmt)


def _fields(c: Checks, value: Any, path: str, entity_type: str) -> tuple[FieldMap, ...]:
    if not isinstance(value, dict) or not value:
        c.fail(path, "expected a mapping of canonical fields to their sources")
        return ()
    out = []
    for name, spec in value.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not _FIELD.fullmatch(name):
            c.fail(where, "not a canonical field path like 'name.family' (docs/entities.md)")
            continue
        checked = _field(c, name, spec, where, entity_type)
        if checked is not None:
            out.append(checked)
    return tuple(out)


def _field(c: Checks, name: str, value: Any, path: str, entity_type: str) -> FieldMap | None:
    if isinstance(value, str):  # the short form: ``status: state``
        value = {"path": value}
    raw = c.mapping(
        value, path, set(), {"path", "value", "default", "transform", "required", "link"}
    )
    if raw is None:
        return None
    if ("path" in raw) == ("value" in raw):
        c.fail(path, "give either path (JMESPath into the record) or value (a constant)")
        return None
    expr = _expression(c, raw["path"], f"{path}.path") if "path" in raw else None
    steps = raw.get("transform", [])
    if not isinstance(steps, list):
        steps = [steps]
    transforms = []
    for i, step in enumerate(steps):
        where = (
            f"{path}.transform"
            if not isinstance(raw.get("transform"), list)
            else f"{path}.transform[{i}]"
        )
        checked = _transform(c, step, where, entity_type, name)
        if checked is not None:
            transforms.append(checked)
    required = raw.get("required", False)
    if not isinstance(required, bool):
        c.fail(f"{path}.required", "expected true or false")
        required = False
    link = _link(c, raw["link"], f"{path}.link") if "link" in raw else None
    for key in ("value", "default"):
        if isinstance(raw.get(key), dict):
            c.fail(f"{path}.{key}", "expected a plain value or a list")
    return FieldMap(
        name=name,
        path=expr,
        value=raw.get("value"),
        default=raw.get("default"),
        transforms=tuple(transforms),
        required=required,
        link=link,
    )


def _link(c: Checks, value: Any, path: str) -> Link | None:
    raw = c.mapping(value, path, {"type"}, {"by"})
    if raw is None:
        return None
    kind = raw.get("type")
    if "type" in raw and (not isinstance(kind, str) or not _ENTITY_TYPE.fullmatch(kind)):
        c.fail(f"{path}.type", "expected an entity type such as Patient")
        return None
    by = raw.get("by", "record")
    if by not in LINK_BY:
        c.fail(f"{path}.by", _one_of(LINK_BY))
        return None
    return Link(type=str(kind), by=by) if isinstance(kind, str) else None


def _transform(c: Checks, value: Any, path: str, entity_type: str, field: str) -> Transform | None:
    if isinstance(value, str):
        if value not in SIMPLE_TRANSFORMS:
            c.fail(path, f"unknown transform; {_one_of(_ALL_TRANSFORMS)}")
            return None
        return Transform(name=value)
    if not isinstance(value, dict) or not value:
        c.fail(path, "expected a transform name or a mapping such as {map: {...}}")
        return None
    names = [k for k in value if k in ARGUMENT_TRANSFORMS]
    if len(names) != 1:
        c.fail(path, f"expected one transform key; {_one_of(sorted(ARGUMENT_TRANSFORMS))}")
        return None
    name = names[0]
    extra = {"default"} if name in ("map", "keywords") else set()
    raw = c.mapping(value, path, {name}, extra)
    if raw is None:
        return None
    arg = raw[name]
    where = f"{path}.{name}"
    has_default = "default" in raw
    default = raw.get("default")
    codes = _codes(entity_type, field)
    if name == "map":
        if not isinstance(arg, dict) or not arg:
            c.fail(where, "expected a mapping of source values to canonical values")
            return None
        table = tuple((fold_key(str(k)), v) for k, v in arg.items())
        _check_codes(c, where, codes, [v for _, v in table] + ([default] if has_default else []))
        return Transform(name=name, table=table, default=default, has_default=has_default)
    if name == "keywords":
        if not isinstance(arg, dict) or not arg:
            c.fail(where, "expected a mapping of canonical values to lists of words or patterns")
            return None
        patterns = []
        for target, words in arg.items():
            words = [words] if isinstance(words, str) else words
            if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
                c.fail(f"{where}.{target}", "expected a list of words or patterns")
                continue
            for word in words:
                problem = _pattern_problem(word)
                if problem is not None:
                    c.fail(f"{where}.{target}", problem)
            patterns.append((target, tuple(words)))
        _check_codes(c, where, codes, [t for t, _ in patterns] + ([default] if has_default else []))
        return Transform(
            name=name, patterns=tuple(patterns), default=default, has_default=has_default
        )
    if name in ("date", "datetime"):
        opts = c.mapping(arg, where, set(), {"format", "dayfirst", "timezone"})
        if opts is None:
            return None
        fmt, dayfirst, zone = opts.get("format"), opts.get("dayfirst"), opts.get("timezone")
        if fmt is not None and not isinstance(fmt, str):
            c.fail(f"{where}.format", "expected a strptime format such as '%d.%m.%Y %H:%M'")
        if dayfirst is not None and not isinstance(dayfirst, bool):
            c.fail(f"{where}.dayfirst", "expected true or false")
        if zone is not None and not _zone_ok(zone):
            c.fail(f"{where}.timezone", "expected an IANA time zone such as America/New_York")
        return Transform(name=name, format=fmt, dayfirst=dayfirst, timezone=zone)
    if name == "phone":
        if not isinstance(arg, str) or arg not in phonenumbers.SUPPORTED_REGIONS:
            c.fail(where, "expected a region code such as US or GB")
            return None
        return Transform(name=name, arg=arg)
    if name == "name":
        if arg not in ("given", "family"):
            c.fail(where, "expected given or family")
            return None
        return Transform(name=name, arg=arg)
    if not isinstance(arg, str):  # join, split, prefix
        c.fail(where, "expected a string")
        return None
    return Transform(name=name, arg=arg)


def check_expression(c: Checks, value: Any, path: str) -> str | None:
    """A JMESPath expression of at most :data:`MAX_EXPRESSION` characters that compiles, or
    None (the problem recorded without showing the expression)."""
    return _expression(c, value, path)


def _expression(c: Checks, value: Any, path: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        c.fail(path, "expected a JMESPath expression such as data.items")
        return None
    if len(value) > MAX_EXPRESSION:
        c.fail(path, f"a JMESPath expression is at most {MAX_EXPRESSION} characters")
        return None
    try:
        jmespath.compile(value)
    except IncompleteExpressionError:
        c.fail(path, "not a valid JMESPath expression: it ends too early")
        return None
    except LexerError as exc:
        c.fail(
            path,
            "not a valid JMESPath expression: an unknown character or an unclosed quote at "
            f"position {exc.lexer_position}",
        )
        return None
    except ParseError as exc:
        # "Unexpected token: <the token>" would show part of the value: name its kind instead.
        what = exc.msg
        if what.startswith("Unexpected token"):
            what = f"unexpected {str(exc.token_type).lower()}"
        c.fail(path, f"not a valid JMESPath expression: {what} at position {exc.lex_position}")
        return None
    except JMESPathError:
        c.fail(path, "not a valid JMESPath expression")
        return None
    except RecursionError:
        c.fail(path, "not a valid JMESPath expression: nested too deeply")
        return None
    return value


def _pattern_problem(word: str) -> str | None:
    """Why ``word`` is not a usable ``keywords`` pattern, or None."""
    if len(word) > MAX_EXPRESSION:
        return f"a pattern is at most {MAX_EXPRESSION} characters"
    try:
        re.compile(word)
    except re.error as exc:
        return f"not a valid pattern: {exc.msg} at position {exc.pos}"
    except (RecursionError, OverflowError, ValueError):
        return "not a valid pattern: nested too deeply or repeated too often"
    return None


def _codes(entity_type: str, field: str) -> tuple[str, ...]:
    spec = spec_for(entity_type)
    known = spec.field(field) if spec is not None else None
    return known.codes if known is not None and known.kind == "code" else ()


def _check_codes(c: Checks, path: str, codes: tuple[str, ...], values: list[Any]) -> None:
    if not codes:
        return
    bad = [v for v in values if v is not None and v not in codes]
    if bad:
        c.fail(path, f"a value is not a code of this field; use {', '.join(codes)}")


def _zone_ok(zone: Any) -> bool:
    if not isinstance(zone, str) or not zone:
        return False
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _one_of(options: tuple[str, ...] | list[str]) -> str:
    return f"expected one of {', '.join(options)}"
