"""The merchant service's invoice-event projection applied a consumer's batch at once leaves the
same summaries, feed (numbers included), webhook events and deliveries as the same events
applied one at a time, which is what a rebuild and the one-by-one retry of a failed batch do."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from checkout.invoice.v1 import events_pb2 as invoice_events
from google.protobuf.message import Message

from libs.common import events, ids
from libs.common.config import Config
from libs.common.messaging import Envelope
from services.merchant.service import SPEC, MerchantBuilt
from services.merchant.webhooks.projections import InvoiceEvents
from tests.common.eventsource import invoice_created
from tests.merchant.test_webhook_delivery import create_endpoint
from tests.merchant.webhook_support import Receiver, new_merchant, receiver, stub_of
from tests.services import running

STATE = {
    "summaries": "SELECT * FROM invoice_summaries ORDER BY id",
    "feed": "SELECT merchant_id, sequence, event_id, event_type, body FROM event_feed "
    "ORDER BY merchant_id, sequence",
    "heads": "SELECT * FROM event_feed_heads ORDER BY merchant_id",
    "webhook_events": "SELECT * FROM webhook_events ORDER BY id",
    "deliveries": "SELECT webhook_endpoint_id, event_id, invoice_id, event_type, status "
    "FROM webhook_deliveries ORDER BY webhook_endpoint_id, event_id",
}


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, webhook_allow_loopback=True)


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as started:
        yield started


def envelope(invoice_id: uuid.UUID, version: int, message: Message, at: dt.datetime) -> Envelope:
    return Envelope(
        id=uuid.uuid4(),
        type=events.type_of(message),
        aggregate_id=invoice_id,
        aggregate_type="Invoice",
        version=version,
        shard=0,
        occurred_at=at,
        data=events.encode(message),
        metadata={},
    )


def paid(invoice_id: uuid.UUID, merchant_id: uuid.UUID) -> invoice_events.StatusChange:
    return invoice_events.StatusChange(
        invoice_id=str(invoice_id), merchant_id=str(merchant_id), status="paid",
        previous_status="pending", total="25.00", currency="USD", amount_paid="0.01",
    )  # fmt: skip


async def state_after(
    pool: Any, apply: Any, events_: Sequence[Envelope], queries: dict[str, str] = STATE
) -> dict[str, list[dict[str, Any]]]:
    """The rows `queries` read after `apply`, in a transaction rolled back afterwards."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await apply(conn, events_)
            return {name: [dict(r) for r in await conn.fetch(sql)] for name, sql in queries.items()}
        finally:
            await transaction.rollback()


async def test_a_batch_applied_at_once_equals_its_events_applied_one_by_one(
    config: Config, hook: Receiver
) -> None:
    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config, tag="batch")
        await create_endpoint(stub, merchant, hook.url(), events=["invoice.created", "invoice.paid"])
        await create_endpoint(stub, merchant, hook.url(), events=["invoice.paid"])
        quiet = ids.new_id(ids.slot_of(merchant))  # another merchant of the shard, no endpoints
        projection = InvoiceEvents(MerchantBuilt.of(runtime).feed)
        now = dt.datetime.now(dt.UTC)
        batch = []
        for owner in (merchant, quiet, merchant):
            invoice_id, created = invoice_created(owner, total="25.00", at=now)
            batch.append(envelope(invoice_id, 1, created, now))
            batch.append(envelope(invoice_id, 2, paid(invoice_id, owner), now + dt.timedelta(seconds=1)))
        pool = runtime.pool_for(merchant)
        # One event of the batch is in the feed already (a redelivery after a lost ack).
        async with pool.acquire() as conn, conn.transaction():
            await projection.apply(conn, batch[2])

        async def one_by_one(conn: Any, events_: Sequence[Envelope]) -> None:
            for event in events_:
                await projection.apply(conn, event)

        expected = await state_after(pool, one_by_one, batch)
        assert [len(expected[name]) for name in STATE] == [3, 6, 2, 4, 6]
        assert await state_after(pool, projection.apply_batch, batch) == expected
