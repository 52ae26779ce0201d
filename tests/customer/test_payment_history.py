"""payment_history follows the invoice's status events, relayed through JetStream for real."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from checkout.customer.v1 import customer_pb2 as pb
from checkout.customer.v1 import customer_pb2_grpc
from google.protobuf.message import Message
from nats.js.errors import NotFoundError

from libs.common import events
from libs.common.config import Config
from libs.common.consumer import rebuild
from libs.common.events import STATUS_EVENTS
from libs.common.eventstore import StoredEvent
from libs.common.messaging import Envelope
from services.customer.projections import PaymentHistoryProjection
from services.customer.service import SPEC
from tests.common.eventsource import EventSource, event_source, invoice_created, merchant_on_shard
from tests.common.support import poll
from tests.services import running

EMAIL = "payer@shop.test"


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


def status_event(
    event_type: str, invoice_id: uuid.UUID, merchant_id: uuid.UUID, customer_id: str, at: dt.datetime
) -> Message:
    """One of the status events, which all share one shape (events.proto)."""
    return events.decode(
        event_type,
        {
            "invoice_id": str(invoice_id),
            "merchant_id": str(merchant_id),
            "customer_id": customer_id,
            "status": STATUS_EVENTS[event_type],
            "total": "25.00",
            "currency": "USD",
            "crypto_currency": "ETH",
            "at": at.isoformat(),
        },
    )


class Invoice:
    def __init__(self, source: EventSource, merchant_id: uuid.UUID, at: dt.datetime) -> None:
        self.source = source
        self.merchant_id = merchant_id
        self.id, self.created = invoice_created(merchant_id, total="25.00", at=at, email=EMAIL)
        self.customer_id = self.created.customer_id

    async def open(self) -> StoredEvent:
        [stored] = await self.source.append(self.id, "Invoice", self.created)
        return stored

    async def moves(self, event_type: str, at: dt.datetime) -> StoredEvent:
        event = status_event(event_type, self.id, self.merchant_id, self.customer_id, at)
        [stored] = await self.source.append(self.id, "Invoice", event)
        return stored


async def history(
    stub: customer_pb2_grpc.CustomerServiceAsyncStub, merchant_id: uuid.UUID, customer_id: str
) -> dict[str, pb.CustomerPayment]:
    """The customer's rows by invoice id; none while the customer itself is not projected yet."""
    try:
        listed = await stub.ListCustomerPayments(
            pb.ListCustomerPaymentsRequest(merchant_id=str(merchant_id), customer_id=customer_id)
        )
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return {}
    return {p.invoice_id: p for p in listed.payments}


async def acked(source: EventSource, durable: str, seq: int) -> bool:
    try:
        return await source.consumer_acked_through(durable, seq)
    except NotFoundError:  # the service has not made its consumer yet
        return False


