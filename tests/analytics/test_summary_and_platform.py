"""A merchant's summary over a period and the per-shard platform metrics, over real gRPC, fed by
real invoice events relayed through JetStream."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from checkout.analytics.v1 import analytics_pb2 as pb
from checkout.analytics.v1 import analytics_pb2_grpc

from libs.common import events
from libs.common.config import Config
from libs.common.errors import InvalidArgument
from libs.common.events import STATUS_EVENTS
from libs.common.grpc_errors import from_rpc_error
from services.analytics.application import period_range
from services.analytics.service import SPEC
from tests.common.eventsource import EventSource, event_source, invoice_created, merchant_on_shard
from tests.common.support import poll
from tests.services import running

if TYPE_CHECKING:  # the async stub type exists only in the generated .pyi
    Stub = analytics_pb2_grpc.AnalyticsServiceAsyncStub

SummaryRow = tuple[str, str, str, int, int, str, str, str, str]
DayRow = tuple[str, str, int, int, str, str, str, int]


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


async def invoice(
    source: EventSource,
    merchant_id: uuid.UUID,
    total: str,
    created: dt.datetime,
    *moves: tuple[str, dt.datetime],
) -> None:
    """Creates an invoice, then moves it through the status events given (type, at)."""
    invoice_id, opened = invoice_created(merchant_id, total=total, at=created, email="payer@shop.test")
    await source.append(invoice_id, "Invoice", opened)
    for event_type, at in moves:
        moved = events.decode(
            event_type,
            {
                "invoice_id": str(invoice_id),
                "merchant_id": str(merchant_id),
                "customer_id": opened.customer_id,
                "status": STATUS_EVENTS[event_type],
                "total": total,
                "currency": "USD",
                "at": at.isoformat(),
            },
        )
        await source.append(invoice_id, "Invoice", moved)


async def fails_with(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == code
    return error.value


def summary_row(s: pb.Summary) -> SummaryRow:
    return (
        s.period,
        s.from_date,
        s.to_date,
        s.invoices_created,
        s.invoices_paid,
        s.amount_created,
        s.amount_paid,
        s.currency,
        s.conversion_rate,
    )


def day_row(d: pb.PlatformDay) -> DayRow:
    return (
        d.metric_date,
        d.currency,
        d.invoices_created,
        d.invoices_paid,
        d.amount_created,
        d.amount_paid,
        d.conversion_rate,
        d.merchants_active,
    )


async def test_a_summary_sums_the_last_n_utc_days_including_today_or_all_time(
    config: Config, source: EventSource
) -> None:
    merchant, _ = merchant_on_shard(config, 0, "summary-shop")
    newcomer, _ = merchant_on_shard(config, 0, "no-sales-yet")
    other, _ = merchant_on_shard(config, 1, "someone-else")
    today = dt.datetime.now(dt.UTC).date()

    def noon(days_ago: int) -> dt.datetime:
        return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(12), dt.UTC)

    await invoice(source, merchant, "10.00", noon(0), ("invoice.paid", noon(0) + dt.timedelta(minutes=5)))
    await invoice(source, merchant, "5.00", noon(0))
    await invoice(source, merchant, "20.00", noon(6))  # the first day of the last 7
    await invoice(source, merchant, "1.00", noon(7))  # the day before them
    await invoice(source, merchant, "2.50", noon(40), ("invoice.paid", noon(40) + dt.timedelta(hours=1)))
    await invoice(source, merchant, "100", noon(200))  # before the partitions the runtime keeps
    await invoice(source, other, "999.99", noon(0), ("invoice.paid", noon(0)))

    async with running(SPEC, config) as (_, channel):
        stub: Stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)

        def summary(merchant_id: uuid.UUID, period: str, as_of: str = "") -> Awaitable[pb.Summary]:
            return stub.GetSummary(
                pb.GetSummaryRequest(merchant_id=str(merchant_id), period=period, as_of=as_of)
            )

        async def counted() -> bool:
            everything = await summary(merchant, "all")
            return (everything.invoices_created, everything.invoices_paid) == (6, 2)

        await poll(counted, what="six invoices, two paid")

        async def other_counted() -> bool:
            return (await summary(other, "7d")).invoices_created == 1

        await poll(other_counted, what="the other merchant's invoice on shard 1")

        def day(days_ago: int) -> str:
            return (today - dt.timedelta(days=days_ago)).isoformat()

        assert summary_row(await summary(merchant, "7d")) == (
            "7d",
            day(6),
            day(0),
            3,
            1,
            "35.00",
            "10.00",
            "USD",
            "33.33",
        )
        assert summary_row(await summary(merchant, "30d")) == (
            "30d",
            day(29),
            day(0),
            4,
            1,
            "36.00",
            "10.00",
            "USD",
            "25.00",
        )
        assert summary_row(await summary(merchant, "90d")) == (
            "90d",
            day(89),
            day(0),
            5,
            2,
            "38.50",
            "12.50",
            "USD",
            "40.00",
        )
        assert summary_row(await summary(merchant, "all")) == (
            "all",
            day(200),
            day(0),
            6,
            2,
            "138.50",
            "12.50",
            "USD",
            "33.33",
        )
        # Ending on another day (what the gateway pins to its cache key's day).
        assert summary_row(await summary(merchant, "7d", day(7))) == (
            "7d",
            day(13),
            day(7),
            1,
            0,
            "1.00",
            "0.00",
            "USD",
            "0.00",
        )
        # Nothing yet: no first day for "all", no currency, and zero totals rather than nulls.
        assert summary_row(await summary(newcomer, "all")) == (
            "all",
            "",
            day(0),
            0,
            0,
            "0.00",
            "0.00",
            "",
            "0.00",
        )
        assert summary_row(await summary(newcomer, "30d")) == (
            "30d",
            day(29),
            day(0),
            0,
            0,
            "0.00",
            "0.00",
            "",
            "0.00",
        )

        error = await fails_with(summary(merchant, "1y"), grpc.StatusCode.INVALID_ARGUMENT)
        assert [(d.field, d.reason) for d in from_rpc_error(error).details] == [
            ("period", "must be one of 7d, 30d, 90d, all")
        ]
        error = await fails_with(summary(uuid.uuid4(), "7d", "yesterday"), grpc.StatusCode.INVALID_ARGUMENT)
        assert [d.field for d in from_rpc_error(error).details] == ["as_of"]
        await fails_with(
            stub.GetSummary(pb.GetSummaryRequest(merchant_id="nope", period="7d")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


async def test_platform_metrics_sum_every_merchant_of_each_shard_per_day(
    config: Config, source: EventSource
) -> None:
    a, _ = merchant_on_shard(config, 0, "a")
    b, _ = merchant_on_shard(config, 0, "b")
    reorged, _ = merchant_on_shard(config, 0, "reorged")
    c, _ = merchant_on_shard(config, 1, "c")
    today = dt.datetime.now(dt.UTC).date()

    def noon(days_ago: int) -> dt.datetime:
        return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(12), dt.UTC)

    await invoice(source, a, "10.00", noon(0), ("invoice.paid", noon(0)))
    await invoice(source, a, "5.00", noon(1))
    await invoice(source, b, "2.50", noon(0))
    # Paid today, then taken back by a reorg: its merchant's row for today is all zeros, and a
    # row of zeros is not activity.
    await invoice(source, reorged, "4.00", noon(3), ("invoice.paid", noon(0)), ("invoice.invalid", noon(0)))
    await invoice(source, c, "7.00", noon(0), ("invoice.paid", noon(0)))
    await invoice(source, c, "3.00", noon(30))  # outside the ranges asked for

    def day(days_ago: int) -> str:
        return (today - dt.timedelta(days=days_ago)).isoformat()

    # One instance per shard, as deployed: each answers for its own shard only.
    shard0 = dataclasses.replace(config, served_shards=frozenset({0}))
    shard1 = dataclasses.replace(config, served_shards=frozenset({1}))
    async with running(SPEC, shard0) as (_, channel0), running(SPEC, shard1) as (_, channel1):
        stubs: dict[int, Stub] = {
            0: analytics_pb2_grpc.AnalyticsServiceStub(channel0),
            1: analytics_pb2_grpc.AnalyticsServiceStub(channel1),
        }

        def metrics(
            shard: int, start: str, end: str, *, on: int | None = None
        ) -> Awaitable[pb.PlatformMetrics]:
            stub = stubs[shard if on is None else on]
            return stub.GetPlatformMetrics(
                pb.GetPlatformMetricsRequest(shard=shard, from_date=start, to_date=end)
            )

        async def view(shard: int, start: str, end: str) -> tuple[int, list[DayRow], int]:
            answer = await metrics(shard, start, end)
            return answer.shard, [day_row(d) for d in answer.data], answer.merchants_active

        shard0_days = [
            (day(3), "USD", 1, 0, "4.00", "0.00", "0.00", 1),
            (day(1), "USD", 1, 0, "5.00", "0.00", "0.00", 1),
            (day(0), "USD", 2, 1, "12.50", "10.00", "50.00", 2),
        ]

        async def shows(shard: int, expected: tuple[int, list[DayRow], int]) -> bool:
            return await view(shard, day(3), day(0)) == expected

        await poll(lambda: shows(0, (0, shard0_days, 3)), what="shard 0: three merchants over four days")
        await poll(
            lambda: shows(1, (1, [(day(0), "USD", 1, 1, "7.00", "7.00", "100.00", 1)], 1)),
            what="shard 1: one merchant today",
        )
        # Only today: the reorged merchant's zero row neither counts nor makes it active.
        assert await view(0, day(0), day(0)) == (0, [shard0_days[-1]], 2)
        # A range with nothing in it.
        assert await view(1, day(20), day(10)) == (1, [], 0)

        await fails_with(metrics(1, day(0), day(0), on=0), grpc.StatusCode.UNAVAILABLE)
        error = await fails_with(metrics(2, day(0), day(0), on=0), grpc.StatusCode.INVALID_ARGUMENT)
        assert [d.field for d in from_rpc_error(error).details] == ["shard"]
        error = await fails_with(metrics(0, day(0), day(1)), grpc.StatusCode.INVALID_ARGUMENT)
        assert [(d.field, d.reason) for d in from_rpc_error(error).details] == [
            ("to", "must not be before from")
        ]


def test_a_period_ends_on_the_day_given_or_today_and_names_the_field_at_fault() -> None:
    end = dt.date(2024, 3, 1)
    assert period_range("7d", "2024-03-01") == (dt.date(2024, 2, 24), end)
    assert period_range("30d", "2024-03-01") == (dt.date(2024, 2, 1), end)
    assert period_range("90d", "2024-03-01") == (dt.date(2023, 12, 3), end)
    assert period_range("all", "2024-03-01") == (None, end)
    cases = {
        ("", ""): [("period", "must be one of 7d, 30d, 90d, all")],
        ("7D", "2024-02-30"): [
            ("period", "must be one of 7d, 30d, 90d, all"),
            ("as_of", "must be a date as YYYY-MM-DD"),
        ],
    }
    for (period, as_of), expected in cases.items():
        with pytest.raises(InvalidArgument) as error:
            period_range(period, as_of)
        assert [(d.field, d.reason) for d in error.value.details] == expected
