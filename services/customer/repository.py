"""SQL for the customer service's read models."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from libs.common.db import Connection
from services.customer.cursor import Position

CUSTOMER_COLUMNS = (
    "id, merchant_id, email, status, metadata, created_at, updated_at, last_seen_at, invoice_count"
)
PAYMENT_COLUMNS = "customer_id, invoice_id, amount, currency, status, paid_at, created_at"


async def record_invoice(
    conn: Connection,
    *,
    customer_id: uuid.UUID,
    merchant_id: uuid.UUID,
    email: str,
    seen_at: dt.datetime,
) -> None:
    """Creates the customer at its first invoice, or counts one more invoice.

    The conflict target is the natural key (merchant, email), the one the API promises is unique;
    the first id seen for it stays the customer's id.
    """
    await conn.execute(
        """INSERT INTO customers (id, merchant_id, email, status, metadata, created_at, updated_at,
                                  last_seen_at, invoice_count)
           VALUES ($1, $2, $3, 'active', '{}', $4, $4, $4, 1)
           ON CONFLICT (merchant_id, (lower(email))) DO UPDATE SET
               invoice_count = customers.invoice_count + 1,
               created_at = LEAST(customers.created_at, EXCLUDED.created_at),
               updated_at = GREATEST(customers.updated_at, EXCLUDED.updated_at),
               last_seen_at = GREATEST(customers.last_seen_at, EXCLUDED.last_seen_at)""",
        customer_id,
        merchant_id,
        email,
        seen_at,
    )


async def customer(
    pool: asyncpg.Pool, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> asyncpg.Record | None:
    """The merchant's customer; another merchant's customer is simply not there."""
    return await pool.fetchrow(
        f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1 AND merchant_id = $2",
        customer_id,
        merchant_id,
    )


async def customers_after(
    pool: asyncpg.Pool, merchant_id: uuid.UUID, email: str | None, after: Position | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first by (created_at, id): derived ids carry no time order of their own."""
    return list(
        await pool.fetch(
            f"""SELECT {CUSTOMER_COLUMNS} FROM customers
                WHERE merchant_id = $1
                  AND ($2::text IS NULL OR lower(email) = lower($2))
                  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
                ORDER BY created_at DESC, id DESC LIMIT $5""",
            merchant_id,
            email,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    )


async def payments_after(
    pool: asyncpg.Pool, customer_id: uuid.UUID, after: Position | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            f"""SELECT {PAYMENT_COLUMNS} FROM payment_history
                WHERE customer_id = $1
                  AND ($2::timestamptz IS NULL OR (created_at, invoice_id) < ($2, $3::uuid))
                ORDER BY created_at DESC, invoice_id DESC LIMIT $4""",
            customer_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    )
