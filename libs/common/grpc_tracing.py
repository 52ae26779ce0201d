"""gRPC's spans only while spans are recorded; trace ids always.

The OpenTelemetry gRPC instrumentation wraps every call, client and server, even when the
sampler then drops its span: on the create path that was the largest part of the invoice
service's own CPU (the span machinery, the servicer-context proxy, grpc's intercepted-call path on
the client, its filters). As the gateway does for its ASGI span (services/gateway/middleware.py,
WhileRecording), the instrumentation runs here only while `telemetry.recording()`; otherwise a
server call continues the caller's trace id under a span id of its own (the logs of the gateway
and the services share the trace id), and a client sends the current `traceparent` itself.

- Server: `server_interceptor()` is the instrumentation's interceptor, which
  `grpc_server.ContextInterceptor` runs in front of itself while recording; when not,
  `telemetry.unrecorded(metadata)` is the context the call runs in.
- Client: `Channels` keeps a plain channel per address and, made when first needed, one with the
  instrumentation's interceptors; `channel(address)` picks by `telemetry.recording()`, and
  `outgoing(metadata)` adds the trace context the plain channel does not.

Under `opentelemetry-instrument`, whose gRPC instrumentation patched grpc's constructors already,
none of this is used (`active()` is False): its interceptors are on every server and channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import (
    GrpcAioInstrumentorClient,
    GrpcAioInstrumentorServer,
    aio_client_interceptors,
    aio_server_interceptor,
)
from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_name

from libs.common import telemetry

# Probes and tooling, not requests: a trace per health check would bury the real ones.
QUIET_GRPC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
_TRACE_KEYS = ("traceparent", "tracestate")
_active = False
_server_interceptor: grpc.aio.ServerInterceptor[Any, Any] | None = None


def enable() -> None:
    """Called by telemetry.setup once its tracer provider is installed (not under
    `opentelemetry-instrument`, whose gRPC instrumentation is then already in place)."""
    global _active, _server_interceptor
    _active = not (
        GrpcAioInstrumentorServer().is_instrumented_by_opentelemetry  # type: ignore[no-untyped-call]
        or GrpcAioInstrumentorClient().is_instrumented_by_opentelemetry  # type: ignore[no-untyped-call]
    )
    if _active and _server_interceptor is None:
        _server_interceptor = aio_server_interceptor(filter_=_quiet_filter())  # type: ignore[no-untyped-call]


def active() -> bool:
    return _active


def quiet(method: str) -> bool:
    """A probe's or tooling's method (`/grpc.health.v1.Health/Check`): no span, no trace."""
    return method[1:].rpartition("/")[0] in QUIET_GRPC_SERVICES


def _quiet_filter() -> Any:
    return negate(any_of(*(service_name(name) for name in sorted(QUIET_GRPC_SERVICES))))


def server_interceptor() -> grpc.aio.ServerInterceptor[Any, Any] | None:
    """The instrumentation's server interceptor, for calls served while recording (None when
    this module is not in charge, see `active`)."""
    return _server_interceptor if _active else None


def outgoing(metadata: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """`metadata` for a call on `Channels.channel`'s channel: with the current trace context when
    that is the plain channel (the instrumented one adds its client span's itself)."""
    pairs = tuple(metadata)
    if not _active or telemetry.recording():
        return pairs
    carrier = telemetry.inject()
    return pairs + tuple((key, carrier[key]) for key in _TRACE_KEYS if key in carrier)


class Channels:
    """A plain `grpc.aio` channel per address, and while spans are recorded an instrumented one
    (made on first need; each is its own connection)."""

    def __init__(self) -> None:
        self._plain: dict[str, grpc.aio.Channel] = {}
        self._traced: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        """The channel a call made now goes on; send `outgoing(metadata)` with it."""
        traced = _active and telemetry.recording()
        channels = self._traced if traced else self._plain
        channel = channels.get(address)
        if channel is None:
            interceptors = aio_client_interceptors(filter_=_quiet_filter()) if traced else None  # type: ignore[no-untyped-call]
            channel = channels[address] = grpc.aio.insecure_channel(address, interceptors=interceptors)
        return channel

    async def close(self, grace: float | None = None) -> None:
        channels = [*self._plain.values(), *self._traced.values()]
        self._plain, self._traced = {}, {}
        for channel in channels:
            await channel.close(grace)
