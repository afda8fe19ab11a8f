"""The checks that build a data source's ``outbound:`` section (its sink settings) from the YAML
(docs/sinks.md).

The config checker (:mod:`ehrbridge.runner.configfile`) calls :func:`check_outbound` with
itself as the :class:`SinkChecks`, so every problem names the file, the line and the key path,
never a value; an unknown key is refused with the nearest known one. What it builds is
:class:`~ehrbridge.outbound.settings.SinkSettings`.

A rest sink's ``writes:`` are checked by :mod:`.sinkwrites`.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

from ehrbridge.budget import DEFAULT_BUDGET, MAX_CONCURRENCY, RequestBudget, parse_rate
from ehrbridge.outbound.settings import Backoff, OnConflict, RetrySettings, SinkSettings
from ehrbridge.outbound.sinks.restwrites import EntityWrites
from ehrbridge.runner.durations import format_duration
from ehrbridge.runner.sinkchecks import (
    ENTITY_TYPE,
    SinkChecks,
    count,
    flag,
    mapping,
    near_type,
    not_first_class,
)
from ehrbridge.runner.sinkwrites import check_writes
from ehrbridge.worldmodel.entities import ENTITY_TYPES

_ENTITY_FIELD = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}(\.[a-z_][a-z0-9_]{0,63})+$")
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


def check_outbound(c: SinkChecks, value: Any, path: str, *, kind: str) -> SinkSettings | None:
    """The ``outbound:`` section at ``path`` of a data source of ``kind`` (``fhir`` or
    ``rest``); None when it has problems (recorded on ``c``)."""
    raw = mapping(c, value, path, set(), _OUTBOUND_KEYS | {"writes"})
    if raw is None:
        return None
    if kind != "rest" and "writes" in raw:
        c.fail(f"{path}.writes", "only a rest sink has writes (a fhir sink maps entities itself)")
    ok = count(c)
    types = _entity_types(c, raw.get("entity_types"), f"{path}.entity_types", kind=kind)
    threshold = _threshold(c, raw.get("threshold", SinkSettings().threshold), f"{path}.threshold")
    review_required = flag(c, raw, "review_required", path)
    human_types = _names(c, raw.get("human_types"), f"{path}.human_types", ENTITY_TYPE)
    human_fields = _names(c, raw.get("human_fields"), f"{path}.human_fields", _ENTITY_FIELD)
    budget = _budget(c, raw, path)
    hours = None
    if raw.get("business_hours") is not None:
        hours = c.hours(raw["business_hours"], f"{path}.business_hours")
    on_conflict = raw.get("on_conflict", OnConflict.REVIEW.value)
    if on_conflict not in tuple(o.value for o in OnConflict):  # a tuple: the value may be a list
        c.fail(f"{path}.on_conflict", "expected review (a conflict for review) or dead")
        on_conflict = OnConflict.REVIEW.value
    retries = _retries(c, raw["retries"], f"{path}.retries") if "retries" in raw else None
    writes: tuple[EntityWrites, ...] = ()
    if kind == "rest":
        writes = check_writes(c, raw.get("writes"), f"{path}.writes")
        if types is None:
            types = frozenset(w.entity_type for w in writes)
        else:
            for name in sorted(types - {w.entity_type for w in writes}):
                c.fail(f"{path}.entity_types", f"{name} has no entry in writes")
    if count(c) > ok:
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
        what = "an entity type" if pattern is ENTITY_TYPE else "EntityType.field.path"
        c.fail(f"{path}[{wrong[0]}]", f"expected {what}")
        return None
    return frozenset(value)


def _entity_types(c: SinkChecks, value: Any, path: str, *, kind: str) -> frozenset[str] | None:
    names = _names(c, value, path, ENTITY_TYPE)
    if names is None:
        return None
    for i, name in enumerate(value):
        if kind != "rest" and name not in ENTITY_TYPES:
            c.fail(f"{path}[{i}]", not_first_class(name, "a fhir sink writes"))
        elif name not in ENTITY_TYPES and near_type(name):
            c.fail(f"{path}[{i}]", not_first_class(name, "an open type needs a name unlike"))
    return names


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
    raw = mapping(c, value, path, set(), {"max_attempts", "max_age", "backoff"})
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
        found = mapping(c, raw["backoff"], f"{path}.backoff", set(), {"base", "max"})
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
