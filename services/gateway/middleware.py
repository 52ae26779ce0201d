"""Per-request plumbing around every route, done once per request: request id, trace context,
response headers the request earned (rate limit standing), access log, metrics, and the
last-resort 500.

Each costs little on the hot path. The request's span is the ASGI instrumentation's, outside
this middleware (`instrument`); the SDK records it only when traces are exported
(OTEL_TRACES_EXPORTER), and otherwise it is a non-recording span that still carries a trace id to
the services and into the logs. Here it is named after the route template. The access log writes failed and slow requests
(CHECKOUT_ACCESS_LOG=errors, the default) or every request (all); each request is counted in
the metrics either way.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: it sees the response start
(to stamp headers on every response, errors included) without buffering bodies.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common import consistency, context, limits, telemetry
from services.gateway import metrics
from services.gateway.auth import RESPONSE_HEADERS
from services.gateway.context import returned_token
from services.gateway.errors import ApiError, error_response

log = logging.getLogger("checkout.gateway")
access_log = logging.getLogger("checkout.gateway.access")

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = b"x-request-id"
_TOKEN = consistency.HEADER.lower().encode()
_TRACE_HEADERS = (b"traceparent", b"tracestate")
# The id travels on as gRPC metadata and into logs: printable ASCII, no spaces, bounded.
_ACCEPTABLE_REQUEST_ID = re.compile(rf"^[\x21-\x7e]{{1,{limits.REQUEST_ID_MAX_CHARS}}}$")
UNMATCHED_ROUTE = "unmatched"
SLOW_SECONDS = 1.0
# Ids of our own: drawing them from the random module's shared state would disturb anything else
# seeded from it in the process (and needs no OS entropy per request; they are not secrets).
_ids = random.Random()
# Probes and scrapes, not requests: no trace for each (OTEL_PYTHON_STARLETTE_EXCLUDED_URLS or
# OTEL_PYTHON_EXCLUDED_URLS replace the list).
QUIET_PATHS = "/healthz$,/readyz$,/metrics$"


def accepted_request_id(raw: str | None) -> str:
    """The client's id when it is safe to carry along, else a fresh uuid4."""
    if raw is not None and _ACCEPTABLE_REQUEST_ID.match(raw):
        return raw
    return fresh_request_id()


def fresh_request_id() -> str:
    """A random (version 4) UUID as text, without building a UUID object and reading the OS's
    random source for each request: an id to find a request by, not a secret."""
    n = _ids.getrandbits(128)
    n = (n & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def loggable(text: str) -> str:
    """`text` with control characters escaped: a path with a percent-encoded CR/LF must not
    forge a line in a text log."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, templates: Mapping[object, str], access_log: str = "errors") -> None:
        self.app = app
        self.templates = templates
        self.log_all = access_log == "all"
        self.log_errors = access_log in ("all", "errors")

    def route_of(self, scope: Scope) -> str:
        return self.templates.get(scope.get("endpoint"), UNMATCHED_ROUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_id: str | None = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                raw_id = value.decode("latin-1")
                break
        request_id = accepted_request_id(raw_id)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        method: str = scope["method"]
        status = 500
        started = False
        # A server-sent event stream lasts as long as its page is open: its duration is neither
        # slowness to log nor a latency for the histogram.
        streaming = False
        span = trace.get_current_span()

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started, streaming
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                if span.is_recording():
                    # Now, not after the app: the span ends with the response's last byte.
                    route = self.route_of(scope)
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                streaming = any(
                    k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                    for k, v in message.get("headers", [])
                )
                extra = [(b"x-request-id", request_id.encode())]
                token = returned_token(scope)
                if token is not None:
                    extra.append((_TOKEN, token.encode()))
                earned = state.get(RESPONSE_HEADERS)
                if earned:
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    extra += [
                        (k.lower().encode(), v.encode())
                        for k, v in earned.items()
                        if k.lower().encode() not in present
                    ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        begin = time.perf_counter()
        # Log lines written while serving (an unhandled error's among them) carry the request id.
        in_context = context.use(context.RequestContext(request_id=request_id))
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error (request_id=%s)", request_id)
            if started:
                raise  # the status line is out; only dropping the connection is left
            response = error_response(ApiError("internal", "internal error"), request_id)
            await response(scope, receive, send_with_headers)
        finally:
            context.reset(in_context)
            elapsed = time.perf_counter() - begin
            route = self.route_of(scope)
            if not streaming:
                metrics.observe(method, route, status, elapsed)
            slow = elapsed > SLOW_SECONDS and not streaming
            wanted = self.log_all or (self.log_errors and (status >= 400 or slow))
            if wanted and access_log.isEnabledFor(logging.INFO):
                ids = span.get_span_context()
                path = loggable(scope["path"])
                access_log.info(
                    "%s %s %d %.1fms request_id=%s",
                    method,
                    path,
                    status,
                    elapsed * 1000,
                    request_id,
                    extra={
                        "request_id": request_id,
                        "trace_id": format(ids.trace_id, "032x") if ids.is_valid else None,
                        "span_id": format(ids.span_id, "016x") if ids.is_valid else None,
                        "method": method,
                        "path": path,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 1),
                    },
                )


def instrument(app: Starlette) -> None:
    """The ASGI instrumentation's server span around every request, outermost, so the request
    middleware and everything under it run inside it. Left alone when `opentelemetry-instrument`
    has instrumented Starlette already. Its own HTTP metrics are off (the gateway counts requests
    itself), and so are its spans per ASGI message, a few per request that say nothing."""
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    excluded = os.environ.get("OTEL_PYTHON_STARLETTE_EXCLUDED_URLS") or os.environ.get(
        "OTEL_PYTHON_EXCLUDED_URLS", QUIET_PATHS
    )
    app.add_middleware(
        WhileRecording,
        excluded_urls=excluded,
        default_span_details=_span_details,
        meter_provider=NoOpMeterProvider(),
        exclude_spans=["receive", "send"],
    )
    app._is_instrumented_by_opentelemetry = True  # type: ignore[attr-defined]


class WhileRecording:
    """The ASGI instrumentation while spans can be recorded, and the app itself when not. Its
    spans are then dropped by the sampler anyway, but the middleware's wrapping of every request
    still cost the gateway a third of its GETs (bench_http, OTEL_TRACES_EXPORTER=none: 3,290 vs
    4,240 requests/s for GET /v1/invoices/{id} before it). Asked per request, so a test's
    in-memory exporter or a later exporter is followed at once."""

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self.traced = OpenTelemetryMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if telemetry.recording() or scope["type"] != "http":
            await self.traced(scope, receive, send)
            return
        # Ids only, as an unsampled span would have: the logs of the gateway and of the services
        # it calls (which continue this context, unsampled) still share one trace id, the
        # caller's when it sent a `traceparent`.
        carrier = {
            name.decode(): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        token = otel_context.attach(telemetry.unrecorded(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)


def _span_details(scope: Scope) -> tuple[str, dict[str, str]]:
    # Renamed after the route once it is known (RequestMiddleware); the path itself may hold ids.
    method = str(scope.get("method", "HTTP"))
    return method, {}
