"""invoices_paid, amount_paid and conversion_rate follow the invoices' status events, relayed
through JetStream for real: each invoice is counted once, on the day it was first paid."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from checkout.analytics.v1 import analytics_pb2 as pb
from checkout.analytics.v1 import analytics_pb2_grpc
from google.protobuf.message import Message

from libs.common import events
from libs.common.config import Config
from libs.common.consumer import rebuild
from libs.common.events import STATUS_EVENTS
from libs.common.eventstore import StoredEvent
from libs.common.messaging import Envelope
from services.analytics.projections import DailyMetricsProjection
from services.analytics.service import SPEC
from tests.common.eventsource import EventSource, event_source, invoice_created, merchant_on_shard
from tests.common.support import poll
from tests.services import running


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


class Invoice:
    def __init__(self, source: EventSource, merchant_id: uuid.UUID, total: str, at: dt.datetime) -> None:
        self.source = source
        self.merchant_id = merchant_id
        self.total = total
        self.id, self.created = invoice_created(merchant_id, total=total, at=at, email="payer@shop.test")

    async def open(self) -> StoredEvent:
        [stored] = await self.source.append(self.id, "Invoice", self.created)
        return stored

    def event(self, event_type: str, at: dt.datetime) -> Message:
        return events.decode(
            event_type,
            {
                "invoice_id": str(self.id),
                "merchant_id": str(self.merchant_id),
                "customer_id": self.created.customer_id,
                "status": STATUS_EVENTS[event_type],
                "total": self.total,
                "currency": "USD",
                "at": at.isoformat(),
            },
        )

    async def moves(self, event_type: str, at: dt.datetime) -> StoredEvent:
        [stored] = await self.source.append(self.id, "Invoice", self.event(event_type, at))
        return stored


Row = tuple[str, str, int, int, str, str, str]


def row(metric: pb.DailyMetric) -> Row:
    return (
        metric.metric_date,
        metric.currency,
        metric.invoices_created,
        metric.invoices_paid,
        metric.amount_created,
        metric.amount_paid,
        metric.conversion_rate,
    )


async def tables(pool: asyncpg.Pool) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    return (
        list(await pool.fetch("SELECT * FROM daily_metrics ORDER BY merchant_id, metric_date, currency")),
        list(await pool.fetch("SELECT * FROM paid_invoices ORDER BY invoice_id")),
    )


async def test_an_invoice_is_counted_paid_once_on_the_day_it_was_first_paid(
    config: Config, source: EventSource
) -> None:
    merchant, _ = merchant_on_shard(config, 0, "paid-shop")
    today = dt.datetime.now(dt.UTC).date()
    noon = dt.datetime.combine(today, dt.time(12), dt.UTC)
    yesterday, tomorrow = today - dt.timedelta(days=1), today + dt.timedelta(days=1)
    confirmed = Invoice(source, merchant, "10.00", noon)
    reorged = Invoice(source, merchant, "20.50", noon)
    invalid = Invoice(source, merchant, "5.00", noon)
    unpaid = Invoice(source, merchant, "1.00", noon)
    # Created yesterday, paid today: counts as today's payment.
    older = Invoice(source, merchant, "100", noon - dt.timedelta(days=1))
    for invoice in (confirmed, reorged, invalid, unpaid, older):
        await invoice.open()
    await confirmed.moves("invoice.partially_paid", noon + dt.timedelta(minutes=1))
    await confirmed.moves("invoice.paid", noon + dt.timedelta(minutes=2))
    await reorged.moves("invoice.paid", noon + dt.timedelta(minutes=3))
    await invalid.moves("invoice.paid", noon + dt.timedelta(minutes=4))
    await older.moves("invoice.paid", noon + dt.timedelta(minutes=5))

    async with running(SPEC, config) as (runtime, channel):
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)

        async def days() -> list[Row]:
            response = await stub.GetDailyMetrics(
                pb.GetDailyMetricsRequest(
                    merchant_id=str(merchant), from_date=yesterday.isoformat(), to_date=tomorrow.isoformat()
                )
            )
            return [row(d) for d in response.data]

        async def shows(expected: list[Row]) -> bool:
            return await days() == expected

        d0, d1 = yesterday.isoformat(), today.isoformat()
        # 4 paid of 4 created today: 100 %.
        await poll(
            lambda: shows(
                [(d0, "USD", 1, 0, "100.00", "0.00", "0.00"), (d1, "USD", 4, 4, "36.50", "135.50", "100.00")]
            ),
            what="four invoices paid today",
        )

        # Confirmed does not count again; a reorg takes one back (reopened), one for good (invalid).
        await confirmed.moves("invoice.confirmed", noon + dt.timedelta(minutes=20))
        await reorged.moves("invoice.reopened", noon + dt.timedelta(minutes=21))
        await invalid.moves("invoice.invalid", noon + dt.timedelta(minutes=22))
        await unpaid.moves("invoice.expired", noon + dt.timedelta(minutes=23))
        await poll(
            lambda: shows(
                [(d0, "USD", 1, 0, "100.00", "0.00", "0.00"), (d1, "USD", 4, 2, "36.50", "110.00", "50.00")]
            ),
            what="two invoices taken back",
        )

        # Paid again (the next day): counted once more, on the day it was first paid.
        await reorged.moves("invoice.paid", dt.datetime.combine(tomorrow, dt.time(1), dt.UTC))
        last = await reorged.moves("invoice.confirmed", dt.datetime.combine(tomorrow, dt.time(2), dt.UTC))
        await poll(
            lambda: shows(
                [(d0, "USD", 1, 0, "100.00", "0.00", "0.00"), (d1, "USD", 4, 3, "36.50", "130.50", "75.00")]
            ),
            what="the reorged invoice paid again, counted once",
        )
        pool = runtime.pools[0]

        # The counts settle at the paid; the confirmed after it moves only the invoice version,
        # and the snapshot below must not race it.
        async def applied(event: StoredEvent) -> bool:
            version = await pool.fetchval(
                "SELECT invoice_version FROM paid_invoices WHERE invoice_id = $1", event.aggregate_id
            )
            return bool(version == event.version)

        await poll(lambda: applied(last), what="the last confirmed applied")

        # The gateway's cached ranges embed the generation the paid events moved on.
        assert await runtime.cache.generation("analytics", str(merchant)) not in ("0", "none")

        # Dropped and rebuilt from the invoice events, the read models are the same.
        live = await tables(pool)
        envelopes = [e for e in await source.envelopes(0) if e.type in DailyMetricsProjection.event_types]
        await rebuild(pool, DailyMetricsProjection(), envelopes, DailyMetricsProjection.reset_sql)
        assert await tables(pool) == live


async def test_a_replayed_older_status_event_changes_no_count(config: Config, source: EventSource) -> None:
    merchant, _ = merchant_on_shard(config, 1, "replay-shop")
    noon = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(12), dt.UTC)
    invoice = Invoice(source, merchant, "42.00", noon)
    await invoice.open()
    paid = await invoice.moves("invoice.paid", noon + dt.timedelta(minutes=1))
    invalid = await invoice.moves("invoice.invalid", noon + dt.timedelta(minutes=2))

    async with running(SPEC, config) as (runtime, _):
        pool = runtime.pools[1]

        async def settled() -> bool:
            found = await pool.fetchrow("SELECT counted FROM paid_invoices WHERE invoice_id = $1", invoice.id)
            return found is not None and found["counted"] is False

        await poll(settled, what="the invoice paid, then invalid")
        before = await tables(pool)
        [metric] = before[0]
        assert (metric["invoices_created"], metric["invoices_paid"], metric["amount_paid"]) == (1, 0, 0)

        # The old paid reaching the projection again (as if under another event id) is ignored:
        # the invoice version says invalid came after it.
        for old in (paid, invalid):
            envelope = dataclasses.replace(Envelope.of(old, 1), id=uuid.uuid4())
            async with pool.acquire() as conn, conn.transaction():
                await DailyMetricsProjection().apply(conn, envelope)
        assert await tables(pool) == before
