"""The analytics service over real gRPC, fed by real invoice and merchant events relayed
through JetStream."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from checkout.analytics.v1 import analytics_pb2 as pb
from checkout.analytics.v1 import analytics_pb2_grpc

from libs.common.config import Config
from libs.common.consumer import rebuild
from libs.common.errors import InvalidArgument
from libs.common.eventstore import StoredEvent
from libs.common.grpc_errors import from_rpc_error
from services.analytics.application import date_range
from services.analytics.projections import DailyMetricsProjection
from services.analytics.service import SPEC
from services.analytics.views import money, money_in
from tests.common.eventsource import (
    EventSource,
    event_source,
    invoice_created,
    merchant_created,
    merchant_on_shard,
)
from tests.common.support import poll
from tests.services import running

if TYPE_CHECKING:  # the async stub type exists only in the generated .pyi
    Stub = analytics_pb2_grpc.AnalyticsServiceAsyncStub


def stub_of(channel: grpc.aio.Channel) -> Stub:
    return analytics_pb2_grpc.AnalyticsServiceStub(channel)


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


async def invoice(source: EventSource, merchant_id: uuid.UUID, total: str, at: dt.datetime) -> StoredEvent:
    invoice_id, event = invoice_created(merchant_id, total=total, at=at, email="payer@shop.test")
    [stored] = await source.append(invoice_id, "Invoice", event)
    return stored


async def fails_with(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == code
    return error.value


def row(metric: pb.DailyMetric) -> tuple[str, str, int, int, str, str, str]:
    return (
        metric.metric_date,
        metric.currency,
        metric.invoices_created,
        metric.invoices_paid,
        metric.amount_created,
        metric.amount_paid,
        metric.conversion_rate,
    )


async def table(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM daily_metrics ORDER BY merchant_id, metric_date, currency"))


async def test_daily_metrics_count_and_sum_each_merchants_invoices_per_utc_day_exactly(
    config: Config, source: EventSource
) -> None:
    merchant, _ = merchant_on_shard(config, 0, "metrics-shop")
    other, _ = merchant_on_shard(config, 1, "other-shop")
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    midnight = dt.datetime.combine(today, dt.time(), dt.UTC)
    # Two quarters back: before the partitions the runtime keeps, so the projection adds one.
    old = midnight - dt.timedelta(days=200) + dt.timedelta(hours=12)
    first = await invoice(source, merchant, "12.50", midnight + dt.timedelta(seconds=1))
    await invoice(source, merchant, "0.10", midnight)
    await invoice(source, merchant, "100", midnight - dt.timedelta(microseconds=1))  # yesterday, UTC
    await invoice(source, merchant, "7.25", old)
    await invoice(source, other, "1.00", midnight)
    yesterday = today - dt.timedelta(days=1)

    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)

        def metrics(
            merchant_id: uuid.UUID, start: dt.date, end: dt.date
        ) -> Awaitable[pb.GetDailyMetricsResponse]:
            return stub.GetDailyMetrics(
                pb.GetDailyMetricsRequest(
                    merchant_id=str(merchant_id), from_date=start.isoformat(), to_date=end.isoformat()
                )
            )

        async def counted(merchant_id: uuid.UUID, start: dt.date, invoices: int) -> bool:
            response = await metrics(merchant_id, start, today)
            return sum(d.invoices_created for d in response.data) == invoices

        await poll(lambda: counted(merchant, old.date(), 4), what="four invoices on shard 0")
        await poll(lambda: counted(other, today, 1), what="one invoice on shard 1")

        everything = await metrics(merchant, old.date(), today)
        assert [row(d) for d in everything.data] == [
            (old.date().isoformat(), "USD", 1, 0, "7.25", "0.00", "0.00"),
            (yesterday.isoformat(), "USD", 1, 0, "100.00", "0.00", "0.00"),
            (today.isoformat(), "USD", 2, 0, "12.60", "0.00", "0.00"),
        ]
        only_today = await metrics(merchant, today, today)
        assert [d.metric_date for d in only_today.data] == [today.isoformat()]
        assert [row(d) for d in (await metrics(other, today, today)).data] == [
            (today.isoformat(), "USD", 1, 0, "1.00", "0.00", "0.00")
        ]

        pool = runtime.pools[0]
        partition = await pool.fetchval(
            "SELECT tableoid::regclass::text FROM daily_metrics WHERE metric_date = $1", old.date()
        )
        assert partition == f"daily_metrics_{old.year}_q{(old.month - 1) // 3 + 1}"

        # The gateway's cache keys embed this generation; the projection moved it on.
        async def bumped() -> bool:
            return await runtime.cache.generation("analytics", str(merchant)) not in ("0", "none")

        await poll(bumped, what="the analytics cache generation to move")

        # A relay that republishes after a crash (a new Nats-Msg-Id) must not count twice.
        seq = await source.redeliver(first)
        await poll(
            lambda: source.consumer_acked_through("analytics-daily-metrics-s0", seq),
            what="the duplicate's ack",
        )
        assert [row(d) for d in (await metrics(merchant, today, today)).data] == [
            (today.isoformat(), "USD", 2, 0, "12.60", "0.00", "0.00")
        ]

        # Dropped and rebuilt from the invoice events, the read model is the same.
        live = await table(pool)
        events = [e for e in await source.envelopes(0) if e.type in DailyMetricsProjection.event_types]
        await rebuild(pool, DailyMetricsProjection(), events, DailyMetricsProjection.reset_sql)
        assert await table(pool) == live

        error = await fails_with(metrics(merchant, today, yesterday), grpc.StatusCode.INVALID_ARGUMENT)
        assert [(d.field, d.reason) for d in from_rpc_error(error).details] == [
            ("to", "must not be before from")
        ]
        bad = stub.GetDailyMetrics(pb.GetDailyMetricsRequest(merchant_id=str(merchant), from_date="2024-1-5"))
        error = await fails_with(bad, grpc.StatusCode.INVALID_ARGUMENT)
        assert {d.field for d in from_rpc_error(error).details} == {"from", "to"}


async def test_the_shard_view_counts_merchants_and_invoices_on_the_instance_serving_each_shard(
    config: Config, source: EventSource
) -> None:
    now = dt.datetime.now(dt.UTC)
    merchants = {
        0: [merchant_on_shard(config, 0, "a"), merchant_on_shard(config, 0, "b")],
        1: [merchant_on_shard(config, 1, "c")],
    }
    signups: list[StoredEvent] = []
    for placed in merchants.values():
        for merchant_id, email in placed:
            signups += await source.append(merchant_id, "Merchant", merchant_created(merchant_id, email, now))
    for merchant_id, _ in [*merchants[0], *merchants[0], merchants[0][0], *merchants[1]]:
        await invoice(source, merchant_id, "5.00", now)

    # One instance per shard, as deployed: each projects and answers for its own shard only.
    shard0 = dataclasses.replace(config, served_shards=frozenset({0}))
    shard1 = dataclasses.replace(config, served_shards=frozenset({1}))
    async with running(SPEC, shard0) as (_, channel0), running(SPEC, shard1) as (_, channel1):
        stubs = {0: stub_of(channel0), 1: stub_of(channel1)}

        async def view(shard: int) -> tuple[int, int, int]:
            answer = await stubs[shard].GetShardView(pb.GetShardViewRequest(shard=shard))
            return answer.shard, answer.merchants, answer.invoices

        async def shows(shard: int, expected: tuple[int, int, int]) -> bool:
            return await view(shard) == expected

        await poll(lambda: shows(0, (0, 2, 5)), what="shard 0: two merchants, five invoices")
        await poll(lambda: shows(1, (1, 1, 1)), what="shard 1: one merchant, one invoice")

        seq = await source.redeliver(signups[0])
        await poll(
            lambda: source.consumer_acked_through("analytics-merchants-s0", seq), what="the duplicate's ack"
        )
        assert await view(0) == (0, 2, 5)

        await fails_with(stubs[0].GetShardView(pb.GetShardViewRequest(shard=1)), grpc.StatusCode.UNAVAILABLE)
        error = await fails_with(
            stubs[0].GetShardView(pb.GetShardViewRequest(shard=2)), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert [d.field for d in from_rpc_error(error).details] == ["shard"]


def test_a_date_range_is_inclusive_at_most_366_days_and_names_the_field_at_fault() -> None:
    assert date_range("2024-01-01", "2024-12-31") == (dt.date(2024, 1, 1), dt.date(2024, 12, 31))  # 366 days
    cases = {
        ("2024-01-01", "2025-01-01"): [("to", "the range may cover at most 366 days")],
        ("2024-03-02", "2024-03-01"): [("to", "must not be before from")],
        ("2024-02-30", "2024-03-01"): [("from", "must be a date as YYYY-MM-DD")],
        ("20240301", "2024-03-01"): [("from", "must be a date as YYYY-MM-DD")],
        ("", ""): [("from", "is required (YYYY-MM-DD)"), ("to", "is required (YYYY-MM-DD)")],
    }
    for (start, end), expected in cases.items():
        with pytest.raises(InvalidArgument) as error:
            date_range(start, end)
        assert [(d.field, d.reason) for d in error.value.details] == expected


def test_amounts_are_exact_strings_to_at_least_the_currencys_minor_unit() -> None:
    assert money(Decimal("12.60000000")) == "12.60"
    assert money(Decimal("100.00000000")) == "100.00"
    assert money(Decimal("0E-8")) == "0.00"
    assert money(Decimal("0.00020833")) == "0.00020833"
    assert money(Decimal("1234567890.12345678")) == "1234567890.12345678"
    # Yen have no minor unit; a currency the table does not know keeps cents.
    assert money_in("JPY", Decimal("1500.00000000")) == "1500"
    assert money_in("JPY", Decimal("0E-8")) == "0"
    assert money_in("JPY", Decimal("1E+3")) == "1000"
    assert money_in("EUR", Decimal("7.50000000")) == "7.50"
    assert money_in("XYZ", Decimal("7.5")) == "7.50"
