"""Traces across the platform (issue 12): one trace for a request from the gateway through the
services, their SQL and the relay to the consumers, with the standard instrumentations and an
in-memory exporter, against the real servers of the in-process platform."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import SamplingResult
from opentelemetry.trace import SpanKind

from libs.common import telemetry
from libs.common.config import Config
from tests.common.support import poll
from tests.gateway.conftest import INVOICE as GATEWAY_INVOICE
from tests.platform import Platform, platform

# The customer projection makes a customer from the payer's email.
INVOICE = {**GATEWAY_INVOICE, "customer_email": "buyer@example.com"}


@pytest.fixture
async def traced(config: Config) -> AsyncIterator[Platform]:
    # Before the platform: the instrumentations wrap gRPC servers and channels as they are made.
    telemetry.setup("test")
    async with platform(config) as started:
        yield started


def named(spans: Sequence[ReadableSpan], kind: SpanKind, name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind and s.name == name]


def under(spans: Sequence[ReadableSpan], ancestor: ReadableSpan) -> list[ReadableSpan]:
    """The spans below `ancestor` (its children, theirs, ...)."""
    assert ancestor.context is not None
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    found = []
    for span in spans:
        parent = span.parent
        while parent is not None:
            if parent.span_id == ancestor.context.span_id:
                found.append(span)
                break
            above = by_id.get(parent.span_id)
            parent = above.parent if above is not None else None
    return found


def consumed_by(spans: Sequence[ReadableSpan], projection: str) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.kind is SpanKind.CONSUMER
        and s.name == "consume invoice.created"
        and (s.attributes or {}).get("checkout.projection") == projection
    ]


async def test_creating_an_invoice_is_one_trace_from_the_gateway_through_sql_and_the_relay_to_the_consumers(
    traced: Platform,
) -> None:
    p = traced
    _, key = await p.onboard()
    exporter = InMemorySpanExporter()
    with telemetry.exporting_to(exporter):
        created = await p.http.post("/v1/invoices", json=INVOICE, headers={"Authorization": f"Bearer {key}"})
        assert created.status_code == 201, created.text

        def consumed() -> bool:
            spans = exporter.get_finished_spans()
            return all(consumed_by(spans, name) for name in ("customers", "payment-history", "daily-metrics"))

        await poll(consumed, timeout=20, what="the customer and analytics consumers' spans")
    spans = exporter.get_finished_spans()

    [edge] = named(spans, SpanKind.SERVER, "POST /v1/invoices")
    assert edge.context is not None
    trace_id = edge.context.trace_id
    assert (edge.attributes or {}).get("http.route") == "/v1/invoices"
    request_id = created.headers["X-Request-Id"]
    assert uuid.UUID(request_id)

    verify = "/checkout.merchant.v1.MerchantService/VerifyApiKey"
    create = "/checkout.invoice.v1.InvoiceService/CreateInvoice"
    # Each call is a client span in the gateway and a server span in the service, under the edge.
    below_edge = under(spans, edge)
    for method in (verify, create):
        assert named(below_edge, SpanKind.CLIENT, method), f"no client span for {method}"
        assert named(below_edge, SpanKind.SERVER, method), f"no server span for {method}"
    [serving] = named(below_edge, SpanKind.SERVER, create)

    # Its SQL: the append to the event store is a span of the invoice service's call.
    statements = [
        str((s.attributes or {}).get("db.statement", ""))
        for s in under(spans, serving)
        if s.kind is SpanKind.CLIENT
    ]
    assert any("INSERT INTO events" in q for q in statements), statements

    # The relay publishes the event under the call that wrote it; each consumer continues from
    # the publish, carried in the NATS message's headers.
    [publish] = named(under(spans, serving), SpanKind.PRODUCER, "publish invoice.created")
    assert publish.context is not None
    for projection in ("customers", "payment-history", "daily-metrics"):
        [consumer] = consumed_by(spans, projection)
        assert consumer.parent is not None and consumer.parent.span_id == publish.context.span_id, projection
        assert consumer.context is not None and consumer.context.trace_id == trace_id
    # A projection's SQL hangs under its consumer span (the customer service's two pipeline
    # theirs after the batch's applies, libs/common/consumer/projection.py `writes_only`).
    [analytics] = consumed_by(spans, "daily-metrics")
    assert any(
        s.kind is SpanKind.CLIENT and "db.statement" in (s.attributes or {}) for s in under(spans, analytics)
    )

    # One trace: every span of the request, from the edge to the consumers.
    request_spans = [edge, *under(spans, edge)]
    assert {s.context.trace_id for s in request_spans if s.context is not None} == {trace_id}


async def test_idle_polls_probes_and_health_checks_make_no_traces(
    traced: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background loops keep polling (the relays every 0.2 s, the health probes, the
    consumers), the gateway is probed and a service is health-checked, while spans are exported:
    not one span is recorded, so an idle service sends no trace per poll."""
    p = traced
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    sampler = provider.sampler
    assert isinstance(sampler, telemetry.QuietSampler)
    asked: list[str] = []
    decide = sampler.should_sample

    def counted(*args: Any, **kwargs: Any) -> SamplingResult:
        asked.append(args[2])  # the span's name: each is a span some loop started
        return decide(*args, **kwargs)

    monkeypatch.setattr(sampler, "should_sample", counted)
    exporter = InMemorySpanExporter()
    with telemetry.exporting_to(exporter):
        assert (await p.http.get("/healthz")).status_code == 200
        checked = await health_pb2_grpc.HealthStub(p.channels["invoice"]).Check(
            health_pb2.HealthCheckRequest()
        )
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        # Every relay's poll is a query: 8 relays (4 services x 2 shards) at 5 passes a second.
        await poll(lambda: len(asked) >= 100, timeout=15, what="the loops' polls")
    assert exporter.get_finished_spans() == (), {s.name for s in exporter.get_finished_spans()}


async def test_work_a_background_loop_finds_is_one_trace_from_its_change_to_the_consumers(
    config: Config,
) -> None:
    """The expiry job polls without a trace; the invoice it expires is one: the job's change,
    its SQL, the relay's publish and the consumers' applies."""
    telemetry.setup("test")
    quick = replace(config, invoice_min_expiry_seconds=1, expiry_poll_seconds=0.2)
    async with platform(quick) as p:
        _, key = await p.onboard()
        created = await p.http.post(
            "/v1/invoices",
            json={**INVOICE, "expires_in_seconds": 1},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert created.status_code == 201, created.text
        exporter = InMemorySpanExporter()
        with telemetry.exporting_to(exporter):

            def expired_everywhere() -> bool:
                spans = exporter.get_finished_spans()
                return {"payment-history", "daily-metrics"} <= {
                    str((s.attributes or {}).get("checkout.projection"))
                    for s in named(spans, SpanKind.CONSUMER, "consume invoice.expired")
                }

            await poll(expired_everywhere, timeout=20, what="the expiry's consumers' spans")
    spans = exporter.get_finished_spans()
    [job] = [s for s in spans if s.name == "system:expiry change invoice"]
    assert job.parent is None  # a trace of its own, not hung under some poll
    assert (job.attributes or {}).get("checkout.invoice.id") == created.json()["id"]
    below = under(spans, job)
    assert any("INSERT INTO events" in str((s.attributes or {}).get("db.statement", "")) for s in below)
    [publish] = named(below, SpanKind.PRODUCER, "publish invoice.expired")
    assert named(below, SpanKind.CONSUMER, "consume invoice.expired")
    assert publish.context is not None and job.context is not None
    assert {s.context.trace_id for s in below if s.context is not None} == {job.context.trace_id}
