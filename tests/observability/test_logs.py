"""Log lines an operator can follow a request by (issue 12): a servicer's unexpected error is
logged with the request's id, trace and RPC, and JSON lines carry the trace and span ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from libs.common import grpc_tracing, logs, telemetry
from libs.common.config import Config
from libs.common.grpc_server import GrpcServer
from tests.platform import platform

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
EXPLODE = "/checkout.test.v1.Boom/Explode"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The process's log set up as a service does with CHECKOUT_LOG_FORMAT=json, written here."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.setup("test", fmt="json")
    written = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(written)
    try:
        yield written
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def lines(written: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in written.getvalue().splitlines()]


async def explode(request: bytes, ctx: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    raise RuntimeError("the servicer tripped over its own feet")


@pytest.fixture
async def boom() -> AsyncIterator[grpc.aio.Channel]:
    """Our gRPC server bootstrap (interceptors and all) serving one method that fails."""
    telemetry.setup("test")  # before the server: the instrumentation wraps servers as they are made
    server = GrpcServer("127.0.0.1:0", ["checkout.test.v1.Boom"], probes=[])
    handler = grpc.unary_unary_rpc_method_handler(explode)
    server.server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("checkout.test.v1.Boom", {"Explode": handler}),)
    )
    await server.start()
    channels = grpc_tracing.Channels()  # as the gateway calls: the trace context in the metadata
    try:
        yield channels.channel(server.address)
    finally:
        await channels.close()
        await server.stop(grace=0)


def remote_parent() -> NonRecordingSpan:
    """The caller's span, as a gateway that traces its requests sends it (sampled)."""
    return NonRecordingSpan(SpanContext(TRACE_ID, PARENT_ID, is_remote=True, trace_flags=TraceFlags(1)))


async def test_a_servicers_unexpected_error_is_logged_with_the_request_id_trace_and_rpc(
    boom: grpc.aio.Channel, json_log: io.StringIO
) -> None:
    call = boom.unary_unary(EXPLODE, request_serializer=None, response_deserializer=None)
    with trace.use_span(remote_parent()), pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"", metadata=grpc_tracing.outgoing((("x-request-id", "req-500-here"),)))
    # The caller is told only that it failed; the log says where.
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert "tripped" not in (raised.value.details() or "")

    [failure] = [e for e in lines(json_log) if e["level"] == "error"]
    assert failure["request_id"] == "req-500-here"
    assert failure["rpc"] == EXPLODE
    assert failure["trace_id"] == f"{TRACE_ID:032x}"
    assert failure["span_id"] not in ("-", f"{PARENT_ID:016x}")  # the server's own span
    assert EXPLODE in failure["msg"] and "req-500-here" in failure["msg"]
    assert "RuntimeError: the servicer tripped over its own feet" in failure["exc"]


async def test_json_log_lines_carry_the_trace_and_span_ids_of_the_current_span(json_log: io.StringIO) -> None:
    telemetry.setup("test")
    tracer = trace.get_tracer("tests.observability")
    log = logging.getLogger("checkout.test")
    with trace.use_span(remote_parent()), tracer.start_as_current_span("work") as span:
        log.warning("inside a span")
    log.warning("outside any span")

    inside, outside = lines(json_log)
    assert inside["msg"] == "inside a span"
    assert inside["trace_id"] == f"{TRACE_ID:032x}"
    assert inside["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert (outside["trace_id"], outside["span_id"]) == ("-", "-")


async def test_a_500_is_found_in_the_logs_by_its_request_id_at_the_gateway_and_in_the_service(
    config: Config, json_log: io.StringIO
) -> None:
    telemetry.setup("test")
    async with platform(config) as p:
        _, key = await p.onboard()
        # A read model the service cannot read: its query fails (not an outage), an INTERNAL.
        for _, pool in p.runtimes["invoice"].pools.items():
            await pool.execute("ALTER TABLE invoices RENAME TO invoices_gone")
        answered = await p.http.get("/v1/invoices", headers={"Authorization": f"Bearer {key}"})
    assert answered.status_code == 500, answered.text
    request_id = answered.headers["X-Request-Id"]

    errors = [e for e in lines(json_log) if e["level"] == "error" and e["request_id"] == request_id]
    by_logger = {e["logger"]: e for e in errors}
    assert {"checkout.grpc", "checkout.gateway"} <= set(by_logger), errors
    service, gateway = by_logger["checkout.grpc"], by_logger["checkout.gateway"]
    assert service["rpc"].endswith("/ListInvoices")
    assert "invoices" in service["exc"]  # the cause, for the operator; the client got "internal error"
    assert service["trace_id"] == gateway["trace_id"] != "-"
