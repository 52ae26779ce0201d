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


async def apply(conn: Connection, event: StoredEvent) -> None:
    message = event.message()
    if isinstance(message, ev.MerchantCreated):
        await conn.execute(
            """INSERT INTO merchants (id, business_name, contact_email, status, plan_type, settings,
                                      wallets, created_at, updated_at)
               VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $7)
               ON CONFLICT (id) DO UPDATE SET business_name = EXCLUDED.business_name,
                   contact_email = EXCLUDED.contact_email, status = EXCLUDED.status,
                   plan_type = EXCLUDED.plan_type, settings = EXCLUDED.settings, wallets = EXCLUDED.wallets,
                   created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at""",
            event.aggregate_id,
            message.business_name,
            message.contact_email,
            message.plan_type,
            plain(message.settings),
            dict(message.wallets),
            datetime_of(message.created_at),
        )
    elif isinstance(message, ev.MerchantUpdated):
        await conn.execute(
            """UPDATE merchants SET
                   business_name = COALESCE($2, business_name),
                   settings = CASE WHEN $3 THEN $4::jsonb ELSE settings END,
                   wallets = CASE WHEN $5 THEN $6::jsonb ELSE wallets END,
                   updated_at = $7
               WHERE id = $1""",
            event.aggregate_id,
            message.business_name if message.HasField("business_name") else None,
            message.settings_changed,
            plain(message.settings),
            message.wallets_changed,
            dict(message.wallets),
            datetime_of(message.updated_at),
        )
    elif isinstance(message, ev.ApiKeyCreated):
        await conn.execute(
            """INSERT INTO api_keys (id, merchant_id, key_hash, key_type, permissions, status, name,
                                     prefix, expires_at, created_at)
               VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9)
               ON CONFLICT (id) DO UPDATE SET merchant_id = EXCLUDED.merchant_id, key_hash = EXCLUDED.key_hash,
                   key_type = EXCLUDED.key_type, permissions = EXCLUDED.permissions, status = EXCLUDED.status,
                   name = EXCLUDED.name, prefix = EXCLUDED.prefix, expires_at = EXCLUDED.expires_at,
                   created_at = EXCLUDED.created_at""",
            event.aggregate_id,
            uuid.UUID(message.merchant_id),
            message.key_hash,
            message.key_type,
            apikeys.upcast(message.key_type, list(message.permissions), message.permissions_revision),
            message.name,
            message.prefix,
            datetime_of(message.expires_at) if message.HasField("expires_at") else None,
            datetime_of(message.created_at),
        )
    elif isinstance(message, ev.ApiKeyRevoked):
        await conn.execute("UPDATE api_keys SET status = 'revoked' WHERE id = $1", event.aggregate_id)


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
