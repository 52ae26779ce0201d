"""A service's servicers called in process through grpc_testing: no gRPC server, no socket, but
the servicers its spec registers, behind the shared interceptor, over the runtime's real
PostgreSQL shards (and Redis cache).

grpc_testing drives synchronous handlers, each on a thread of its own with a synchronous
ServicerContext; our servicers are `grpc.aio` coroutines bound to the test's event loop (its
asyncpg pools live there). The bridge is small: each handler hands the call to the loop and
waits for it, and the coroutine sees a `grpc.aio`-shaped context that records trailing
metadata, code and details on grpc_testing's context. grpc_testing's own `abort` drops trailing
metadata and it has no `abort_with_status`, so an abort here sets all three and ends the
handler: the call then terminates as a real server's would, with the status and the
`grpc-status-details-bin` trailer that carries the field violations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc_testing
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.message import Message

from libs.common.composition import ServiceSpec
from libs.common.config import Config
from libs.common.errors import FieldViolation
from libs.common.grpc_errors import from_rpc_error
from libs.common.grpc_server import ContextInterceptor, Handler, Trailers
from libs.common.service import Runtime
from tools.devservers import LOOPBACK, free_port


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a call ended, as its caller sees it."""

    response: Any
    code: grpc.StatusCode
    details: str
    trailing: dict[str, str | bytes]

    def violations(self) -> list[FieldViolation]:
        """The field violations of the rich status (`google.rpc.BadRequest` in the
        `grpc-status-details-bin` trailer), read as the gateway reads a failed call."""
        trailing = grpc.aio.Metadata(*self.trailing.items())
        failed = grpc.aio.AioRpcError(self.code, grpc.aio.Metadata(), trailing, self.details, None)
        return from_rpc_error(failed).details


class _Aborted(Exception):
    """Ends the coroutine of a call the servicer (or the interceptor) aborted."""


class _AioContext:
    """The part of `grpc.aio.ServicerContext` the interceptor and the servicers use, kept on
    grpc_testing's synchronous context (safe to call from the loop: it only takes a lock)."""

    def __init__(self, sync: grpc.ServicerContext) -> None:
        self._sync = sync
        self._code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]:
        return tuple(self._sync.invocation_metadata() or ())

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._sync.set_trailing_metadata(tuple(metadata))

    def code(self) -> grpc.StatusCode | None:
        return self._code

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, Any]] = ()
    ) -> None:
        self._code = code
        self._sync.set_code(code)
        self._sync.set_details(details)
        if trailing_metadata:
            self._sync.set_trailing_metadata(tuple(trailing_metadata))
        # A real aio context raises AbortError, which the interceptor lets through as the
        # servicer's own choice; so must this one.
        raise grpc.aio.AbortError()

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)


