"""OpenTelemetry tracing: one trace from the HTTP request through Kafka to the handlers.

The W3C `traceparent` travels on every command, is stored with every event and is sent as
a Kafka header by the relay; each hop starts its span as a child of it. Spans are always
created (so ids propagate); they are exported only when an exporter is configured:
`CAIRN_TRACE_CONSOLE=true` prints them, or install an OTLP exporter and set it up here.

What is recorded follows from that. With no exporter, a trace that does not arrive sampled
(a `traceparent` whose flags say so) is not recorded: its spans are OpenTelemetry's
non-recording ones, which still carry their own ids, so the `traceparent` on commands,
events and Kafka messages is there as before (flagged not sampled), and no process spends
CPU on span attributes, timestamps and ends that nothing reads (the server span of every
request and the actor host's span of every command were 5-8 % of the API's CPU on small
requests). With the console exporter every span is recorded, as the SDK's default does.
`OTEL_TRACES_SAMPLER` (the SDK's own setting) overrides both.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
# Without an exporter: record only what arrives sampled (see the module docstring).
UNEXPORTED = ParentBased(ALWAYS_OFF)
_configured = False


def setup(service: str) -> None:
    """Install the SDK tracer provider once per process."""
    global _configured
    if _configured:
        return
    console = _console(os.environ)
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"cairn-{service}"}),
        sampler=sampler_for(os.environ),
    )
    if console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def _console(env: Mapping[str, str]) -> bool:
    return env.get("CAIRN_TRACE_CONSOLE", "").lower() in {"1", "true", "yes"}


def sampler_for(env: Mapping[str, str]) -> Sampler | None:
    """The sampler for a process with this environment; None leaves it to the SDK
    (`OTEL_TRACES_SAMPLER`, else parent-based always-on)."""
    if _console(env) or env.get("OTEL_TRACES_SAMPLER"):
        return None
    return UNEXPORTED


@functools.cache
def _tracer() -> trace.Tracer:
    # Made once: get_tracer builds a new Tracer (and its instrumentation scope) per call,
    # about 20 us, which every span paid. Cached after `setup` has installed the provider
    # (the first span comes later); before it, OpenTelemetry's proxy tracer follows the
    # provider once set.
    return trace.get_tracer("cairn")


def extract(traceparent: str | None) -> Context | None:
    if not traceparent:
        return None
    return _propagator.extract({"traceparent": traceparent})


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def span(
    name: str, traceparent: str | None = None, kind: SpanKind = SpanKind.INTERNAL, **attributes: str
) -> Iterator[Span]:
    """A span, child of `traceparent` when given (else of the current context)."""
    ctx = extract(traceparent)
    with _tracer().start_as_current_span(name, context=ctx, kind=kind, attributes=attributes) as s:
        yield s
