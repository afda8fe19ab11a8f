"""A sink's settings: the ``outbound:`` section of a data source in the runner config
(docs/sinks.md).

A data source with an ``outbound:`` section is also a sink. Its settings say what it takes (the
gate's :class:`~ehrbridge.outbound.gates.SinkPolicy`, built by :meth:`SinkSettings.policy`), how
fast and how many at once the dispatcher may send to it (a request budget named
``sink:<id>``, apart from the source's polling budget), when (business hours), what a conflict
does, how failed deliveries are retried, and, for a ``rest`` sink, how each entity type is
written (:mod:`ehrbridge.outbound.sinks.restwrites`). The runner's config checker builds them
(:mod:`ehrbridge.runner.sinkconfig`); this layer never reads the config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from ehrbridge.budget import DEFAULT_BUDGET, RequestBudget
from ehrbridge.outbound.gates import DEFAULT_THRESHOLD, SinkPolicy
from ehrbridge.outbound.sinks.restwrites import EntityWrites


class OnConflict(StrEnum):
    """What a write that would overwrite a newer change at the sink becomes."""

    #: a conflict event for an operator's review; the item is parked as ``conflict``
    REVIEW = "review"
    #: the item is parked as a dead letter with the conflict as its reason
    DEAD = "dead"


class Window(Protocol):
    """When writes may go to the sink (the source's business hours,
    :class:`~ehrbridge.connectors.schedule.BusinessHours`)."""

    def is_open(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) is inside the window."""
        ...

    def next_open(self, moment: datetime) -> datetime:
        """The first moment at or after ``moment`` inside the window."""
        ...


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """The wait before a retry: exponential from ``base``, at most ``max`` (before jitter)."""

    base: timedelta = timedelta(seconds=1)
    max: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    """How long a failing delivery is retried before it is parked as a dead letter."""

    #: attempts in all, the first included
    max_attempts: int = 10
    #: no retry once the item is this old (since it was queued)
    max_age: timedelta = timedelta(hours=24)
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True, kw_only=True)
class SinkSettings:
    """The ``outbound:`` section of one data source."""

    #: the entity types it takes (None: any its kind can write; a ``rest`` sink's are the types
    #: it has ``writes`` for)
    entity_types: frozenset[str] | None = None
    #: the least confidence a fact needs to be sent
    threshold: float = DEFAULT_THRESHOLD
    #: every fact below the threshold at its source needs a human's approval
    review_required: bool = False
    #: entity types whose facts always need a human
    human_types: frozenset[str] = frozenset()
    #: fields that always need a human, as ``EntityType.field``
    human_fields: frozenset[str] = frozenset()
    #: requests per second (all runners together) and the most in flight at once (per runner);
    #: the adaptive limit works below that concurrency
    budget: RequestBudget = DEFAULT_BUDGET
    #: writes go only inside this window; None: at any time
    business_hours: Window | None = None
    on_conflict: OnConflict = OnConflict.REVIEW
    retries: RetrySettings = field(default_factory=RetrySettings)
    #: a ``rest`` sink's writes, one per entity type (empty for other kinds)
    writes: tuple[EntityWrites, ...] = ()

    def policy(self, sink: str) -> SinkPolicy:
        """The gate's policy for this sink (``sink``: the data source's id).

        >>> SinkSettings(threshold=0.9).policy("ehr").threshold
        0.9
        """
        return SinkPolicy(
            sink=sink,
            entity_types=self.entity_types,
            threshold=self.threshold,
            review_required=self.review_required,
            human_types=self.human_types,
            human_fields=self.human_fields,
        )

    def writes_for(self, entity_type: str) -> EntityWrites | None:
        """The ``writes`` entry of ``entity_type``, or None."""
        return next((w for w in self.writes if w.entity_type == entity_type), None)
