"""gRPC server bootstrap shared by the services: request context and error interceptor, health
that is SERVING only while the service's Postgres shards and NATS answer and its background loops
run, reflection, and graceful shutdown.

The interceptor is the one place where a servicer's failure becomes a status: a domain error its
code, a backing server that is down UNAVAILABLE (libs/common/outages.py), anything else INTERNAL
with a generic message (the traceback is logged with the request id, never sent)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from libs.common import consistency, context, grpc_tracing, metrics, protocheck, telemetry
from libs.common.errors import CheckoutError, InvalidArgument, Unavailable
from libs.common.grpc_errors import to_status
from libs.common.outages import is_outage
from libs.common.slotmoved import MapView, await_new_map, is_slot_moved

log = logging.getLogger("checkout.grpc")

HealthProbe = Callable[[], Awaitable[bool]]
# What a finished call adds to its trailing metadata (the consistency token of a write).
Trailers = Callable[[consistency.Ledger], Awaitable[Sequence[tuple[str, str]]]]


if TYPE_CHECKING:
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    Interceptor: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Interceptor = grpc.aio.ServerInterceptor


class ContextInterceptor(Interceptor):
    """Fills the request context from metadata, maps domain errors to statuses, and returns the
    call's consistency token in its trailing metadata."""

    def __init__(self, trailers: Trailers | None = None, shard_map: MapView | None = None) -> None:
        self.trailers = trailers
        self.shard_map = shard_map
        self._handlers: dict[tuple[str, bool], tuple[Handler, Handler]] = {}

    async def _call(self, inner: Any, request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The handler, run once more on the new shard map when its write found the slot moved
        (libs/common/slotmoved.py): the first try rolled back, the second goes to the new owner."""
        version = self.shard_map.current.version if self.shard_map is not None else 0
        try:
            return await inner(request, ctx)
        except Exception as error:
            if self.shard_map is None or not is_slot_moved(error):
                raise
        await await_new_map(self.shard_map, version)
        try:
            return await inner(request, ctx)
        except Exception as error:
            if is_slot_moved(error):
                raise Unavailable("the merchant's data is moving between shards; retry") from error
            raise

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        # The gRPC instrumentation's span around the call only while spans are recorded
        # (libs/common/grpc_tracing.py); otherwise the call continues the caller's trace ids.
        tracing = grpc_tracing.server_interceptor()
        if tracing is not None and telemetry.recording():
            return await tracing.intercept_service(functools.partial(self._handler, continuation), details)
        return await self._handler(continuation, details, ids_only=tracing is not None)

    async def _handler(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
        ids_only: bool = False,
    ) -> Handler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        # Made once per method and kind, not per call: the servicer's handler is the same object
        # every time (a new one, after a servicer is registered again, is wrapped anew).
        key = (details.method, ids_only)
        known = self._handlers.get(key)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(handler, details.method, ids_only and not grpc_tracing.quiet(details.method))
        self._handlers[key] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: Handler, method: str, ids_only: bool) -> Handler:
        inner = handler.unary_unary
        service_name, _, method_name = method.strip("/").rpartition("/")
        durations: dict[grpc.StatusCode, Any] = {}  # the histogram's child per status

        async def wrapper(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
            md = {k: v for k, v in ctx.invocation_metadata() or () if isinstance(v, str)}
            # The gRPC instrumentation's server span is current here while recording (continued
            # from the caller's `traceparent`), else an ids-only one continuing it; events this
            # call appends carry it in their metadata.
            span_token = otel_context.attach(telemetry.unrecorded(md)) if ids_only else None
            token = context.use(
                context.RequestContext(
                    request_id=md.get("x-request-id", ""),
                    actor=md.get("x-actor", "system"),
                    idempotency_key=md.get("x-idempotency-key", ""),
                    idempotency_hash=md.get("x-idempotency-hash", ""),
                    trace=telemetry.inject(),
                    rpc=method,
                )
            )
            context.command_replayed.set(False)
            ledger_token = None
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                protocheck.check(request)  # a NUL anywhere is INVALID_ARGUMENT, never a 500
                ledger = consistency.Ledger(required=_required(ctx))
                ledger_token = consistency.begin(ledger)
                response = await self._call(inner, request, ctx)
                trailing = list(await self.trailers(ledger)) if self.trailers is not None else []
                if context.command_replayed.get():
                    trailing.append((context.REPLAYED_METADATA, "true"))
                if trailing:
                    ctx.set_trailing_metadata(tuple(trailing))
                return response
            except CheckoutError as error:
                status = to_status(error)
                code = status.code
                await _abort(ctx, status)
            except grpc.aio.AbortError:
                code = _code_of(ctx)
                raise  # the servicer chose its status itself
            except Exception as error:
                # Logged here, inside the request's context: its request id, trace and RPC.
                status = to_status(_unexpected(error, method))
                code = status.code
                await _abort(ctx, status)
            finally:
                if ledger_token is not None:
                    consistency.end(ledger_token)
                context.reset(token)
                if span_token is not None:
                    otel_context.detach(span_token)
                duration = durations.get(code)
                if duration is None:
                    duration = durations[code] = metrics.RPC_DURATION.labels(
                        service_name, method_name, code.name
                    )
                duration.observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            wrapper,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _abort(ctx: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> None:
    """Ends the call with `status`, and says so on the server span: abort_with_status goes
    around the instrumentation's wrapper of the context, which would record no code."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", status.code.value[0])
        if status.code in _SERVER_FAULTS:
            span.set_status(StatusCode.ERROR, status.details)
    await ctx.abort_with_status(status)  # type: ignore[attr-defined]


# The codes semantic conventions count as a server span's error; the others are the caller's.
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _code_of(ctx: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """The status a servicer aborted with (UNKNOWN when grpc cannot say)."""
    code = ctx.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _unexpected(error: Exception, method: str) -> CheckoutError:
    request_id = context.current().request_id
    if is_outage(error):
        log.warning(
            "%s: a backing server is unavailable (request_id=%s): %s: %s",
            method,
            request_id,
            type(error).__name__,
            error,
        )
        return Unavailable(f"{_server_of(error)} is unavailable; retry later")
    log.exception("%s failed (request_id=%s)", method, request_id)
    return CheckoutError("internal error")


def _server_of(error: BaseException) -> str:
    """Which kind of server failed, for the status message (never its address or its words)."""
    module = type(error).__module__
    if module.startswith("asyncpg"):
        return "the database"
    if module.startswith("nats"):
        return "the message stream"
    if module.startswith("redis"):
        return "the cache"
    if module.startswith("grpc"):
        return "a backing service"
    return "a backing server"


def _required(ctx: grpc.aio.ServicerContext[Any, Any]) -> consistency.Token:
    try:
        return consistency.Token.from_metadata(ctx.invocation_metadata() or ())
    except consistency.TokenError as error:
        raise InvalidArgument.field(consistency.HEADER, str(error)) from None


class GrpcServer:
    def __init__(
        self,
        address: str,
        service_names: Sequence[str],
        probes: Sequence[HealthProbe],
        trailers: Trailers | None = None,
        shard_map: MapView | None = None,
    ) -> None:
        self.server = grpc.aio.server(interceptors=[ContextInterceptor(trailers, shard_map)])
        self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        self.address = address.rsplit(":", 1)[0] + f":{self.port}"
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        # Reflection is enabled in start(): it lists the names known then, and the runtime
        # registers its servicers (and sets service_names) after building the server.
        self.service_names = list(service_names)
        self.probes = probes
        self._watch: asyncio.Task[None] | None = None

    async def _set(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def _watch_health(self, interval: float) -> None:
        last: bool | None = None
        while True:
            try:
                results = await asyncio.gather(*(p() for p in self.probes), return_exceptions=True)
                serving = all(r is True for r in results)
            except Exception:  # a probe must never kill the watcher
                serving = False
            if serving != last:
                log.info("health: %s", "SERVING" if serving else "NOT_SERVING")
                last = serving
            await self._set(serving)
            await asyncio.sleep(interval)

    async def start(self, health_interval: float = 2.0) -> None:
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        await self._set(False)
        await self.server.start()
        self._watch = asyncio.create_task(self._watch_health(health_interval))
        log.info("gRPC listening on %s", self.address)

    async def stop(self, grace: float = 5.0) -> None:
        if self._watch:
            self._watch.cancel()
        await self._set(False)
        await self.server.stop(grace)
