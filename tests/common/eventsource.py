"""Another service's events, for testing the services that consume them: a scratch event store
on every shard, relayed into the test's JetStream stream exactly as a producing service would,
plus builders for the events themselves."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
from checkout.invoice.v1 import events_pb2 as invoice_events
from checkout.invoice.v1 import invoice_pb2
from checkout.merchant.v1 import events_pb2 as merchant_events
from google.protobuf.message import Message
from nats.js import JetStreamContext

from libs.common import ids
from libs.common.config import Config
from libs.common.db import ShardPools, migrate_shard, migrations_for
from libs.common.eventstore import EventStore, StoredEvent
from libs.common.messaging import Envelope, ensure_stream, subject
from libs.common.partitions import PartitionedTable, ensure_partitions
from libs.common.protoconv import timestamp
from libs.common.relay import Relay
from libs.common.shardmap import slot_for_email
from tests.common.support import poll

SCHEMA = "source"
CHANNEL = "source_events"


class EventSource:
    def __init__(
        self, config: Config, pools: ShardPools, js: JetStreamContext, relays: list[Relay] | None = None
    ) -> None:
        self.config = config
        self.pools = pools
        self.js = js
        self.store = EventStore(CHANNEL)
        self.shard_map = config.shard_map()
        self.relays = relays or []
        self.appended = 0
        self._versions: dict[uuid.UUID, int] = {}

    def shard_of(self, any_id: uuid.UUID) -> int:
        return self.shard_map.shard_for_slot(ids.slot_of(any_id))

    async def append(
        self, aggregate_id: uuid.UUID, aggregate_type: str, *messages: Message
    ) -> list[StoredEvent]:
        """Appends to the aggregate's stream on its shard; the running relay publishes them."""
        version = self._versions.get(aggregate_id, 0)
        async with self.pools[self.shard_of(aggregate_id)].acquire() as conn, conn.transaction():
            stored = await self.store.append(
                conn,
                aggregate_id=aggregate_id,
                aggregate_type=aggregate_type,
                expected_version=version,
                new_events=list(messages),
            )
        self._versions[aggregate_id] = version + len(messages)
        self.appended += len(stored)
        return stored

    async def relayed(self) -> None:
        """Waits until the running relays have published everything appended so far."""
        await poll(
            lambda: sum(r.published for r in self.relays) >= self.appended,
            what="the relays to publish what was appended",
        )

    async def envelopes(self, shard: int) -> list[Envelope]:
        """Every event of one shard in store order, as a rebuild reads them."""
        async with self.pools[shard].acquire() as conn:
            return [Envelope.of(e, shard) for e in await self.store.read_all(conn, limit=100_000)]

    async def redeliver(self, event: StoredEvent) -> int:
        """Publishes an already relayed event once more under a new Nats-Msg-Id (as a relay would
        after a crash outside JetStream's dedup window); returns its stream sequence. Like such a
        republish, it comes after the relay has published what was appended before it."""
        await self.relayed()
        envelope = Envelope.of(event, self.shard_of(event.aggregate_id))
        headers = {**envelope.headers(), "Nats-Msg-Id": f"{event.id}-again"}
        ack = await self.js.publish(
            subject(self.config.subject_prefix, envelope.shard, envelope.type),
            envelope.to_bytes(),
            headers=headers,
        )
        assert not ack.duplicate, "JetStream de-duplicated the redelivery"
        return int(ack.seq)

    async def consumer_acked_through(self, durable: str, stream_seq: int) -> bool:
        """Whether a durable consumer has acknowledged everything up to `stream_seq`."""
        info = await self.js.consumer_info(self.config.stream_name, durable)
        return info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= stream_seq


@asynccontextmanager
async def event_source(config: Config) -> AsyncIterator[EventSource]:
    shards = list(config.shards)
    migrations = migrations_for(Path(__file__).parent / "no-service-migrations")
    for shard in shards:
        await migrate_shard(config.shard_dsn(shard), SCHEMA, migrations)
    pools = ShardPools(config, SCHEMA)
    await pools.open(shards)
    for _, pool in pools.items():
        async with pool.acquire() as conn:
            await ensure_partitions(conn, PartitionedTable("events", "month"), ahead=1)
    nc = await nats.connect(config.nats_url)
    js = nc.jetstream()
    await ensure_stream(js, config.stream_name, config.subject_prefix)
    relays = [
        Relay(
            pool,
            js,
            schema=SCHEMA,
            shard=shard,
            notify_channel=CHANNEL,
            subject_prefix=config.subject_prefix,
            poll_seconds=0.05,
        )
        for shard, pool in pools.items()
    ]
    tasks = [asyncio.create_task(relay.run(), name=f"source-relay-s{relay.shard}") for relay in relays]
    try:
        yield EventSource(config, pools, js, relays)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await nc.drain()
        await pools.close()


def merchant_on_shard(config: Config, shard: int, tag: str) -> tuple[uuid.UUID, str]:
    """A fresh merchant id (and its contact email) that lives on `shard`."""
    shard_map = config.shard_map()
    for n in range(10_000):
        email = f"{tag}-{n}-{uuid.uuid4().hex[:6]}@shop.test"
        if shard_map.shard_for_slot(slot_for_email(email)) == shard:
            return ids.new_merchant_id(email), email
    raise AssertionError(f"no email found for shard {shard}")


def merchant_created(merchant_id: uuid.UUID, email: str, at: dt.datetime) -> merchant_events.MerchantCreated:
    return merchant_events.MerchantCreated(
        merchant_id=str(merchant_id),
        business_name="Shop",
        contact_email=email,
        plan_type="free",
        created_at=timestamp(at),
    )


def invoice_created(
    merchant_id: uuid.UUID,
    *,
    total: str,
    at: dt.datetime,
    email: str = "",
    currency: str = "USD",
) -> tuple[uuid.UUID, invoice_events.InvoiceCreated]:
    """An invoice of the merchant (id on the merchant's slot) with the invoice service's
    derivation of the customer id from the email."""
    invoice_id = ids.new_id(ids.slot_of(merchant_id))
    customer_id = (
        ids.derived_id(ids.slot_of(merchant_id), "customer", str(merchant_id), email.lower())
        if email
        else None
    )
    return invoice_id, invoice_events.InvoiceCreated(
        invoice_id=str(invoice_id),
        merchant_id=str(merchant_id),
        customer_id=str(customer_id) if customer_id else "",
        customer_email=email,
        title="Order",
        items=[invoice_pb2.LineItem(name="Item", quantity="1", unit_price=total)],
        subtotal=total,
        tax="0",
        total=total,
        currency=currency,
        crypto_currency="ETH",
        created_at=timestamp(at),
    )
