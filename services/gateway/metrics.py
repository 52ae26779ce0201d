"""Prometheus metrics of the HTTP surface, labelled by route template (never the raw path, whose
ids would make one time series per invoice)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "gateway_http_requests_total",
    "HTTP requests served by the gateway.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "gateway_http_request_duration_seconds",
    "Time from the request's arrival to its last response byte.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)