class InProcess:
    """Calls a service's unary methods by name: `await calls.call("GetCustomer", request)`."""

    def __init__(self, handlers: dict[str, Handler], trailers: Trailers | None = None) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None  # the caller's, taken at each call
        self._interceptor = ContextInterceptor(trailers)
        self._handlers = handlers
        self._methods: dict[str, Any] = {}
        servicers: dict[Any, object] = {}
        pool = descriptor_pool.Default()
        for path in handlers:
            service_name, method_name = path.strip("/").rsplit("/", 1)
            service = pool.FindServiceByName(service_name)
            self._methods[method_name] = service.methods_by_name[method_name]
            servicer = servicers.setdefault(service, type(service.name, (), {})())
            setattr(servicer, method_name, self._bridge(path))
        self._server = grpc_testing.server_from_dictionary(servicers, grpc_testing.strict_real_time())

    def _bridge(self, path: str) -> Callable[[Message, grpc.ServicerContext], Message | None]:
        """The synchronous handler grpc_testing runs on its thread: the servicer's coroutine,
        behind the interceptor, on the test's loop."""

        def handle(request: Message, sync: grpc.ServicerContext) -> Message | None:
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(
                self._serve(path, request, _AioContext(sync)), self._loop
            )
            try:
                return future.result()
            except _Aborted:
                return None  # the status, details and trailers are already on the call

        return handle

    async def _serve(self, path: str, request: Message, ctx: _AioContext) -> Message:
        async def continuation(details: grpc.HandlerCallDetails) -> Handler:
            return self._handlers[path]

        details = _CallDetails(path, tuple(ctx.invocation_metadata()))
        handler = await self._interceptor.intercept_service(continuation, details)
        try:
            response: Message = await handler.unary_unary(request, ctx)  # type: ignore[misc, arg-type]
        except grpc.aio.AbortError:
            raise _Aborted from None
        return response

    def path(self, method: str) -> str:
        """The method's gRPC path, `/checkout.customer.v1.CustomerService/GetCustomer`."""
        descriptor = self._methods[method]
        return f"/{descriptor.containing_service.full_name}/{descriptor.name}"

    async def call(self, method: str, request: Message, metadata: Sequence[tuple[str, str]] = ()) -> Outcome:
        self._loop = asyncio.get_running_loop()
        rpc = self._server.invoke_unary_unary(self._methods[method], tuple(metadata), request, None)
        # The handler needs this loop to run the coroutine: wait for the end on a thread.
        response, trailing, code, details = await asyncio.to_thread(rpc.termination)
        return Outcome(response, code, details, dict(trailing))


@dataclasses.dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


class _Registrations:
    """What a service's `register` adds to a server, kept by method path instead of served."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same handlers arrive by name below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self.handlers.update({f"/{service}/{name}": h for name, h in handlers.items()})


def servicers(spec: ServiceSpec, runtime: Runtime) -> InProcess:
    """The servicers `spec` registers (the runtime's own composition: `spec.build`, as in
    production), behind the interceptor with the runtime's trailers (a write's consistency
    token), as its server has. Closed with the runtime."""
    assert runtime.spec is spec
    registered = _Registrations()
    runtime.build().register(registered)  # type: ignore[arg-type]  # only these two methods are used
    return InProcess(registered.handlers, runtime._trailers)


@asynccontextmanager
async def migrated(spec: ServiceSpec, config: Config) -> AsyncIterator[Runtime]:
    """A runtime with its shards migrated and pools open, and nothing else running: no server,
    relay, consumer or background loop."""
    runtime = Runtime(spec, config)
    try:
        await runtime.migrate()
        yield runtime
    finally:
        await runtime.stop()


@asynccontextmanager
async def database_down(spec: ServiceSpec, config: Config) -> AsyncIterator[Runtime]:
    """A runtime whose PostgreSQL is not there: its pools point at a port nobody listens on and
    open no connection until a query asks for one, which is then refused."""
    dead = dataclasses.replace(
        config,
        database_url=f"postgresql://checkout@{LOOPBACK}:{free_port()}/postgres",
        pool_min_size=0,
    )
    runtime = Runtime(spec, dead)
    try:
        await runtime.pools.open(runtime.wanted_shards())
        yield runtime
    finally:
        await runtime.stop()


async def assert_unavailable_while_database_down(
    spec: ServiceSpec, config: Config, method: str, request: Message, caplog: pytest.LogCaptureFixture
) -> None:
    """What an outage looks like from outside: `method` answers UNAVAILABLE in words that name
    no server address, and one warning carries the caller's request id for whoever reads logs."""
    request_id = f"req-{spec.name}-down"
    async with database_down(spec, config) as runtime:
        calls = servicers(spec, runtime)
        with caplog.at_level(logging.WARNING, logger="checkout.grpc"):
            answer = await calls.call(method, request, [("x-request-id", request_id)])
    assert (answer.code, answer.details) == (
        grpc.StatusCode.UNAVAILABLE,
        "a backing server is unavailable; retry later",  # asyncpg's refusal is a plain OSError
    )
    [line] = [r.getMessage() for r in caplog.records if f"request_id={request_id}" in r.getMessage()]
    assert line.startswith(f"{calls.path(method)}: a backing server is unavailable"), line
