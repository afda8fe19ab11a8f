"""The :class:`~ehrbridge.outbound.sinks.rest.RestSink` of a ``kind: rest`` data source with an
``outbound:`` section, set up as the connector sets up its reads: the same auth, headers and
timeout (docs/sinks.md).

The composition root calls :func:`rest_sink`; the outbound layer knows only the sink.
"""

from __future__ import annotations

import httpx

from ehrbridge.budget import BudgetRegistry, BudgetTransport
from ehrbridge.connectors.rest.auth import rest_auth
from ehrbridge.connectors.rest.spec import RestSettings
from ehrbridge.connectors.source import DataSourceConfig
from ehrbridge.errors import InvalidInput
from ehrbridge.outbound.sinks.rest import RestSink


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
    )
