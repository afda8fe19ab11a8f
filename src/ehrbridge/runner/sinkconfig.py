"""The checks that build a data source's ``outbound:`` section (its sink settings) from the YAML
(docs/sinks.md).

The config checker (:mod:`ehrbridge.runner.configfile`) calls :func:`check_outbound` with
itself as the :class:`SinkChecks`, so every problem names the file, the line and the key path,
never a value; an unknown key is refused with the nearest known one. What it builds is
:class:`~ehrbridge.outbound.settings.SinkSettings`.

Templates are checked at load: every name in braces must be a field of the entity type (for
the eight first-class types, a field of docs/entities.md), ``{id}`` where the record's id is
known (an update, a read) or ``{key}``.
"""

from __future__ import annotations

import difflib
import math
import re
from datetime import timedelta
from typing import Any, Protocol

from ehrbridge.budget import DEFAULT_BUDGET, MAX_CONCURRENCY, RequestBudget, parse_rate
from ehrbridge.connectors.rest.checks import Checks, check_expression
from ehrbridge.connectors.schedule import BusinessHours
from ehrbridge.outbound.settings import Backoff, OnConflict, RetrySettings, SinkSettings
from ehrbridge.outbound.sinks.restwrites import (
    ID,
    KEY,
    LOCATION,
    EntityWrites,
    LookupCall,
    ReadCall,
    TemplateError,
    Text,
    WriteCall,
    parse_body,
    parse_text,
)
from ehrbridge.runner.durations import format_duration
from ehrbridge.worldmodel.entities import ENTITY_TYPES, spec_for

_ENTITY_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
_ENTITY_FIELD = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}(\.[a-z_][a-z0-9_]{0,63})+$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
#: headers the sink sets itself, or that carry credentials (those go in ``auth``)
_RESERVED_HEADERS = frozenset({"authorization", "cookie", "content-type", "content-length", "host"})
#: the longest URL template
MAX_URL = 2000
#: bounds of the retry settings
MAX_ATTEMPTS = 100
MAX_AGE = (timedelta(minutes=1), timedelta(days=30))
BACKOFF_BASE = (timedelta(milliseconds=100), timedelta(hours=1))
BACKOFF_MAX = timedelta(days=1)
#: a threshold at or below this lets voice facts (0.5 and below) pass layer 1 unjudged
VOICE_CEILING = 0.5

_OUTBOUND_KEYS = {
    "entity_types",
    "threshold",
    "review_required",
    "human_types",
    "human_fields",
    "rate",
    "concurrency",
    "business_hours",
    "on_conflict",
    "retries",
}
_WRITES_KEYS = {"create", "update", "idempotency_header", "idempotent", "lookup", "read"}


class SinkChecks(Checks, Protocol):
    """What :func:`check_outbound` needs of the config checker beyond :class:`Checks`."""

    #: the problems recorded so far (a check compares counts to see whether it added any)
    problems: list[str]

    def number(self, value: Any, path: str, least: int, most: int) -> int | None:
        """A whole number from ``least`` to ``most``, or None (problem recorded)."""

    def hours(self, value: Any, path: str) -> BusinessHours | None:
        """Business hours, as a source's ``business_hours:``, or None (problem recorded)."""


