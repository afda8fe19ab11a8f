"""The runner's config: the types :mod:`ehrbridge.runner.configfile` reads from the YAML file.

A data source's part (:class:`~ehrbridge.connectors.source.DataSourceConfig`) belongs to the
connector contract; this module holds the whole file and the runner's own sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from ehrbridge.connectors.source import DataSourceConfig, SecretRef
from ehrbridge.review.loop import ReviewPolicy


@dataclass(frozen=True, kw_only=True)
class Timing:
    """How often the runner looks at things."""

    #: re-read the config file this often even if it looks unchanged
    refresh_every: timedelta = timedelta(seconds=60)
    #: look at the config file's modification time this often
    watch_every: timedelta = timedelta(seconds=1)
    #: a poll lease lasts at least this long (or two cadences, whichever is longer)
    lease_ttl: timedelta = timedelta(minutes=5)
    #: the reconcile loop reads back what the sinks acknowledged this often
    reconcile_every: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Where ``ehrbridge run`` serves ``GET /metrics`` (:mod:`.metrics`)."""

    #: the address to listen on; loopback unless a scraper elsewhere needs it
    host: str = "127.0.0.1"
    #: 0 picks a free port
    port: int = 9464
    #: the Bearer token a scrape must present; required unless ``host`` is loopback
    token: SecretRef | None = None


#: the judges a ``review:`` section may name
JUDGES = ("grounding", "llm", "policy")


@dataclass(frozen=True, kw_only=True)
class LlmConfig:
    """The ``review.llm`` section: the OpenAI-compatible endpoint the LLM judge asks."""

    base_url: str
    model: str
    #: the API key, a reference (``{env: NAME}`` or ``{file: PATH}``); None sends none
    api_key: SecretRef | None = None
    timeout: timedelta = timedelta(seconds=30)
    #: ``json_schema`` (OpenAI) or ``json_object`` (llama-cpp-python's server)
    response_format: str = "json_schema"


@dataclass(frozen=True, kw_only=True)
class ReviewConfig:
    """The ``review:`` section: which judge the review loop asks, and what its verdicts do."""

    #: ``grounding`` (offline, the default), ``llm``, or ``policy`` (grounding, then the LLM
    #: for what grounding leaves unsure)
    judge: str = "grounding"
    #: what the verdicts do with a fact (time zone, contradictions, what needs a human)
    policy: ReviewPolicy = field(default_factory=ReviewPolicy)
    #: the LLM judge's endpoint (required for ``llm`` and ``policy``)
    llm: LlmConfig | None = None


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
    #: the ``review:`` section; None runs no review loop
    review: ReviewConfig | None = None
