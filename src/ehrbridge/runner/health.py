"""Health per data source, derived from the recorded poll outcomes (DESIGN §7, §12).

A pure function of the outcomes and the time: no state of its own, so ``ehrbridge status``, the
runner and the tests all see the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ehrbridge.runner.storage import PollOutcome

Status = Literal["healthy", "degraded", "down"]
_RANK: dict[Status, int] = {"healthy": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True, kw_only=True)
class HealthPolicy:
    """When a data source counts as degraded or down."""

    #: this many failed polls in a row (of any of its resource types) and it is down
    down_after_errors: int = 3
    #: no successful poll for this long and it is degraded (None: never for this reason)
    degraded_after: timedelta | None = timedelta(minutes=30)


@dataclass(frozen=True, kw_only=True)
class SourceHealth:
    """How one data source is doing."""

    source: str
    status: Status
    #: when its last poll (ok or not) finished
    last_poll: datetime | None
    #: how long since its least recent resource type last polled successfully
    lag: timedelta | None
    #: failed polls in a row, the worst of its resource types
    consecutive_errors: int
    #: the newest error, if the newest poll of some resource type failed
    last_error: str | None = None


def source_health(
    outcomes: Iterable[PollOutcome], now: datetime, policy: HealthPolicy = HealthPolicy()
) -> list[SourceHealth]:
    """Health of every source in ``outcomes`` (any order), sorted by source id.

    Per resource type: failures since its last success count as consecutive errors (``down`` at
    ``policy.down_after_errors``, ``degraded`` below that); a type with no success for longer
    than ``policy.degraded_after`` is degraded. A source is as bad as its worst type.
    """
    by_type: dict[tuple[str, str], list[PollOutcome]] = {}
    for outcome in outcomes:
        by_type.setdefault((outcome.source, outcome.resource_type), []).append(outcome)
    per_source: dict[str, list[SourceHealth]] = {}
    for (source, _), history in by_type.items():
        per_source.setdefault(source, []).append(_type_health(source, history, now, policy))
    return [_worst(source, parts) for source, parts in sorted(per_source.items())]


def _type_health(
    source: str, history: list[PollOutcome], now: datetime, policy: HealthPolicy
) -> SourceHealth:
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
    return SourceHealth(
        source=source,
        status=status,
        last_poll=newest_first[0].finished_at,
        lag=lag,
        consecutive_errors=errors,
        last_error=newest_first[0].error if errors else None,
    )


def _worst(source: str, parts: list[SourceHealth]) -> SourceHealth:
    worst = max(parts, key=lambda h: (_RANK[h.status], h.consecutive_errors))
    lags = [h.lag for h in parts]
    return SourceHealth(
        source=source,
        status=worst.status,
        last_poll=max(h.last_poll for h in parts if h.last_poll is not None),
        lag=None
        if any(lag is None for lag in lags)
        else max(lag for lag in lags if lag is not None),
        consecutive_errors=max(h.consecutive_errors for h in parts),
        last_error=worst.last_error,
    )