def check_outbound(c: SinkChecks, value: Any, path: str, *, kind: str) -> SinkSettings | None:
    """The ``outbound:`` section at ``path`` of a data source of ``kind`` (``fhir`` or
    ``rest``); None when it has problems (recorded on ``c``)."""
    raw = _mapping(c, value, path, set(), _OUTBOUND_KEYS | {"writes"})
    if raw is None:
        return None
    if kind != "rest" and "writes" in raw:
        c.fail(f"{path}.writes", "only a rest sink has writes (a fhir sink maps entities itself)")
    ok = _count(c)
    types = _entity_types(c, raw.get("entity_types"), f"{path}.entity_types", kind=kind)
    threshold = _threshold(c, raw.get("threshold", SinkSettings().threshold), f"{path}.threshold")
    review_required = _flag(c, raw, "review_required", path)
    human_types = _names(c, raw.get("human_types"), f"{path}.human_types", _ENTITY_TYPE)
    human_fields = _names(c, raw.get("human_fields"), f"{path}.human_fields", _ENTITY_FIELD)
    budget = _budget(c, raw, path)
    hours = None
    if raw.get("business_hours") is not None:
        hours = c.hours(raw["business_hours"], f"{path}.business_hours")
    on_conflict = raw.get("on_conflict", OnConflict.REVIEW.value)
    if on_conflict not in {o.value for o in OnConflict}:
        c.fail(f"{path}.on_conflict", "expected review (a conflict for review) or dead")
        on_conflict = OnConflict.REVIEW.value
    retries = _retries(c, raw["retries"], f"{path}.retries") if "retries" in raw else None
    writes: tuple[EntityWrites, ...] = ()
    if kind == "rest":
        writes = _writes(c, raw.get("writes"), f"{path}.writes")
        if types is None:
            types = frozenset(w.entity_type for w in writes)
        else:
            for name in sorted(types - {w.entity_type for w in writes}):
                c.fail(f"{path}.entity_types", f"{name} has no entry in writes")
    if _count(c) > ok:
        return None
    return SinkSettings(
        entity_types=types,
        threshold=threshold,
        review_required=review_required,
        human_types=human_types or frozenset(),
        human_fields=human_fields or frozenset(),
        budget=budget,
        business_hours=hours,
        on_conflict=OnConflict(on_conflict),
        retries=retries or RetrySettings(),
        writes=writes,
    )


def _count(c: SinkChecks) -> int:
    return len(c.problems)


def _mapping(
    c: SinkChecks, value: Any, path: str, required: set[str], optional: set[str]
) -> dict[str, Any] | None:
    """``value`` as a mapping of known keys; an unknown key is named with the nearest known."""
    if not isinstance(value, dict):
        c.fail(path, "expected a mapping")
        return None
    known = sorted(required | optional)
    for key in value:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1) if len(str(key)) <= 64 else []
            hint = f"; did you mean {near[0]}?" if near else ""
            c.fail(f"{path}.{key}", f"unknown key {key!r}{hint}")
    for key in sorted(required - value.keys()):
        c.fail(path, f"missing key {key!r}")
    return value


def _flag(c: SinkChecks, raw: dict[str, Any], key: str, path: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        c.fail(f"{path}.{key}", "expected true or false")
        return False
    return value


def _threshold(c: SinkChecks, value: Any, path: str) -> float:
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and VOICE_CEILING < value <= 1.0
    ):
        return float(value)
    c.fail(path, "expected a number above 0.5 (voice facts never pass unjudged) and at most 1.0")
    return SinkSettings().threshold


def _names(c: SinkChecks, value: Any, path: str, pattern: re.Pattern[str]) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        c.fail(path, "expected a list of names")
        return None
    wrong = [i for i, v in enumerate(value) if not pattern.fullmatch(v)]
    if wrong:
        what = "an entity type" if pattern is _ENTITY_TYPE else "EntityType.field.path"
        c.fail(f"{path}[{wrong[0]}]", f"expected {what}")
        return None
    return frozenset(value)


def _entity_types(c: SinkChecks, value: Any, path: str, *, kind: str) -> frozenset[str] | None:
    names = _names(c, value, path, _ENTITY_TYPE)
    if names is None:
        return None
    for i, name in enumerate(value):
        if kind != "rest" and name not in ENTITY_TYPES:
            c.fail(f"{path}[{i}]", _not_first_class(name, "a fhir sink writes"))
        elif name not in ENTITY_TYPES and _near_type(name):
            c.fail(f"{path}[{i}]", _not_first_class(name, "an open type needs a name unlike"))
    return names


def _near_type(name: str) -> str | None:
    near = difflib.get_close_matches(name, sorted(ENTITY_TYPES), n=1, cutoff=0.8)
    return near[0] if near else None


