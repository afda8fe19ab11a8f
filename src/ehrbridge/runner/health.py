"""Health per (data source, resource type), and a summary per data source (docs/design.md §7, §12).

A pure function of the outcomes and the time: no state of its own, so ``ehrbridge status``, the
runner and the tests all see the same answer.

Each resource type is judged on its own polls. A source is **down** only when every one of its
types is down (the source itself is away: an outage, bad credentials), **healthy** when every
type is, and otherwise **degraded**, naming the types that are not healthy: one type whose
references point at a type that is not polled does not make fifteen good ones look down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ehrbridge.connectors.source import PollOutcome

Status = Literal["healthy", "degraded", "down"]
_RANK: dict[Status, int] = {"healthy": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True, kw_only=True)
class HealthPolicy:
    """When a resource type counts as degraded or down."""

    #: this many failed polls of the type in a row and it is down
    down_after_errors: int = 3
    #: no successful poll of the type for this long and it is degraded (None: never for this)
    degraded_after: timedelta | None = timedelta(minutes=30)


@dataclass(frozen=True, kw_only=True)
class TypeHealth:
    """How one resource type of one data source is doing."""

    source: str
    resource_type: str
    status: Status
    #: when its last poll (ok or not) finished
    last_poll: datetime
    #: how long since it last polled successfully (None before a first success)
    lag: timedelta | None
    #: failed polls in a row
    consecutive_errors: int
    #: the newest poll's error, when it failed
    last_error: str | None = None


@dataclass(frozen=True, kw_only=True)
class SourceHealth:
    """How one data source is doing: the summary of its resource types."""

    source: str
    status: Status
    #: when its last poll (ok or not) finished
    last_poll: datetime | None
    #: how long since its least recent resource type last polled successfully
    lag: timedelta | None
    #: failed polls in a row, the worst of its resource types
    consecutive_errors: int
    #: the worst failing type's newest error, prefixed with the type
    last_error: str | None = None
    #: the resource types that are not healthy, worst first
    failing: tuple[str, ...] = ()
    #: every resource type's health, by type
    types: tuple[TypeHealth, ...] = ()


def type_health(
    outcomes: Iterable[PollOutcome], now: datetime, policy: HealthPolicy = HealthPolicy()
) -> list[TypeHealth]:
    """Health of every (source, resource type) in ``outcomes`` (any order), sorted.

    Failures since the type's last success count as consecutive errors (``down`` at
    ``policy.down_after_errors``, ``degraded`` below that); a type with no success for longer
    than ``policy.degraded_after`` is degraded.
    """
    by_type: dict[tuple[str, str], list[PollOutcome]] = {}
    for outcome in outcomes:
        by_type.setdefault((outcome.source, outcome.resource_type), []).append(outcome)
    return [_type(key, history, now, policy) for key, history in sorted(by_type.items())]


def source_health(
    outcomes: Iterable[PollOutcome], now: datetime, policy: HealthPolicy = HealthPolicy()
) -> list[SourceHealth]:
    """Health of every source in ``outcomes`` (any order), sorted by source id: down when all
    its types are down, healthy when all are healthy, degraded otherwise."""
    per_source: dict[str, list[TypeHealth]] = {}
    for health in type_health(outcomes, now, policy):
        per_source.setdefault(health.source, []).append(health)
    return [_summary(source, parts) for source, parts in per_source.items()]


def _type(
    key: tuple[str, str], history: list[PollOutcome], now: datetime, policy: HealthPolicy
) -> TypeHealth:
    newest_first = sorted(history, key=lambda o: o.finished_at, reverse=True)
    errors = 0
    for outcome in newest_first:
        if outcome.ok:
            break
        errors += 1
    success = next((o for o in newest_first if o.ok), None)
    lag = now - success.finished_at if success is not None else None
    status: Status = "healthy"
    if errors >= policy.down_after_errors:
        status = "down"
    elif (
        errors
        or success is None
        or (policy.degraded_after is not None and lag is not None and lag > policy.degraded_after)
    ):
        status = "degraded"
    return TypeHealth(
        source=key[0],
        resource_type=key[1],
        status=status,
        last_poll=newest_first[0].finished_at,
        lag=lag,
        consecutive_errors=errors,
        last_error=newest_first[0].error if errors else None,
    )


def _summary(source: str, parts: list[TypeHealth]) -> SourceHealth:
    failing = sorted(
        (h for h in parts if h.status != "healthy"),
        key=lambda h: (-_RANK[h.status], -h.consecutive_errors, h.resource_type),
    )
    status: Status = "healthy"
    if failing:
        status = (
            "down" if len(failing) == len(parts) and failing[-1].status == "down" else "degraded"
        )
    worst = failing[0] if failing else None
    lags = [h.lag for h in parts]
    return SourceHealth(
        source=source,
        status=status,
        last_poll=max(h.last_poll for h in parts),
        lag=None
        if any(lag is None for lag in lags)
        else max(lag for lag in lags if lag is not None),
        consecutive_errors=max(h.consecutive_errors for h in parts),
        last_error=(
            f"{worst.resource_type}: {worst.last_error}"
            if worst is not None and worst.last_error
            else None
        ),
        failing=tuple(h.resource_type for h in failing),
        types=tuple(parts),
    )
