"""Prometheus metrics of the HTTP surface, labelled by route template (never the raw path, whose
ids would make one time series per invoice). Label children are looked up once per
(method, route, status) and kept, so a request costs two increments and no label hashing."""

from __future__ import annotations

from typing import Any

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
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    pair = _children.get(key)
    if pair is None:
        pair = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route))
        _children[key] = pair
    pair[0].inc()
    pair[1].observe(seconds)
