"""Prometheus metrics of the runner: poll counters, durations, and health per data source and
per (data source, resource type); and the outbound half's, per sink (:mod:`.outboxmetrics`).

Each :class:`RunnerMetrics` has its own ``CollectorRegistry`` (never the global one), so tests
and several runners in one process don't collide. Labels are data source ids, resource types and
outcomes only: never patient data.

The health gauges are derived at scrape time with :func:`~ehrbridge.runner.health.source_health`
from the outcomes the runner knows: those loaded from the poll log (:meth:`RunnerMetrics.seed`,
refreshed by the runner's ``metrics`` loop, so polls by other runners count too) and those it
recorded since. The lag therefore grows between polls, as it should.

With a token (``runner.metrics.token``, required off loopback) a scrape must present it as
``Authorization: Bearer <token>`` (compared in constant time); anything else gets 401 with
``WWW-Authenticate: Bearer``. The endpoint logs no requests.
"""

from __future__ import annotations

import hmac
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer

from ehrbridge.connectors.source import PollOutcome
from ehrbridge.outbound.outbox import SinkDepth, SinkState
from ehrbridge.runner.health import HealthPolicy, Status, source_health
from ehrbridge.runner.outboxmetrics import OutboxCollector

#: poll durations in seconds: a poll takes from milliseconds (nothing new) to minutes (backfill)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
SOURCE_TYPE = ("source", "resource_type")
#: the values of the ``state`` label of ``ehrbridge_source_health``
STATES: tuple[Status, ...] = get_args(Status)


