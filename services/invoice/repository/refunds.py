"""SQL of the `refunds` read model."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import asyncpg
from checkout.invoice.v1 import events_pb2 as ev

from libs.common.db import Connection
from libs.common.protoconv import datetime_of
from services.invoice.repository.invoices import Executor

REFUND_COLUMNS = (
    "id, invoice_id, merchant_id, status, amount, currency, crypto_amount, crypto_currency, network, rate, "
    "rate_basis, rate_source, reason, address, tx_hash, output_index, created_at, claimed_at, completed_at, "
    "cancelled_at"
)


async def apply_refund(
    conn: Connection,
    invoice_id: uuid.UUID,
    message: ev.RefundCreated | ev.RefundClaimed | ev.RefundCompleted | ev.RefundCancelled,
    at: dt.datetime,
) -> None:
    """A refund event onto `refunds` (and, once paid, the invoice's refunded total)."""
    refund_id = uuid.UUID(message.refund_id)
    if isinstance(message, ev.RefundCreated):
        await conn.execute(
            """INSERT INTO refunds (id, invoice_id, merchant_id, status, amount, currency, crypto_amount,
                   crypto_currency, network, rate, rate_basis, rate_source, reason, created_at, updated_at)
               VALUES ($1, $2, $3, 'awaiting_claim', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
            refund_id,
            invoice_id,
            uuid.UUID(message.merchant_id),
            Decimal(message.amount),
            message.currency,
            Decimal(message.crypto_amount),
            message.crypto_currency,
            message.network,
            message.rate,
            message.rate_basis,
            message.rate_source,
            message.reason or None,
            datetime_of(message.created_at),
            at,
        )
    elif isinstance(message, ev.RefundClaimed):
        await conn.execute(
            """UPDATE refunds SET status = 'claimed', address = $2, claimed_at = $3, updated_at = $4
               WHERE id = $1""",
            refund_id,
            message.address,
            datetime_of(message.claimed_at),
            at,
        )
    elif isinstance(message, ev.RefundCompleted):
        amount = await conn.fetchval(
            """UPDATE refunds SET status = 'completed', tx_hash = $2, output_index = $3, completed_at = $4,
                   updated_at = $5
               WHERE id = $1 RETURNING crypto_amount""",
            refund_id,
            message.tx_hash,
            message.output_index,
            datetime_of(message.completed_at),
            at,
        )
        await conn.execute(
            "UPDATE invoices SET amount_refunded = amount_refunded + $2, updated_at = $3 WHERE id = $1",
            invoice_id,
            amount,
            at,
        )
    else:
        await conn.execute(
            """UPDATE refunds SET status = 'cancelled', cancelled_at = $2, updated_at = $3 WHERE id = $1""",
            refund_id,
            datetime_of(message.cancelled_at),
            at,
        )


async def refunds(conn: Executor, invoice_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {REFUND_COLUMNS} FROM refunds WHERE invoice_id = $1 ORDER BY id", invoice_id
    )


async def refund(conn: Executor, refund_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1", refund_id)