def _not_first_class(name: str, what: str) -> str:
    near = difflib.get_close_matches(name, sorted(ENTITY_TYPES), n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    return f"not a first-class entity type ({hint}{what} {', '.join(sorted(ENTITY_TYPES))})"


def _budget(c: SinkChecks, raw: dict[str, Any], path: str) -> RequestBudget:
    rate = DEFAULT_BUDGET.rate
    if "rate" in raw:
        try:
            if not isinstance(raw["rate"], str):
                raise ValueError("expected a rate such as 5/s, 120/min or 1000/h")
            rate = parse_rate(raw["rate"])
        except ValueError as exc:
            c.fail(f"{path}.rate", str(exc))
    concurrency = raw.get("concurrency", DEFAULT_BUDGET.concurrency)
    if (
        not isinstance(concurrency, int)
        or isinstance(concurrency, bool)
        or not 1 <= concurrency <= MAX_CONCURRENCY
    ):
        c.fail(f"{path}.concurrency", f"expected a whole number from 1 to {MAX_CONCURRENCY}")
        concurrency = DEFAULT_BUDGET.concurrency
    return RequestBudget(rate=rate, concurrency=concurrency)


def _bounded(
    c: SinkChecks, value: Any, path: str, least: timedelta, most: timedelta
) -> timedelta | None:
    found = c.duration(value, path, at_least=least)
    if found is not None and found > most:
        c.fail(path, f"expected at most {format_duration(most)}")
        return None
    return found


def _retries(c: SinkChecks, value: Any, path: str) -> RetrySettings | None:
    raw = _mapping(c, value, path, set(), {"max_attempts", "max_age", "backoff"})
    if raw is None:
        return None
    defaults = RetrySettings()
    attempts = c.number(
        raw.get("max_attempts", defaults.max_attempts), f"{path}.max_attempts", 1, MAX_ATTEMPTS
    )
    age = defaults.max_age
    if "max_age" in raw:
        age = _bounded(c, raw["max_age"], f"{path}.max_age", *MAX_AGE) or age
    backoff = defaults.backoff
    if "backoff" in raw:
        found = _mapping(c, raw["backoff"], f"{path}.backoff", set(), {"base", "max"})
        if found is not None:
            base = backoff.base
            if "base" in found:
                base = _bounded(c, found["base"], f"{path}.backoff.base", *BACKOFF_BASE) or base
            most = max(backoff.max, base)
            if "max" in found:
                most = _bounded(c, found["max"], f"{path}.backoff.max", base, BACKOFF_MAX) or most
            backoff = Backoff(base=base, max=most)
    return RetrySettings(
        max_attempts=attempts or defaults.max_attempts, max_age=age, backoff=backoff
    )


# --- a rest sink's writes -------------------------------------------------------------------


def _writes(c: SinkChecks, value: Any, path: str) -> tuple[EntityWrites, ...]:
    if not isinstance(value, dict) or not value:
        c.fail(path, "a rest sink needs writes: a mapping of entity types to their create/update")
        return ()
    out = []
    for name, entry in value.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not _ENTITY_TYPE.fullmatch(name):
            c.fail(where, "expected an entity type such as Patient")
            continue
        if name not in ENTITY_TYPES and _near_type(name):
            c.fail(where, _not_first_class(name, "an open type needs a name unlike"))
            continue
        checked = _entry(c, entry, where, name)
        if checked is not None:
            out.append(checked)
    return tuple(out)


def _entry(c: SinkChecks, value: Any, path: str, entity_type: str) -> EntityWrites | None:
    raw = _mapping(c, value, path, set(), _WRITES_KEYS)
    if raw is None:
        return None
    ok = _count(c)
    if "create" not in raw and "update" not in raw:
        c.fail(path, "give create, update or both")
    fields = _Fields(entity_type)
    create = update = None
    if "create" in raw:
        create = _call(c, raw["create"], f"{path}.create", fields, update=False)
    if "update" in raw:
        update = _call(c, raw["update"], f"{path}.update", fields, update=True)
    header = raw.get("idempotency_header")
    if header is not None and (
        not isinstance(header, str)
        or not _HEADER_NAME.fullmatch(header)
        or header.lower() in _RESERVED_HEADERS
    ):
        c.fail(f"{path}.idempotency_header", "expected a header name such as Idempotency-Key")
        header = None
    idempotent = _flag(c, raw, "idempotent", path)
    if idempotent and "idempotency_header" not in raw:
        c.fail(f"{path}.idempotent", "name the idempotency_header the sink honours")
    lookup = None
    if "lookup" in raw:
        lookup = _lookup(c, raw["lookup"], f"{path}.lookup", fields, creates="create" in raw)
    read = _read(c, raw["read"], f"{path}.read", fields) if "read" in raw else None
    if _count(c) > ok:
        return None
    return EntityWrites(
        entity_type=entity_type,
        create=create,
        update=update,
        idempotency_header=header,
        idempotent=idempotent,
        lookup=lookup,
        read=read,
    )


class _Fields:
    """The names an entity type's templates may use."""

    def __init__(self, entity_type: str) -> None:
        self.entity_type = entity_type
        self.spec = spec_for(entity_type)

    def problem(self, name: str, *, with_id: bool) -> str | None:
        """Why ``name`` cannot be used in braces here, or None (never shows the name)."""
        if name == KEY or (name == ID and with_id):
            return None
        others = "key" + (" or id" if with_id else "")
        if name == ID:
            return "{id} is known only for an update or a read; a create's record has none yet"
        if not _FIELD.fullmatch(name):
            return f"a name in braces is a field path like name.family, or {others}"
        if self.spec is None or self.spec.field(name) is not None:
            return None
        paths = [f.path for f in self.spec.fields]
        near = difflib.get_close_matches(name, paths, n=1) if len(name) <= 200 else []
        hint = f" (did you mean {near[0]}?)" if near else ""
        return (
            f"a name in braces is not a {self.entity_type} field{hint}, {others}; "
            "see docs/entities.md"
        )


def _url(c: SinkChecks, value: Any, path: str, fields: _Fields, *, with_id: bool) -> Text | None:
    if not isinstance(value, str) or not value.strip():
        c.fail(path, "expected a URL template under the base URL such as /patients/{id}")
        return None
    if "://" in value or len(value) > MAX_URL or any(ord(ch) <= 0x20 for ch in value):
        c.fail(path, "expected a path under the base URL (no scheme, host or spaces)")
        return None
    return _text(c, value, path, fields, with_id=with_id)


def _text(c: SinkChecks, value: str, path: str, fields: _Fields, *, with_id: bool) -> Text | None:
    try:
        text = parse_text(value)
    except TemplateError as exc:
        c.fail(path, str(exc))
        return None
    bad = False
    for name in sorted(text.names):
        problem = fields.problem(name, with_id=with_id)
        if problem is not None:
            c.fail(path, problem)
            bad = True
    return None if bad else text


def _body_ok(c: SinkChecks, value: Any, path: str, fields: _Fields, *, with_id: bool) -> bool:
    if isinstance(value, str):
        return _text(c, value, path, fields, with_id=with_id) is not None
    if isinstance(value, dict):
        good = True
        for key, item in value.items():
            if not isinstance(key, str):
                c.fail(f"{path}.{key}", "a body's keys are text")
                good = False
            elif not _body_ok(c, item, f"{path}.{key}", fields, with_id=with_id):
                good = False
        return good
    if isinstance(value, list):
        results = [
            _body_ok(c, item, f"{path}[{i}]", fields, with_id=with_id)
            for i, item in enumerate(value)
        ]
        return all(results)
    if (
        value is None
        or isinstance(value, bool | int)
        or (isinstance(value, float) and math.isfinite(value))
    ):
        return True
    c.fail(path, "expected JSON values (text, numbers, true/false, null)")
    return False


def _call(
    c: SinkChecks, value: Any, path: str, fields: _Fields, *, update: bool
) -> WriteCall | None:
    keys = {"method", "body"} | (set() if update else {"id_from"})
    raw = _mapping(c, value, path, {"url", "body"}, keys)
    if raw is None:
        return None
    ok = _count(c)
    method = raw.get("method", "PUT" if update else "POST")
    if method not in ("POST", "PUT", "PATCH"):
        c.fail(f"{path}.method", "expected POST, PUT or PATCH")
    url = _url(c, raw.get("url"), f"{path}.url", fields, with_id=update) if "url" in raw else None
    body = raw.get("body")
    if "body" in raw and not isinstance(body, dict | list):
        c.fail(f"{path}.body", "expected a mapping (or list) shaped like the JSON to send")
    elif "body" in raw:
        _body_ok(c, body, f"{path}.body", fields, with_id=update)
    id_from = None
    if not update:
        given = raw.get("id_from", "id")
        id_from = given if given == LOCATION else check_expression(c, given, f"{path}.id_from")
    # parsed only once it checked out (a malformed body would raise)
    if update and url is not None and _count(c) == ok and ID not in _names_in(url, body):
        c.fail(f"{path}.url", "an update names the record as {id} in its url or body")
    if _count(c) > ok or url is None:
        return None
    return WriteCall(method=method, url=url, body=parse_body(body), id_from=id_from)


def _names_in(url: Text, body: Any) -> frozenset[str]:
    return url.names | (parse_body(body).names if body is not None else frozenset())


def _lookup(
    c: SinkChecks, value: Any, path: str, fields: _Fields, *, creates: bool
) -> LookupCall | None:
    raw = _mapping(c, value, path, {"url", "found"}, {"method", "body", "id_from"})
    if raw is None:
        return None
    ok = _count(c)
    method = raw.get("method", "GET")
    if method not in ("GET", "POST"):
        c.fail(f"{path}.method", "expected GET or POST")
    url = _url(c, raw.get("url"), f"{path}.url", fields, with_id=False) if "url" in raw else None
    body = raw.get("body")
    if body is not None:
        if not isinstance(body, dict | list):
            c.fail(f"{path}.body", "expected a mapping (or list) shaped like the JSON to send")
        else:
            _body_ok(c, body, f"{path}.body", fields, with_id=False)
    found = check_expression(c, raw["found"], f"{path}.found") if "found" in raw else None
    id_from = check_expression(c, raw["id_from"], f"{path}.id_from") if "id_from" in raw else None
    if creates and "id_from" not in raw:
        c.fail(path, "a lookup of creates needs id_from: where the found record's id is")
    if url is not None and _count(c) == ok and KEY not in _names_in(url, body):
        c.fail(f"{path}.url", "a lookup finds the write by its {key}: name it in url or body")
    if _count(c) > ok or url is None or found is None:
        return None
    return LookupCall(
        method=method,
        url=url,
        body=parse_body(body) if body is not None else None,
        found=found,
        id_from=id_from,
    )


def _read(c: SinkChecks, value: Any, path: str, fields: _Fields) -> ReadCall | None:
    raw = _mapping(c, value, path, {"url"}, {"method", "record"})
    if raw is None:
        return None
    ok = _count(c)
    method = raw.get("method", "GET")
    if method not in ("GET", "POST"):
        c.fail(f"{path}.method", "expected GET or POST")
    url = _url(c, raw.get("url"), f"{path}.url", fields, with_id=True) if "url" in raw else None
    record = check_expression(c, raw.get("record", "@"), f"{path}.record")
    if url is not None and ID not in url.names:
        c.fail(f"{path}.url", "a read names the record as {id}, e.g. /patients/{id}")
    if _count(c) > ok or url is None or record is None:
        return None
    return ReadCall(method=method, url=url, record=record)
