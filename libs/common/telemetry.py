"""OpenTelemetry set-up: a tracer and meter provider per process, metrics exported for
Prometheus, and W3C trace context carried in gRPC metadata and NATS headers.

Traces come from the standard instrumentations (gRPC aio client and server, asyncpg, redis,
httpx here; ASGI in the gateway's app), each run only while a span can be recorded (`recording`):
the gRPC ones through libs/common/grpc_tracing.py, the others through `WhileRecordingProvider`'s tracers;
trace ids are carried either way. They are configured by the standard variables:

- OTEL_TRACES_EXPORTER: `none` (the default here, unlike the SDK's `otlp`: a developer's machine
  has no collector, and an exporter retrying one that is not there logs for ever), `console`
  (one JSON object a line on stdout), `otlp` (over gRPC, or HTTP with
  OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf; the endpoint from OTEL_EXPORTER_OTLP_ENDPOINT), or a
  comma-separated list.
- OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG: default `parentbased_always_on` (see
  `configured_sampler`).
- OTEL_SDK_DISABLED=true: no spans at all (and no trace ids in the logs).

Under `opentelemetry-instrument` the provider it installed is kept, and instrumenting again is
a no-op, so neither is done twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from libs.common.config import ConfigError

log = logging.getLogger("checkout.telemetry")

_configured = False
# Ids of our own (`unrecorded`): not secrets, and drawing them from the random module's shared
# state would disturb anything else seeded from it in the process.
_ids = random.Random()


class Exporters(SpanProcessor):
    """The processors that export this process's spans. Spans are recorded only while there is
    one (see QuietSampler); tests add an in-memory one for a while (`exporting_to`)."""

    def __init__(self) -> None:
        self._processors: tuple[SpanProcessor, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self._processors)

    def add(self, processor: SpanProcessor) -> None:
        self._processors = (*self._processors, processor)

    def remove(self, processor: SpanProcessor) -> None:
        self._processors = tuple(p for p in self._processors if p is not processor)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._processors)


EXPORTERS = Exporters()
_DROP = SamplingResult(Decision.DROP)


class QuietSampler(Sampler):
    """The configured sampler, except that nothing is recorded while nothing exports (spans are
    then ids only: they still reach the logs and the next service, at no cost), and a CLIENT span
    with no parent is dropped. Such a span is a background loop's query or call (the relay's
    poll, a watcher asking its node, upkeep, a health probe): an idle loop would otherwise make
    a trace per poll. A loop that finds work starts a span of its own, and its calls hang under
    that one (the relay's publish, a consumer's apply)."""

    def __init__(self, configured: Sampler, exporting: Callable[[], bool]) -> None:
        self.configured = configured
        self.exporting = exporting

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if not self.exporting():
            return _DROP
        if kind is SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return _DROP
        return self.configured.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"QuietSampler{{{self.configured.get_description()}}}"


def configured_sampler(environ: os._Environ[str] | dict[str, str] = os.environ) -> Sampler:
    """OTEL_TRACES_SAMPLER, default `parentbased_always_on` (the SDK's own default): the edge
    (the gateway) decides once per request and every service follows, so a trace is whole or
    absent; a checkout's request rate is low enough to keep every trace, and an operator with
    more sets `parentbased_traceidratio` with OTEL_TRACES_SAMPLER_ARG (e.g. 0.1)."""
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(raw) if raw else 1.0
    except ValueError:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG: {raw!r} is not a number") from None
    if "ratio" in name and not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG: {raw!r} is not a ratio between 0 and 1")
    samplers: dict[str, Callable[[], Sampler]] = {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: ParentBased(ALWAYS_ON),
        "parentbased_always_off": lambda: ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": lambda: ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        raise ConfigError(f"OTEL_TRACES_SAMPLER: {name!r} is not one of {', '.join(samplers)}")
    return samplers[name]()


def span_exporters(environ: os._Environ[str] | dict[str, str] = os.environ) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names (none by default; see the module docstring)."""
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    exporters: list[SpanExporter] = []
    for name in names:
        if name in ("", "none"):
            continue
        if name == "console":
            # One line a span: several processes share the terminal under `make up`.
            exporters.append(ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n"))
        elif name in ("otlp", "otlp_proto_grpc", "otlp_proto_http"):
            exporters.append(_otlp(name, environ))
        else:
            found = entry_points(group="opentelemetry_traces_exporter", name=name)
            if not found:
                raise ConfigError(f"OTEL_TRACES_EXPORTER: no span exporter named {name!r}")
            exporters.append(next(iter(found)).load()())
    return exporters


def _otlp(name: str, environ: os._Environ[str] | dict[str, str]) -> SpanExporter:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    if name == "otlp_proto_http" or (name == "otlp" and protocol in ("http/protobuf", "http")):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    if name == "otlp_proto_grpc" or protocol in ("", "grpc"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not grpc or http/protobuf")


_foreign_provider = False  # opentelemetry-instrument's: its exporters are not ours to see


def recording() -> bool:
    """Whether a span started now can be recorded: an exporter is attached (OTEL_TRACES_EXPORTER,
    or a test's `exporting_to`), or another's provider is installed. When not, the gateway's
    request span is not worth its cost (see services/gateway/middleware.py)."""
    return EXPORTERS.active or _foreign_provider


def _disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def setup(service: str) -> None:
    """Idempotent: the tracer provider (unless one is installed already, as by
    `opentelemetry-instrument`), the instrumentations, and the meter provider."""
    global _configured, _foreign_provider
    if _configured:
        return
    # Attributes given here win over OTEL_RESOURCE_ATTRIBUTES, so OTEL_SERVICE_NAME is read here.
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or f"checkout-{service}"})
    if not _disabled():
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            provider = TracerProvider(
                resource=resource, sampler=QuietSampler(configured_sampler(), lambda: EXPORTERS.active)
            )
            provider.add_span_processor(EXPORTERS)
            for exporter in span_exporters():
                EXPORTERS.add(BatchSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
        else:
            log.info("tracing: keeping the tracer provider already installed")
            _foreign_provider = True
        instrument()
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()]))
    _configured = True


