"""The connector contract: what a data source's config holds, what a poller does with it, and
what it keeps between polls.

The runner reads the config (:mod:`ehrbridge.runner.configfile`), runs each :class:`Poller` on
its cadence, times each poll and turns what it counted or raised into its :class:`PollOutcome`
(:mod:`ehrbridge.runner.polling`), and implements :class:`PollState` on its database;
connectors depend on this module, never on the runner.

Secret references (:class:`SecretRef`): a config names where a secret lives, never the secret
itself (docs/design.md §11). A reference is ``{env: NAME}`` (an environment variable) or
``{file: PATH}`` (a file, read when the secret is needed). The value is read at use and never
kept on the reference, so no repr, log line or error can show it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from ehrbridge.budget import DEFAULT_BUDGET, RequestBudget
from ehrbridge.connectors.rest.spec import RestResource, RestSettings
from ehrbridge.connectors.schedule import BusinessHours
from ehrbridge.errors import InvalidInput
from ehrbridge.outbound.settings import SinkSettings

SourceKind = Literal["fhir", "rest", "file_drop"]
AuthKind = Literal["none", "basic", "bearer", "smart", "api_key", "oauth2"]


@dataclass(frozen=True, kw_only=True)
class SecretRef:
    """Where a secret is: an environment variable or a file.

    >>> SecretRef(env="EHR_TOKEN", where="config.yaml:9: data_sources[0].auth.token")
    SecretRef(env='EHR_TOKEN')
    """

    env: str | None = None
    file: Path | None = None
    #: ``config.yaml:14: data_sources[1].auth.token``, for errors
    where: str = ""

    def __repr__(self) -> str:
        return f"SecretRef(env={self.env!r})" if self.env else f"SecretRef(file={self.file!r})"

    def resolve(self) -> str:
        """The secret's value now; an :class:`InvalidInput` naming the reference if missing."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise InvalidInput(f"{self.where}: environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            return self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidInput(
                f"{self.where}: cannot read secret file {self.file}: {exc.strerror}"
            ) from None


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
    #: the ``outbound:`` section: the source is also a sink (None: it takes no writes)
    outbound: SinkSettings | None = None


@dataclass(frozen=True, kw_only=True)
class PollOutcome:
    """What one poll of one (data source, resource type) did."""

    workspace: str
    source: str
    resource_type: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    #: why the poll failed, never patient data (error class and message)
    error: str | None = None
    #: resources read from the source
    fetched: int = 0
    #: events written to the world model
    events: int = 0
    #: resources read whose version was already stored (skipped before mapping)
    unchanged: int = 0


@dataclass(kw_only=True)
class Polled:
    """What a poll did so far: the poller counts into it while it runs, and the runner turns it
    into the :class:`PollOutcome` (:func:`ehrbridge.runner.polling.poll_once`), so the counts of a
    poll that failed halfway are kept."""

    #: resources read from the source
    fetched: int = 0
    #: events written to the world model
    events: int = 0
    #: resources read whose version was already stored (skipped before mapping)
    unchanged: int = 0
    #: a partial failure the poll reports without raising (entries not imported, files that
    #: failed): the outcome's error, never patient data
    problem: str | None = None


class Cursors(Protocol):
    """Where each poll stands, as opaque text the poller understands."""

    async def get_cursor(self, workspace: str, source: str, resource_type: str) -> str | None:
        """The stored cursor, or None before the first successful poll."""

    async def set_cursor(
        self, workspace: str, source: str, resource_type: str, cursor: str
    ) -> None:
        """Store the cursor (only after what it covers is stored)."""


class RecordVersions(Protocol):
    """The version of each record a data source sent that is stored in the world model.

    A token is the source's version id or a digest of the record (:mod:`ehrbridge.connectors`
    decides); a poll skips a record whose token is unchanged, before mapping or storing it.
    """

    async def known_versions(
        self, workspace: str, source: str, resource_type: str, record_ids: Collection[str]
    ) -> dict[str, str]:
        """Record id -> stored token, for those of ``record_ids`` that have one."""

    async def remember_versions(
        self, workspace: str, source: str, resource_type: str, tokens: Mapping[str, str]
    ) -> None:
        """Store record id -> token (only after the records are stored in the world model)."""


class PollState(Cursors, RecordVersions, Protocol):
    """What a poller keeps between polls."""


class Poller(Protocol):
    """Reads what changed at a data source since the last poll and stores it."""

    async def poll(
        self, source: DataSourceConfig, resource: ResourceConfig, polled: Polled
    ) -> None:
        """Poll once, counting into ``polled``. A failure the source or the data caused raises
        an :class:`~ehrbridge.errors.EhrbridgeError` (a source error, ``InvalidInput``, ...): the
        runner makes it the outcome's error. Records or files that failed while the rest were
        stored go in ``polled.problem``. Anything else raised is a bug, and stops the runner
        loudly."""

    async def aclose(self) -> None:
        """Release connections."""
