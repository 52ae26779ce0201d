"""Per-request plumbing around every route: request id, trace span, access log, metrics, and
the last-resort 500.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: it sees the response start
(to stamp `X-Request-Id` on every response, errors included) without buffering bodies.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping

from opentelemetry import propagate, trace
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common import consistency
from services.gateway import metrics
from services.gateway.context import returned_token
from services.gateway.errors import ApiError, error_response

log = logging.getLogger("checkout.gateway")
access_log = logging.getLogger("checkout.gateway.access")
tracer = trace.get_tracer("checkout.gateway")

REQUEST_ID_HEADER = "X-Request-Id"
# The id travels on as gRPC metadata and into logs: printable ASCII, no spaces, bounded.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
UNMATCHED_ROUTE = "unmatched"


def accepted_request_id(raw: str | None) -> str:
    """The client's id when it is safe to carry along, else a fresh uuid4."""
    if raw is not None and _ACCEPTABLE_REQUEST_ID.match(raw):
        return raw
    return str(uuid.uuid4())


class RequestMiddleware:
    def __init__(self, app: ASGIApp, templates: Mapping[object, str]) -> None:
        self.app = app
        self.templates = templates

    def route_of(self, scope: Scope) -> str:
        return self.templates.get(scope.get("endpoint"), UNMATCHED_ROUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = accepted_request_id(headers.get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        method: str = scope["method"]
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                token = returned_token(scope)
                if token is not None:
                    headers[consistency.HEADER] = token
            await send(message)

        begin = time.perf_counter()
        parent = propagate.extract(dict(headers))
        with tracer.start_as_current_span(
            f"HTTP {method}", context=parent, kind=trace.SpanKind.SERVER
        ) as span:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("unhandled error (request_id=%s)", request_id)
                if started:
                    raise  # the status line is out; only dropping the connection is left
                response = error_response(ApiError("internal", "internal error"), request_id)
                await response(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - begin
                route = self.route_of(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                metrics.observe(method, route, status, elapsed)
                context = span.get_span_context()
                access_log.info(
                    "%s %s %d %.1fms request_id=%s",
                    method,
                    scope["path"],
                    status,
                    elapsed * 1000,
                    request_id,
                    extra={
                        "request_id": request_id,
                        "trace_id": format(context.trace_id, "032x") if context.is_valid else None,
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 1),
                    },
                )
