"""Every Prometheus metric Cairn exports, defined once, with small hooks for the call sites.

One module so that names stay consistent and follow Prometheus conventions (counters end
in `_total`, durations are `_seconds`, sizes `_bytes`; prometheus_client adds `_total` to a
Counter's name itself), and so that a metric is registered once per process whichever
modules that process imports. Each process kind exposes its own: the api on its HTTP port
at /metrics, the other kinds on CAIRN_METRICS_PORT (`serve`, below). Gauges that are
computed from Postgres (relay and projection lag in events, at most once per a few seconds
per process, api/routes/ops.py) live with the api's /metrics handler's query, but are
defined here too, and exported by the api only (`export_lag_gauges`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

# ---- HTTP (api) ------------------------------------------------------------------------

# Latency buckets from a cached 404 (ms) to a large chunk on a slow link (minutes).
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "cairn_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "cairn_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by method, route and status.",
    ["method", "route", "status"],
    buckets=_HTTP_BUCKETS,
)
HTTP_REQUEST_BYTES = Counter(
    "cairn_http_request_body_bytes", "Request body bytes received, by route.", ["route"]
)
HTTP_RESPONSE_BYTES = Counter(
    "cairn_http_response_body_bytes", "Response body bytes sent, by route.", ["route"]
)
TRANSFERS_IN_FLIGHT = Gauge(
    "cairn_transfers_in_flight",
    "Uploads (chunk PUTs, tus creation and PATCHes) and downloads (file content) in progress.",
    ["direction"],
)

# ---- commands --------------------------------------------------------------------------

_COMMAND_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15)

COMMANDS_SENT = Counter(
    "cairn_commands_sent",
    "Commands sent over the bus and awaited (api, handlers), by type and outcome:"
    " ok, refused (a domain error), unavailable (bus down or no answer in time).",
    ["type", "outcome"],
)
COMMAND_REPLIES = Counter(
    "cairn_command_replies",
    "Which copy of an awaited command's reply answered it (api, handlers): notify (Postgres"
    " NOTIFY, bus/actors/fastreply.py) or kafka (the reply topic). Mostly kafka with a pool"
    " means the LISTEN connection is down or the replies are too long to notify.",
    ["via"],
)
COMMAND_ROUND_TRIP = Histogram(
    "cairn_command_round_trip_seconds",
    "From sending a command to the actor's answer, by type (answered commands only).",
    ["type"],
    buckets=_COMMAND_BUCKETS,
)
COMMANDS_HANDLED = Counter(
    "cairn_commands_handled",
    "Commands executed by the actors, by type and outcome: applied (events appended),"
    " unchanged (nothing to append), duplicate (already applied), refused (domain error),"
    " failed (an exception; the command is redelivered).",
    ["type", "outcome"],
)
COMMAND_TOPICS_RECYCLED = Counter(
    "cairn_command_topics_recycled",
    "Command topics the actor host deleted and created empty once a partition had carried"
    " CAIRN_KAFKA_COMMAND_RECYCLE_AFTER commands (the embedded broker; bus/actors/recycle.py).",
    ["topic"],
)
COMMAND_PUBLISH_RETRIES = Counter(
    "cairn_command_publish_retries",
    "Command publishes repeated after the broker answered with an unknown error (the"
    " embedded broker does in the moment a command topic is recycled).",
)
COMMANDS_RESENT = Counter(
    "cairn_commands_resent",
    "Commands a sender sent again, by why: recycled (their command topic was recycled while"
    " they waited) or channel_lost (the LISTEN connection for their reply ended).",
    ["why"],
)

# ---- event store, relay, projections ---------------------------------------------------

EVENTS_APPENDED = Counter(
    "cairn_events_appended", "Events appended to the event store, by type.", ["type"]
)
EVENT_STORE_POSITION = Gauge(
    "cairn_eventstore_last_position",
    "Position of the newest event in the event store (read from Postgres, at most"
    " cairn_lag_gauges_age_seconds old).",
    registry=None,  # the api exports it: see LagGaugesCollector
)
RELAY_LAG = Gauge(
    "cairn_relay_lag_events",
    "Events appended but not yet published to Kafka (read from Postgres, at most"
    " cairn_lag_gauges_age_seconds old).",
    registry=None,
)
LAG_GAUGES_AGE = Gauge(
    "cairn_lag_gauges_age_seconds",
    "Age of the figures read from Postgres (cairn_eventstore_last_position,"
    " cairn_relay_lag_events, cairn_projection_lag_events): under 5 normally; growing while"
    " Postgres does not answer (they keep their last values); +Inf before the first read.",
    registry=None,
)
RELAY_PUBLISHED_POSITION = Gauge(
    "cairn_relay_published_position", "Position of the last event acknowledged by Kafka", ["relay"]
)
RELAY_PUBLISHED = Counter("cairn_relay_published_events", "Events published to Kafka", ["relay"])
RELAY_PUBLISH_ERRORS = Counter(
    "cairn_relay_publish_errors", "Publish attempts that failed on Kafka (then retried)", ["relay"]
)
RELAY_LEADER = Gauge(
    "cairn_relay_leader", "1 while this process is the publishing relay", ["relay"]
)
PROJECTION_LAG_EVENTS = Gauge(
    "cairn_projection_lag_events",
    "Events of a projection's streams not yet applied by it (read from Postgres, at most"
    " cairn_lag_gauges_age_seconds old).",
    ["projection"],
    registry=None,
)
PROJECTION_LAG_SECONDS = Gauge(
    "cairn_projection_lag_seconds",
    "Age of the last applied event when it was applied (now - occurred_at); 0 while idle"
    " at the head of the topics.",
    ["projection"],
)
PROJECTION_EVENTS_APPLIED = Counter(
    "cairn_projection_events_applied",
    "Events applied to a projection (gap fills included, duplicates excluded).",
    ["projection"],
)
PROJECTION_DUPLICATES_SKIPPED = Counter(
    "cairn_projection_duplicates_skipped",
    "Deliveries skipped because the projection had already applied the event.",
    ["projection"],
)
PROJECTION_PARTITIONS_HELD = Gauge(
    "cairn_projection_partitions_held",
    "Partitions this projector holds before an event of a newer schema version than its"
    " code reads (a rolling upgrade in progress, or a rollback): nothing from that event on"
    " is applied until a projector that knows the version runs.",
)
PROJECTION_EVENTS_HELD = Gauge(
    "cairn_projection_events_held",
    "Events the projector is held at because their schema version is newer than its code"
    " reads (readmodel.schema_holds; read from Postgres, at most"
    " cairn_lag_gauges_age_seconds old).",
    registry=None,
)

# The five above are the api's: it reads them from Postgres (api/routes/ops.py, LagGauges)
# and exports them through this collector, registered by its lifespan only. Registered
# with every other metric, every other kind exported them too, never set (the relay's
# `cairn_relay_lag_events 0`, `cairn_lag_gauges_age_seconds 0`, ...).
POSTGRES_GAUGES = (
    EVENT_STORE_POSITION,
    RELAY_LAG,
    LAG_GAUGES_AGE,
    PROJECTION_LAG_EVENTS,
    PROJECTION_EVENTS_HELD,
)


class LagGaugesCollector:
    """Exports POSTGRES_GAUGES, first calling the newest hook given to `export_lag_gauges`
    (the api's refresh, for a scrape of its metrics port: bus/run/cli.py)."""

    def __init__(self) -> None:
        self.hooks: list[Callable[[], None]] = []
        self.registered = False

    def describe(self) -> Iterator[Any]:
        for g in POSTGRES_GAUGES:
            yield from g.describe()

    def collect(self) -> Iterator[Any]:
        hooks = self.hooks
        if hooks:
            hooks[-1]()
        for g in POSTGRES_GAUGES:
            yield from g.collect()


_LAG_COLLECTOR = LagGaugesCollector()


def export_lag_gauges(before_collect: Callable[[], None]) -> Callable[[], None]:
    """Export POSTGRES_GAUGES from this process (the api's), calling `before_collect` at
    every collection; returns the function that takes the hook back (the gauges stay
    exported: several apps may run in one process, as in the tests, the newest hook
    serving)."""
    if not _LAG_COLLECTOR.registered:
        REGISTRY.register(_LAG_COLLECTOR)
        _LAG_COLLECTOR.registered = True
    _LAG_COLLECTOR.hooks.append(before_collect)

    def release() -> None:
        with contextlib.suppress(ValueError):
            _LAG_COLLECTOR.hooks.remove(before_collect)

    return release


HANDLER_EVENTS_HELD = Gauge(
    "cairn_handler_events_held",
    "What a worker holds back because of an event of a newer schema version than its code"
    " reads (a rolling upgrade in progress, or a rollback), retried with a back-off up to"
    " 30 s until a process that reads it runs, by worker: handlers (events whose follow-up"
    " waits), fetcher (fetches), tasks (tasks).",
    ["worker"],
)
PROJECTION_MESSAGES_SKIPPED = Counter(
    "cairn_projection_messages_skipped",
    "Messages skipped without effect: malformed (not an event) or unappliable (poison).",
    ["reason"],
)

# ---- Kafka consumers -------------------------------------------------------------------

CONSUMER_LAG = Gauge(
    "cairn_kafka_consumer_lag_messages",
    "Messages between a consumer group's position and the partition's end, summed over the"
    " partitions this process consumes, as of its last fetch.",
    ["group", "topic"],
)

# ---- blobs -----------------------------------------------------------------------------

BLOB_WRITTEN_BYTES = Counter(
    "cairn_blob_written_bytes", "Bytes written durably into the blob store."
)
BLOB_READ_BYTES = Counter(
    "cairn_blob_read_bytes",
    "Bytes read from the blob store: served, or sampled to detect a new file's type.",
)


# ---- hooks -----------------------------------------------------------------------------


def observe_fetch(group: str, consumer: Any, batch: Mapping[Any, list[Any]]) -> None:
    """After a consumer fetch: lag per topic = the partition's end (high watermark, as of
    this fetch) minus the offset after the last record fetched. Cheap: no broker call."""
    lag: dict[str, int] = {}
    for tp, records in batch.items():
        if not records:
            continue
        end = consumer.highwater(tp)
        if end is None:
            continue
        lag[tp.topic] = lag.get(tp.topic, 0) + max(end - (records[-1].offset + 1), 0)
    for topic, behind in lag.items():
        CONSUMER_LAG.labels(group, topic).set(behind)


def observe_idle(group: str, topics: Iterable[str]) -> None:
    """A fetch that returned nothing: the consumer is at the end of every partition it has."""
    for topic in topics:
        CONSUMER_LAG.labels(group, topic).set(0)


class CommandTimer:
    """Times one command round trip and counts its outcome (see COMMANDS_SENT)."""

    def __init__(self, command_type: str) -> None:
        self.type = command_type
        self.started = time.perf_counter()

    def done(self, outcome: str) -> None:
        COMMANDS_SENT.labels(self.type, outcome).inc()
        if outcome != "unavailable":
            COMMAND_ROUND_TRIP.labels(self.type).observe(time.perf_counter() - self.started)


def command_handled(command_type: str, reply: Mapping[str, Any]) -> None:
    """Count an actor's reply body (bus/actors/host.py) by its outcome."""
    if not reply.get("ok"):
        outcome = "refused"
    elif reply.get("duplicate"):
        outcome = "duplicate"
    elif reply.get("events"):
        outcome = "applied"
    else:
        outcome = "unchanged"
    COMMANDS_HANDLED.labels(command_type, outcome).inc()


def serve(host: str, port: int) -> Any:
    """Serve this process's metrics at http://host:port/metrics (any path answers), in a
    daemon thread of prometheus_client's; returns the server (call .shutdown() to stop)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host)
    return server


# ---- live event streams (api) ----------------------------------------------------------

EVENT_DELIVERY_LATENCY = Histogram(
    "cairn_event_delivery_latency_seconds",
    "From an event's append in Postgres to its write on a live stream, by transport (sse, ws).",
    ["transport"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENT_SUBSCRIPTIONS = Gauge(
    "cairn_event_subscriptions", "Open live-event subscriptions, by transport.", ["transport"]
)
EVENT_STREAM_SEND_TIMEOUTS = Counter(
    "cairn_event_stream_send_timeouts",
    "Live-event connections cut because their client took nothing for"
    " CAIRN_EVENTS_SEND_TIMEOUT, by transport (sse, ws).",
    ["transport"],
)
EVENT_SUBSCRIPTIONS_DROPPED = Counter(
    "cairn_event_subscriptions_dropped",
    "Live-event subscriptions ended by the server, by reason (slow_consumer, shutting_down).",
    ["reason"],
)