def instrument() -> None:
    """The client and server instrumentations every process uses (each only once a process).
    Their own metrics are off: ours are named and labelled on purpose (libs/common/metrics)."""
    from libs.common import grpc_tracing  # it asks this module whether spans are recorded

    no_meters = NoOpMeterProvider()
    quiet = WhileRecordingProvider(trace.get_tracer_provider())
    instrumentors: list[tuple[Any, dict[str, Any]]] = [
        (AsyncPGInstrumentor(), {}),  # type: ignore[no-untyped-call]
        (RedisInstrumentor(), {}),
        (HTTPXClientInstrumentor(), {"request_hook": _origin_only, "async_request_hook": _origin_only_async}),
    ]
    for instrumentor, options in instrumentors:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(meter_provider=no_meters, tracer_provider=quiet, **options)
    grpc_tracing.enable()


class _Current:
    """`start_as_current_span` while nothing records: the current span stays current."""

    __slots__ = ("span",)

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def __enter__(self) -> trace.Span:
        return self.span

    def __exit__(self, *exc: object) -> None:
        return None


class WhileRecordingProvider(trace.TracerProvider):
    """The provider's tracers, which start spans only while `recording()`. Otherwise a span the
    sampler would drop is not made at all (the SDK's making of one, ids, sampler and context,
    was most of what an instrumented query or Redis command cost beyond itself): the
    instrumentation is handed an ids-only copy of the current span, so nothing it does to it is
    kept, and logs inside it carry the current trace id."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self.provider = provider

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return _WhileRecordingTracer(
            self.provider.get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )
        )


def _ids_only(context: Context | None) -> trace.Span:
    span = trace.get_current_span(context)
    return trace.NonRecordingSpan(span.get_span_context()) if span.is_recording() else span


class _WhileRecordingTracer(trace.Tracer):
    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def start_span(self, name: str, context: Context | None = None, *args: Any, **kwargs: Any) -> trace.Span:
        if recording():
            return self.tracer.start_span(name, context, *args, **kwargs)
        return _ids_only(context)

    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Context | None = None, *args: Any, **kwargs: Any
    ) -> contextlib.AbstractContextManager[trace.Span]:
        if recording():
            made: contextlib.AbstractContextManager[trace.Span] = self.tracer.start_as_current_span(
                name, context, *args, **kwargs
            )
            return made
        return _Current(_ids_only(context))


def _origin_only(span: trace.Span, request: Any) -> None:
    """A node's URL may carry its API key in the path or query (`/v3/<key>`): spans keep only
    the scheme, host and port, so no secret reaches the trace backend."""
    if not span.is_recording():
        return
    url = request.url
    if isinstance(url, tuple):  # httpx's raw form: (scheme, host, port, target)
        scheme, host, port = url[0].decode("ascii"), url[1].decode("ascii"), url[2]
    else:
        scheme, host, port = url.scheme, url.host, url.port
    origin = f"{scheme}://{host}" + (f":{port}" if port else "")
    span.set_attributes({"url.full": origin, "http.url": origin})


async def _origin_only_async(span: trace.Span, request: Any) -> None:
    _origin_only(span, request)


@contextlib.contextmanager
def exporting_to(exporter: SpanExporter) -> Iterator[None]:
    """Record and export every span to `exporter` while inside (tests: an in-memory exporter).
    Needs the provider `setup` installs."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = trace.get_tracer_provider()
    if not (isinstance(provider, TracerProvider) and isinstance(provider.sampler, QuietSampler)):
        raise RuntimeError("exporting_to needs the tracer provider telemetry.setup installs")
    processor = SimpleSpanProcessor(exporter)
    EXPORTERS.add(processor)
    try:
        yield
    finally:
        EXPORTERS.remove(processor)


def serve_metrics(listen: str) -> None:
    """Prometheus text on http://<listen>/metrics (CHECKOUT_METRICS_LISTEN), for scraping."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1")


def inject(context: Context | None = None) -> dict[str, str]:
    """The current trace context as headers (`traceparent`, `tracestate`)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def sampled(carrier: Mapping[str, str]) -> bool:
    """Whether the trace context in `carrier` is sampled (the flags of its `traceparent`): the
    relay and the consumers, thousands of messages a second, make spans only for those."""
    parent = carrier.get("traceparent", "")
    try:
        return len(parent) == 55 and bool(int(parent[-2:], 16) & 1)
    except ValueError:
        return False


def unrecorded(carrier: Mapping[str, str] | None) -> Context:
    """The context of a call or request served while nothing records: a span that is ids only,
    continuing the caller's trace (`traceparent` in `carrier`) or starting one, as the sampler's
    dropped span would have, without the cost of making one."""
    remote = None
    if carrier and "traceparent" in carrier:
        remote = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    ids = trace.SpanContext(
        trace_id=remote.trace_id if remote is not None and remote.is_valid else _ids.getrandbits(128),
        span_id=_ids.getrandbits(64),
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(ids))


def extract(carrier: dict[str, str]) -> Context:
    return propagate.extract(carrier)
