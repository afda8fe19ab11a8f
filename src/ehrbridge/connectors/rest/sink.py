"""The :class:`~ehrbridge.outbound.sinks.rest.RestSink` of a ``kind: rest`` data source with an
``outbound:`` section, set up as the connector sets up its reads: the same auth, headers and
timeout, and, for each entity type the source also polls, its field mappings, so a record the
sink reads back is compared in canonical fields (docs/sinks.md).

The composition root calls :func:`rest_sink`; the outbound layer knows only the sink.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ehrbridge.budget import BudgetRegistry, BudgetTransport
from ehrbridge.connectors.rest.auth import rest_auth
from ehrbridge.connectors.rest.mapping import map_record
from ehrbridge.connectors.rest.spec import RestResource, RestSettings
from ehrbridge.connectors.rest.transforms import Context
from ehrbridge.connectors.source import DataSourceConfig
from ehrbridge.errors import InvalidInput
from ehrbridge.outbound.sinks.rest import RestSink


class MappedReader:
    """A record of one resource in canonical fields, by the resource's field mappings
    (:class:`~ehrbridge.outbound.sinks.restpayload.RecordReader`)."""

    def __init__(self, resource: RestResource, ctx: Context) -> None:
        self.resource, self.ctx = resource, ctx
        #: the fields it maps to values (reference fields come out as lookups: not compared)
        self.fields = frozenset(f.name for f in resource.fields if f.link is None)

    def __call__(self, record: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The record's canonical fields, or None when the mapping refuses it."""
        try:
            return map_record(self.resource, record, self.ctx).data
        except InvalidInput:  # RecordError: the record has no id, a value will not transform
            return None


def sink_budget(sink_id: str) -> str:
    """The request budget name of a sink (apart from the source's polling budget).

    >>> sink_budget("clinic-api")
    'sink:clinic-api'
    """
    return f"sink:{sink_id}"


def rest_sink(
    source: DataSourceConfig,
    *,
    budgets: BudgetRegistry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RestSink:
    """The sink of ``source``; with ``budgets``, each request goes under the sink's request
    budget (``outbound.rate`` and ``outbound.concurrency``, all runners together)."""
    settings = source.outbound
    if source.kind != "rest" or settings is None:
        raise InvalidInput(f"data source {source.id} is not a rest sink")
    rest = source.rest or RestSettings()
    ctx = Context(timezone=rest.timezone, dayfirst=rest.dayfirst, phone_region=rest.phone_region)
    readers = {r.type: MappedReader(r.rest, ctx) for r in source.resources if r.rest is not None}
    inner: httpx.AsyncBaseTransport | None = transport
    if budgets is not None:
        budget = budgets.budget(sink_budget(source.id), settings.budget)
        inner = BudgetTransport(budget, transport)
    return RestSink(
        source.id,
        source.base_url,
        settings.writes,
        auth=rest_auth(source.auth, transport=transport),
        headers=rest.headers,
        timeout=rest.timeout.total_seconds(),
        transport=inner,
        readers=readers,
    )
