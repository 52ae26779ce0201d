"""Money in different fiat currencies is never added up: daily metrics, a merchant's summary and
the platform metrics keep each currency apart, over real gRPC, fed by real invoice events relayed
through JetStream; and the migration that introduced the currency keeps the rows it found."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable
from decimal import Decimal
from typing import TYPE_CHECKING

import asyncpg
import pytest
from checkout.analytics.v1 import analytics_pb2 as pb
from checkout.analytics.v1 import analytics_pb2_grpc

from libs.common import events
from libs.common.config import Config
from libs.common.consumer import rebuild
from libs.common.db import migrate_shard, migrations_for
from libs.common.events import STATUS_EVENTS
from libs.common.partitions import ensure_partitions
from services.analytics.projections import DailyMetricsProjection
from services.analytics.repository import DAILY_METRICS
from services.analytics.service import SPEC
from tests.common.eventsource import EventSource, event_source, invoice_created, merchant_on_shard
from tests.common.support import poll
from tests.services import running

if TYPE_CHECKING:  # the async stub type exists only in the generated .pyi
    Stub = analytics_pb2_grpc.AnalyticsServiceAsyncStub

DayRow = tuple[str, str, int, int, str, str, str]
TotalsRow = tuple[str, int, int, str, str, str]
PlatformRow = tuple[str, str, int, int, str, str, str, int]


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


async def invoice(
    source: EventSource,
    merchant_id: uuid.UUID,
    total: str,
    currency: str,
    created: dt.datetime,
    *moves: tuple[str, dt.datetime],
) -> None:
    """Creates an invoice in `currency`, then moves it through the status events given."""
    invoice_id, opened = invoice_created(
        merchant_id, total=total, at=created, email="payer@shop.test", currency=currency
    )
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
                "currency": currency,
                "at": at.isoformat(),
            },
        )
        await source.append(invoice_id, "Invoice", moved)


def day_row(d: pb.DailyMetric) -> DayRow:
    return (
        d.metric_date,
        d.currency,
        d.invoices_created,
        d.invoices_paid,
        d.amount_created,
        d.amount_paid,
        d.conversion_rate,
    )


def totals_row(c: pb.CurrencyTotals) -> TotalsRow:
    return (
        c.currency,
        c.invoices_created,
        c.invoices_paid,
        c.amount_created,
        c.amount_paid,
        c.conversion_rate,
    )


def platform_row(d: pb.PlatformDay) -> PlatformRow:
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


async def tables(pool: asyncpg.Pool) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    return (
        list(await pool.fetch("SELECT * FROM daily_metrics ORDER BY merchant_id, metric_date, currency")),
        list(await pool.fetch("SELECT * FROM paid_invoices ORDER BY invoice_id")),
    )


async def test_a_merchant_invoicing_in_two_currencies_sees_each_currencys_sums_apart(
    config: Config, source: EventSource
) -> None:
    both, _ = merchant_on_shard(config, 0, "dollars-and-euros")
    euros, _ = merchant_on_shard(config, 0, "euros-only")
    yen, _ = merchant_on_shard(config, 0, "yen-only")
    today = dt.datetime.now(dt.UTC).date()
    noon = dt.datetime.combine(today, dt.time(12), dt.UTC)

    def at(minutes: int) -> tuple[str, dt.datetime]:
        return ("invoice.paid", noon + dt.timedelta(minutes=minutes))

    await invoice(source, both, "10.00", "USD", noon, at(1))
    await invoice(source, both, "5.00", "USD", noon)
    await invoice(source, both, "20.00", "EUR", noon, at(2))
    # Paid, then taken back by a reorg: the euros come off the EUR row, the dollars stay.
    await invoice(
        source, both, "7.50", "EUR", noon, at(3), ("invoice.reopened", noon + dt.timedelta(minutes=4))
    )
    await invoice(source, euros, "12.00", "EUR", noon, at(5))
    await invoice(source, euros, "3.00", "EUR", noon - dt.timedelta(days=2))
    await invoice(source, yen, "1500", "JPY", noon, at(6))

    async with running(SPEC, config) as (runtime, channel):
        stub: Stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)

        async def days(merchant_id: uuid.UUID) -> list[DayRow]:
            response = await stub.GetDailyMetrics(
                pb.GetDailyMetricsRequest(
                    merchant_id=str(merchant_id),
                    from_date=(today - dt.timedelta(days=6)).isoformat(),
                    to_date=today.isoformat(),
                )
            )
            return [day_row(d) for d in response.data]

        def summary(merchant_id: uuid.UUID) -> Awaitable[pb.Summary]:
            return stub.GetSummary(pb.GetSummaryRequest(merchant_id=str(merchant_id), period="7d"))

        d0, d2 = today.isoformat(), (today - dt.timedelta(days=2)).isoformat()
        both_days = [
            (d0, "EUR", 2, 1, "27.50", "20.00", "50.00"),
            (d0, "USD", 2, 1, "15.00", "10.00", "50.00"),
        ]

        async def shows(merchant_id: uuid.UUID, expected: list[DayRow]) -> bool:
            return await days(merchant_id) == expected

        await poll(lambda: shows(both, both_days), what="a row per currency, the reorged euros taken back")
        await poll(
            lambda: shows(
                euros,
                [(d2, "EUR", 1, 0, "3.00", "0.00", "0.00"), (d0, "EUR", 1, 1, "12.00", "12.00", "100.00")],
            ),
            what="the euro merchant's two days",
        )
        await poll(
            lambda: shows(yen, [(d0, "JPY", 1, 1, "1500", "1500", "100.00")]), what="yen without decimals"
        )

        # Several currencies: the counts and the rate add up, the amounts do not.
        mixed = await summary(both)
        assert (mixed.invoices_created, mixed.invoices_paid, mixed.conversion_rate) == (4, 2, "50.00")
        assert not mixed.HasField("amount_created") and not mixed.HasField("amount_paid")
        assert mixed.currency == ""
        assert [totals_row(c) for c in mixed.by_currency] == [
            ("EUR", 2, 1, "27.50", "20.00", "50.00"),
            ("USD", 2, 1, "15.00", "10.00", "50.00"),
        ]

        # One currency: its sums, and which currency they are in.
        single = await summary(euros)
        assert (single.currency, single.amount_created, single.amount_paid) == ("EUR", "15.00", "12.00")
        assert (single.invoices_created, single.invoices_paid, single.conversion_rate) == (2, 1, "50.00")
        assert [totals_row(c) for c in single.by_currency] == [("EUR", 2, 1, "15.00", "12.00", "50.00")]
        in_yen = await summary(yen)
        assert (in_yen.currency, in_yen.amount_created, in_yen.amount_paid) == ("JPY", "1500", "1500")

        # Dropped and rebuilt from the invoice events, the read models are the same.
        pool = runtime.pools[0]
        live = await tables(pool)
        envelopes = [e for e in await source.envelopes(0) if e.type in DailyMetricsProjection.event_types]
        await rebuild(pool, DailyMetricsProjection(), envelopes, DailyMetricsProjection.reset_sql)
        assert await tables(pool) == live
        assert {(r["amount"], r["currency"], r["counted"]) for r in live[1] if r["merchant_id"] == both} == {
            (Decimal(10), "USD", True),
            (Decimal(20), "EUR", True),
            (Decimal("7.5"), "EUR", False),
        }


async def test_platform_metrics_keep_currencies_apart_across_merchants_and_shards(
    config: Config, source: EventSource
) -> None:
    a, _ = merchant_on_shard(config, 0, "a")
    b, _ = merchant_on_shard(config, 0, "b")
    c, _ = merchant_on_shard(config, 1, "c")
    today = dt.datetime.now(dt.UTC).date()
    noon = dt.datetime.combine(today, dt.time(12), dt.UTC)
    paid = ("invoice.paid", noon)
    await invoice(source, a, "10.00", "USD", noon, paid)
    await invoice(source, a, "4.00", "EUR", noon)
    await invoice(source, b, "6.00", "EUR", noon, paid)
    await invoice(source, c, "1.00", "EUR", noon)
    await invoice(source, c, "1500", "JPY", noon, paid)

    shard0 = dataclasses.replace(config, served_shards=frozenset({0}))
    shard1 = dataclasses.replace(config, served_shards=frozenset({1}))
    async with running(SPEC, shard0) as (_, channel0), running(SPEC, shard1) as (_, channel1):
        stubs: dict[int, Stub] = {
            0: analytics_pb2_grpc.AnalyticsServiceStub(channel0),
            1: analytics_pb2_grpc.AnalyticsServiceStub(channel1),
        }

        async def view(shard: int) -> tuple[list[PlatformRow], int, list[tuple[str, int]]]:
            answer = await stubs[shard].GetPlatformMetrics(
                pb.GetPlatformMetricsRequest(
                    shard=shard, from_date=today.isoformat(), to_date=today.isoformat()
                )
            )
            return (
                [platform_row(d) for d in answer.data],
                answer.merchants_active,
                [(x.currency, x.merchants_active) for x in answer.merchants_active_by_currency],
            )

        async def shows(shard: int, expected: tuple[list[PlatformRow], int, list[tuple[str, int]]]) -> bool:
            return await view(shard) == expected

        d0 = today.isoformat()
        # Shard 0: two merchants in euros, one of them also in dollars.
        await poll(
            lambda: shows(
                0,
                (
                    [
                        (d0, "EUR", 2, 1, "10.00", "6.00", "50.00", 2),
                        (d0, "USD", 1, 1, "10.00", "10.00", "100.00", 1),
                    ],
                    2,
                    [("EUR", 2), ("USD", 1)],
                ),
            ),
            what="shard 0: euros and dollars apart",
        )
        await poll(
            lambda: shows(
                1,
                (
                    [
                        (d0, "EUR", 1, 0, "1.00", "0.00", "0.00", 1),
                        (d0, "JPY", 1, 1, "1500", "1500", "100.00", 1),
                    ],
                    1,
                    [("EUR", 1), ("JPY", 1)],
                ),
            ),
            what="shard 1: euros and yen apart",
        )


async def test_the_currency_migration_keeps_existing_rows_as_dollars_under_the_new_key(
    config: Config,
) -> None:
    """1003 on a database that already has metrics: the old rows become USD, and the key now
    lets a merchant's day have a row per currency."""
    dsn, schema = config.shard_dsn(0), "analytics_currency_migration"
    # Up to 1003, whatever came after it.
    migrations = [m for m in migrations_for(SPEC.service_dir) if m.version < "1004"]
    before = [m for m in migrations if m.version < "1003"]
    through = [m for m in migrations if m.version < "1004"]  # later ones are tested on their own
    assert [m.version for m in through if m not in before] == ["1003_metrics_by_currency"]
    await migrate_shard(dsn, schema, before)
    merchant, invoice_id = uuid.uuid4(), uuid.uuid4()
    day = dt.date(2026, 1, 15)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await ensure_partitions(conn, DAILY_METRICS, ahead=0, behind=0, today=day)
        await conn.execute(
            "INSERT INTO daily_metrics (merchant_id, metric_date, invoices_created, amount_created) "
            "VALUES ($1, $2, 1, 12.5)",
            merchant,
            day,
        )
        await conn.execute(
            "INSERT INTO paid_invoices (invoice_id, merchant_id, paid_on, amount, counted, invoice_version) "
            "VALUES ($1, $2, $3, 12.5, true, 2)",
            invoice_id,
            merchant,
            day,
        )

        assert await migrate_shard(dsn, schema, through) == ["1003_metrics_by_currency"]

        assert (
            await conn.fetchval("SELECT currency FROM daily_metrics WHERE merchant_id = $1", merchant)
            == "USD"
        )
        assert (
            await conn.fetchval("SELECT currency FROM paid_invoices WHERE invoice_id = $1", invoice_id)
            == "USD"
        )
        await conn.execute(
            "INSERT INTO daily_metrics (merchant_id, metric_date, currency, invoices_created) VALUES ($1, $2, 'EUR', 1)",
            merchant,
            day,
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO daily_metrics (merchant_id, metric_date, currency) VALUES ($1, $2, 'EUR')",
                merchant,
                day,
            )
        # No default any more: a write that forgets the currency fails instead of counting dollars.
        with pytest.raises(asyncpg.NotNullViolationError):
            await conn.execute(
                "INSERT INTO daily_metrics (merchant_id, metric_date) VALUES ($1, $2)", uuid.uuid4(), day
            )
    finally:
        await conn.close()
