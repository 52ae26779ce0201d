"""Structured logs: one JSON object a line in production, readable text in dev; both carry the
request id (and trace and span ids when a span is active, and the RPC a service is serving)."""

from __future__ import annotations

import json
import logging
import sys

from opentelemetry import trace

from libs.common import context

# Fields a record may carry through `extra=` (the gateway's access log); JSON lifts them to the top.
EXTRA_FIELDS = ("method", "path", "route", "status", "duration_ms")


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # A value passed with `extra=` wins: the gateway's access log runs outside the context.
        current = context.current()
        if not getattr(record, "request_id", None):
            record.request_id = current.request_id or "-"
        if not getattr(record, "rpc", None):
            record.rpc = current.rpc or None
        if not getattr(record, "trace_id", None):
            span = trace.get_current_span().get_span_context()
            record.trace_id = f"{span.trace_id:032x}" if span.is_valid else "-"
            record.span_id = f"{span.span_id:016x}" if span.is_valid else "-"
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "trace_id": getattr(record, "trace_id", "-"),
            "span_id": getattr(record, "span_id", "-"),
        }
        rpc = getattr(record, "rpc", None)
        if rpc:
            entry["rpc"] = rpc
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(service: str, fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s {service:<9} %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: a watcher polling a node once a second would drown the log.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
