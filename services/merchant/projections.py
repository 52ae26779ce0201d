"""Read models the merchant service keeps inline (in the command's transaction), so a merchant
reads its own writes at once. The same functions rebuild them from the event store.

A created event upserts its row (back to its state at creation) instead of the rebuild
truncating first: merchants and webhook endpoints have operational rows hanging off them
(webhook deliveries and attempts, notification deliveries) that no event describes, and a
truncate would take those with it."""

from __future__ import annotations

import uuid

from checkout.merchant.v1 import events_pb2 as ev

from libs.common import apikeys
from libs.common.db import Connection
from libs.common.eventstore import EventStore, StoredEvent
from libs.common.protoconv import datetime_of, plain
from services.merchant import repository


async def apply(conn: Connection, event: StoredEvent) -> None:
    message = event.message()
    if isinstance(message, ev.MerchantCreated):
        await repository.merchant_created(
            conn,
            event.aggregate_id,
            business_name=message.business_name,
            contact_email=message.contact_email,
            plan_type=message.plan_type,
            settings=plain(message.settings),
            wallets=dict(message.wallets),
            at=datetime_of(message.created_at),
        )
    elif isinstance(message, ev.MerchantUpdated):
        await repository.merchant_updated(
            conn,
            event.aggregate_id,
            business_name=message.business_name if message.HasField("business_name") else None,
            settings=plain(message.settings) if message.settings_changed else None,
            wallets=dict(message.wallets) if message.wallets_changed else None,
            at=datetime_of(message.updated_at),
        )
    elif isinstance(message, ev.ApiKeyCreated):
        await repository.api_key_created(
            conn,
            event.aggregate_id,
            merchant_id=uuid.UUID(message.merchant_id),
            key_hash=message.key_hash,
            key_type=message.key_type,
            permissions=apikeys.upcast(
                message.key_type, list(message.permissions), message.permissions_revision
            ),
            name=message.name,
            prefix=message.prefix,
            expires_at=datetime_of(message.expires_at) if message.HasField("expires_at") else None,
            created_at=datetime_of(message.created_at),
        )
    elif isinstance(message, ev.ApiKeyRevoked):
        await repository.api_key_revoked(conn, event.aggregate_id)


async def rebuild(conn: Connection, store: EventStore, batch: int = 500) -> int:
    """Replays every event of the merchant service's aggregates (merchants, API keys, webhook
    endpoints, notification templates) through the inline projections, in sequence order. Call
    inside a transaction."""
    from services.merchant.webhooks import projections as webhooks

    after, replayed = 0, 0
    while events := await store.read_all(conn, after_sequence=after, limit=batch):
        for event in events:
            await apply(conn, event)
            await webhooks.apply(conn, event)
        after = events[-1].sequence_number
        replayed += len(events)
    return replayed
