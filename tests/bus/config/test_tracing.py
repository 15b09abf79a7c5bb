"""What the tracer records (bus/config/tracing.py `sampler_for`): with no exporter, only what
arrives sampled, while every span, recorded or not, still has ids to propagate.

Spans are made by the real OpenTelemetry SDK, on a provider of the test's own (the
process-wide one is set once per process)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bus.config.tracing import UNEXPORTED, sampler_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PROPAGATOR = TraceContextTextMapPropagator()


def _traceparent() -> str:
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier["traceparent"]


def test_with_no_exporter_a_new_trace_is_not_recorded_but_propagates() -> None:
    tracer = TracerProvider(sampler=sampler_for({})).get_tracer("t")
    with tracer.start_as_current_span("request") as request:
        assert not request.is_recording()
        outgoing = _traceparent()
        context = request.get_span_context()
        assert context.is_valid
    version, trace_id, span_id, _ = outgoing.split("-")
    assert version == "00"
    assert trace_id == f"{context.trace_id:032x}" and span_id == f"{context.span_id:016x}"
    # The next hop continues the same trace, unrecorded too.
    with tracer.start_as_current_span(
        "command", context=PROPAGATOR.extract({"traceparent": outgoing})
    ) as hop:
        assert not hop.is_recording()
        assert _traceparent().split("-")[1] == trace_id


def test_with_no_exporter_a_trace_that_arrives_sampled_is_recorded() -> None:
    tracer = TracerProvider(sampler=sampler_for({})).get_tracer("t")
    incoming = PROPAGATOR.extract({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    with tracer.start_as_current_span("request", context=incoming) as request:
        assert request.is_recording()
        assert _traceparent().split("-")[1] == TRACE_ID


def test_an_exporter_or_the_sdks_own_setting_decides_otherwise() -> None:
    assert sampler_for({}) is UNEXPORTED
    assert sampler_for({"CAIRN_TRACE_CONSOLE": "true"}) is None
    assert sampler_for({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}) is None
    # None is the SDK's default, which records a new trace.
    with TracerProvider(sampler=None).get_tracer("t").start_as_current_span("r") as span:
        assert span.is_recording()
