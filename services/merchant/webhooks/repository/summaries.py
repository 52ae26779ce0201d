"""SQL of what the invoice events' consumer (projections.InvoiceEvents) reads and keeps: the
invoice summaries, and the endpoints and templates an event goes to."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from libs.common.db import Connection

# Drops the summaries for a rebuild (libs.common.consumer.rebuild; the feed is not reset).
RESET_SUMMARIES = "TRUNCATE invoice_summaries"

_UPSERT_INVOICE = """INSERT INTO invoice_summaries AS s (id, merchant_id, title, status, total, currency,
        crypto_amount, crypto_currency, amount_paid, payment_address, customer_email, updated_at)
    VALUES ($1, $2, COALESCE($3, ''), COALESCE($4, 'pending'), $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (id) DO UPDATE SET
        title = COALESCE($3, s.title),
        status = COALESCE($4, s.status),
        total = COALESCE($5, s.total),
        currency = COALESCE($6, s.currency),
        crypto_amount = COALESCE($7, s.crypto_amount),
        crypto_currency = COALESCE($8, s.crypto_currency),
        amount_paid = COALESCE($9, s.amount_paid),
        payment_address = COALESCE($10, s.payment_address),
        customer_email = COALESCE($11, s.customer_email),
        updated_at = GREATEST(s.updated_at, $12)"""
SUMMARY_FIELDS = (
    "title", "status", "total", "currency", "crypto_amount", "crypto_currency", "amount_paid",
    "payment_address", "customer_email",
)  # fmt: skip


def _summary_args(
    invoice_id: uuid.UUID, merchant_id: uuid.UUID, values: dict[str, Any], at: dt.datetime
) -> tuple[object, ...]:
    return (invoice_id, merchant_id, *(values.get(name) for name in SUMMARY_FIELDS), at)


async def upsert_invoice(
    conn: Connection,
    invoice_id: uuid.UUID,
    merchant_id: uuid.UUID,
    values: dict[str, Any],
    at: dt.datetime,
) -> asyncpg.Record:
    """Creates or updates the invoice's summary with the values an event carries (absent: kept)."""
    row = await conn.fetchrow(
        _UPSERT_INVOICE + " RETURNING *", *_summary_args(invoice_id, merchant_id, values, at)
    )
    assert row is not None
    return row


async def upsert_invoices(
    conn: Connection, summaries: Sequence[tuple[uuid.UUID, uuid.UUID, dict[str, Any], dt.datetime]]
) -> None:
    """`upsert_invoice` of each (invoice, merchant, values, at) in turn, pipelined."""
    await conn.executemany(_UPSERT_INVOICE, [_summary_args(*summary) for summary in summaries])


async def subscriptions(
    conn: Connection, merchants: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """The active endpoints of these merchants (id, events), in id order: `subscribed_endpoints`
    for a batch's merchants in one query."""
    found: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for row in await conn.fetch(
        "SELECT merchant_id, id, events FROM webhook_endpoints "
        "WHERE merchant_id = ANY($1::uuid[]) AND status = 'active' ORDER BY id",
        merchants,
    ):
        found.setdefault(row["merchant_id"], []).append(row)
    return found


def subscribed(endpoints: Sequence[asyncpg.Record], event_type: str) -> list[uuid.UUID]:
    return [e["id"] for e in endpoints if event_type in e["events"] or "*" in e["events"]]


async def templated(conn: Connection, merchants: Sequence[uuid.UUID]) -> set[tuple[uuid.UUID, str]]:
    """(merchant, event type) pairs that have an active notification template."""
    rows = await conn.fetch(
        "SELECT DISTINCT merchant_id, event_type FROM notification_templates "
        "WHERE merchant_id = ANY($1::uuid[]) AND is_active",
        merchants,
    )
    return {(r["merchant_id"], r["event_type"]) for r in rows}


async def merchant_contact(conn: Connection, merchant_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT business_name, contact_email FROM merchants WHERE id = $1", merchant_id
    )


def decimal_or_none(raw: object) -> Decimal | None:
    """A decimal string from an event, or None when absent or malformed (the summary keeps what
    it had rather than the consumer retrying an event forever)."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        value = Decimal(raw)
    except ArithmeticError:
        return None
    return value if value.is_finite() else None
