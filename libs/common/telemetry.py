"""OpenTelemetry set-up: a tracer and meter provider per process, metrics exported for
Prometheus, and W3C trace context carried in gRPC metadata and NATS headers."""

from __future__ import annotations

from opentelemetry import metrics, propagate, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

_configured = False


def setup(service: str) -> None:
    """Idempotent; spans are recorded (ids in logs, context propagated) and exported only when
    an exporter is configured by the standard OTEL_* variables in a deployment."""
    global _configured
    if _configured:
        return
    resource = Resource.create({"service.name": f"checkout-{service}"})
    trace.set_tracer_provider(TracerProvider(resource=resource))
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()]))
    _configured = True


def serve_metrics(listen: str) -> None:
    """Prometheus text on http://<listen>/metrics (CHECKOUT_METRICS_LISTEN), for scraping."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1")


def inject() -> dict[str, str]:
    """The current trace context as headers (`traceparent`, `tracestate`)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract(carrier: dict[str, str]) -> object:
    return propagate.extract(carrier)