class RunnerMetrics:
    """The runner's metrics on a registry of their own; :meth:`record` each poll outcome."""

    def __init__(
        self,
        *,
        policy: HealthPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        #: what ``/metrics`` serves
        self.registry = CollectorRegistry()
        self.polls = Counter(
            "ehrbridge_polls",
            "Polls finished, by data source, resource type and outcome (ok or failed).",
            [*SOURCE_TYPE, "outcome"],
            registry=self.registry,
        )
        self.fetched = Counter(
            "ehrbridge_resources_fetched",
            "Resources read from the data source.",
            SOURCE_TYPE,
            registry=self.registry,
        )
        self.unchanged = Counter(
            "ehrbridge_resources_unchanged",
            "Resources read whose version was already stored, skipped before mapping.",
            SOURCE_TYPE,
            registry=self.registry,
        )
        self.events = Counter(
            "ehrbridge_events_written",
            "Events written to the world model.",
            SOURCE_TYPE,
            registry=self.registry,
        )
        self.duration = Histogram(
            "ehrbridge_poll_duration_seconds",
            "How long each poll took.",
            SOURCE_TYPE,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._outcomes: list[PollOutcome] = []
        # The HTTP server's thread reads the outcomes while the event loop adds to them.
        self._lock = threading.Lock()
        self.registry.register(_HealthCollector(self._snapshot, policy or HealthPolicy(), clock))
        self._outbox = OutboxCollector(clock)
        self.registry.register(self._outbox)

    def record(self, outcome: PollOutcome) -> None:
        """Count one poll's outcome."""
        labels = (outcome.source, outcome.resource_type)
        self.polls.labels(*labels, "ok" if outcome.ok else "failed").inc()
        self.fetched.labels(*labels).inc(outcome.fetched)
        self.unchanged.labels(*labels).inc(outcome.unchanged)
        self.events.labels(*labels).inc(outcome.events)
        seconds = (outcome.finished_at - outcome.started_at).total_seconds()
        self.duration.labels(*labels).observe(max(seconds, 0.0))
        with self._lock:
            self._outcomes.append(outcome)

    def seed(self, outcomes: Iterable[PollOutcome]) -> None:
        """Replace the outcomes health is derived from (the poll log's recent ones)."""
        fresh = list(outcomes)
        with self._lock:
            self._outcomes = fresh

    def seed_outbox(self, depths: Iterable[SinkDepth], states: Iterable[SinkState]) -> None:
        """Replace the outbox depths and the dispatchers' sink states the outbound metrics are
        derived from (the store's latest)."""
        self._outbox.seed(depths, states)

    def _snapshot(self) -> list[PollOutcome]:
        with self._lock:
            return list(self._outcomes)

    def serve(self, host: str, port: int, *, token: str | None = None) -> MetricsServer:
        """Serve ``GET /metrics`` on ``host:port`` (0: any free port) in a background thread;
        with ``token``, only to scrapes that present it as a Bearer token."""
        app = make_wsgi_app(self.registry)
        if token is not None:
            app = _bearer_only(app, token)

        class Server(ThreadingWSGIServer):
            address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

        server = make_server(host, port, app, Server, handler_class=_Quiet)
        thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        thread.start()
        return MetricsServer(server=server, thread=thread)


@dataclass(frozen=True, kw_only=True)
class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`close` stops it and frees the port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port it listens on (the chosen one when asked for port 0)."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving and close the socket (blocks for up to half a second)."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Quiet(WSGIRequestHandler):
    """No request log lines (the runner logs what it does itself)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _bearer_only(app: Any, token: str) -> Any:
    """``app`` behind a Bearer token check."""
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        presented = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if hmac.compare_digest(presented, expected):
            return app(environ, start_response)
        body = b"a Bearer token is required\n"
        start_response(
            "401 Unauthorized",
            [
                ("WWW-Authenticate", 'Bearer realm="ehrbridge runner metrics"'),
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    return guarded


class _HealthCollector:
    """Per data source gauges, computed from the outcomes at each scrape."""

    def __init__(
        self,
        outcomes: Callable[[], list[PollOutcome]],
        policy: HealthPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self.outcomes = outcomes
        self.policy = policy
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "ehrbridge_source_health",
            "1 for the data source's health state (healthy, degraded, down), 0 for the others.",
            labels=["source", "state"],
        )
        lag = GaugeMetricFamily(
            "ehrbridge_source_lag_seconds",
            "Seconds since the source's least recent resource type last polled successfully.",
            labels=["source"],
        )
        errors = GaugeMetricFamily(
            "ehrbridge_source_consecutive_errors",
            "Failed polls in a row, the worst of the source's resource types.",
            labels=["source"],
        )
        last = GaugeMetricFamily(
            "ehrbridge_source_last_poll_timestamp_seconds",
            "When the source's last poll finished (Unix time).",
            labels=["source"],
        )
        type_state = GaugeMetricFamily(
            "ehrbridge_resource_type_health",
            "1 for the resource type's health state (healthy, degraded, down), 0 for the others.",
            labels=[*SOURCE_TYPE, "state"],
        )
        type_lag = GaugeMetricFamily(
            "ehrbridge_resource_type_lag_seconds",
            "Seconds since the resource type last polled successfully.",
            labels=list(SOURCE_TYPE),
        )
        type_errors = GaugeMetricFamily(
            "ehrbridge_resource_type_consecutive_errors",
            "Failed polls of the resource type in a row.",
            labels=list(SOURCE_TYPE),
        )
        for health in source_health(self.outcomes(), self.clock(), self.policy):
            for name in STATES:
                state.add_metric([health.source, name], 1.0 if health.status == name else 0.0)
            if health.lag is not None:
                lag.add_metric([health.source], health.lag.total_seconds())
            errors.add_metric([health.source], float(health.consecutive_errors))
            if health.last_poll is not None:
                last.add_metric([health.source], health.last_poll.timestamp())
            for part in health.types:
                labels = [part.source, part.resource_type]
                for name in STATES:
                    type_state.add_metric([*labels, name], 1.0 if part.status == name else 0.0)
                if part.lag is not None:
                    type_lag.add_metric(labels, part.lag.total_seconds())
                type_errors.add_metric(labels, float(part.consecutive_errors))
        yield from (state, lag, errors, last, type_state, type_lag, type_errors)