async def table(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM payment_history ORDER BY invoice_id"))


async def test_a_paid_invoice_shows_paid_with_its_first_paid_at_through_confirm_and_a_reorg(
    config: Config, source: EventSource
) -> None:
    merchant, _ = merchant_on_shard(config, 0, "history-shop")
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    paid = Invoice(source, merchant, t0)
    reorged = Invoice(source, merchant, t0 + dt.timedelta(minutes=1))
    open_one = Invoice(source, merchant, t0 + dt.timedelta(minutes=2))
    for invoice in (paid, reorged, open_one):
        await invoice.open()
    await paid.moves("invoice.paid", t0 + dt.timedelta(minutes=5))
    await paid.moves("invoice.confirmed", t0 + dt.timedelta(minutes=9))
    await reorged.moves("invoice.paid", t0 + dt.timedelta(minutes=6))
    await reorged.moves("invoice.reopened", t0 + dt.timedelta(minutes=7))

    async with running(SPEC, config) as (runtime, channel):
        stub = customer_pb2_grpc.CustomerServiceStub(channel)

        async def statuses(expected: dict[uuid.UUID, str]) -> bool:
            rows = await history(stub, merchant, paid.customer_id)
            return {uuid.UUID(k): v.status for k, v in rows.items()} == expected

        await poll(
            lambda: statuses({paid.id: "confirmed", reorged.id: "pending", open_one.id: "pending"}),
            what="confirmed, reopened and pending rows",
        )
        rows = await history(stub, merchant, paid.customer_id)
        mine = rows[str(paid.id)]
        assert (mine.amount, mine.currency) == ("25.00", "USD")
        assert mine.paid_at.ToDatetime(tzinfo=dt.UTC) == t0 + dt.timedelta(minutes=5)
        assert mine.created_at.ToDatetime(tzinfo=dt.UTC) == t0
        assert not rows[str(open_one.id)].HasField("paid_at")

        # Paid again after the reorg: paid, and the first paid_at stays.
        await reorged.moves("invoice.paid", t0 + dt.timedelta(minutes=8))
        await poll(
            lambda: statuses({paid.id: "confirmed", reorged.id: "paid", open_one.id: "pending"}),
            what="the reorged invoice paid again",
        )
        again = (await history(stub, merchant, paid.customer_id))[str(reorged.id)]
        assert again.paid_at.ToDatetime(tzinfo=dt.UTC) == t0 + dt.timedelta(minutes=6)

        # Expiry of the open one follows too.
        await open_one.moves("invoice.expired", t0 + dt.timedelta(minutes=30))
        await poll(
            lambda: statuses({paid.id: "confirmed", reorged.id: "paid", open_one.id: "expired"}),
            what="the open invoice expired",
        )

        # Dropped and rebuilt from the invoice events, the read model is the same.
        pool = runtime.pools[0]
        live = await table(pool)
        envelopes = [e for e in await source.envelopes(0) if e.type in PaymentHistoryProjection.event_types]
        await rebuild(pool, PaymentHistoryProjection(), envelopes, PaymentHistoryProjection.reset_sql)
        assert await table(pool) == live


async def test_a_replayed_older_status_event_does_not_overwrite_a_newer_one(
    config: Config, source: EventSource
) -> None:
    merchant, _ = merchant_on_shard(config, 0, "replay-shop")
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    invoice = Invoice(source, merchant, t0)
    created = await invoice.open()
    partial = await invoice.moves("invoice.partially_paid", t0 + dt.timedelta(minutes=1))
    paid = await invoice.moves("invoice.paid", t0 + dt.timedelta(minutes=2))
    await invoice.moves("invoice.confirmed", t0 + dt.timedelta(minutes=3))

    async with running(SPEC, config) as (runtime, channel):
        stub = customer_pb2_grpc.CustomerServiceStub(channel)

        async def confirmed() -> bool:
            rows = await history(stub, merchant, invoice.customer_id)
            return str(invoice.id) in rows and rows[str(invoice.id)].status == "confirmed"

        await poll(confirmed, what="the confirmed row")
        pool = runtime.pools[0]
        before = await table(pool)

        # A relay republishing old events (new Nats-Msg-Id, same event id) changes nothing.
        seqs = [await source.redeliver(old) for old in (created, partial)]
        await poll(
            lambda: acked(source, "customer-payment-history-s0", max(seqs)), what="the duplicates' ack"
        )
        assert await table(pool) == before

        # Nor does an older event that reaches the projection itself (as if under another id):
        # the invoice version guards the status, and paid_at keeps the earliest.
        for old in (created, partial, paid):
            envelope = dataclasses.replace(Envelope.of(old, 0), id=uuid.uuid4())
            async with pool.acquire() as conn, conn.transaction():
                await PaymentHistoryProjection().apply(conn, envelope)
        assert await table(pool) == before
        [row] = before
        assert (row["status"], row["paid_at"]) == ("confirmed", t0 + dt.timedelta(minutes=2))


async def test_an_anonymous_invoice_has_no_history_row(config: Config, source: EventSource) -> None:
    merchant, _ = merchant_on_shard(config, 1, "anon-shop")
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    invoice_id, created = invoice_created(merchant, total="5.00", at=t0)
    await source.append(invoice_id, "Invoice", created)
    await source.append(invoice_id, "Invoice", status_event("invoice.paid", invoice_id, merchant, "", t0))
    envelopes = [e for e in await source.envelopes(1) if e.type in PaymentHistoryProjection.event_types]
    assert len(envelopes) == 2

    async with running(SPEC, config) as (runtime, _):
        await poll(
            lambda: acked(source, "customer-payment-history-s1", 2),
            what="both events applied",
        )
        assert await table(runtime.pools[1]) == []
