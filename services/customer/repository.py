"""SQL for the customer service's read models."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, Text, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import UUID

from libs.common.db import Connection
from libs.common.sqlcore import Query, compile_query
from libs.common.tables import TIMESTAMPTZ
from services.customer import tables
from services.customer.cursor import Position

CUSTOMER_COLUMNS = (
    "id, merchant_id, email, status, metadata, created_at, updated_at, last_seen_at, invoice_count"
)
PAYMENT_COLUMNS = "customer_id, invoice_id, amount, currency, status, paid_at, created_at"
# What a rebuild (libs.common.consumer.rebuild) empties before it replays the events.
RESET_CUSTOMERS = "TRUNCATE customers"
RESET_PAYMENT_HISTORY = "TRUNCATE payment_history"


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


def _amount(raw: str) -> Decimal:
    """A decimal string from an event; a malformed one is a ValueError, which the consumer
    retries rather than storing it wrong."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"amount {raw!r} is not a decimal") from None
    if not value.is_finite():
        raise ValueError(f"amount {raw!r} is not finite")
    return value


async def record_payment(
    conn: Connection,
    *,
    customer_id: uuid.UUID,
    invoice_id: uuid.UUID,
    amount: str,
    currency: str,
    status: str,
    paid_at: dt.datetime | None,
    created_at: dt.datetime,
    version: int,
) -> None:
    """Creates or moves the invoice's history row.

    Order-independent: the status is the one of the highest invoice version seen, `paid_at` the
    earliest paid time (LEAST skips NULLs), `created_at` the earliest time (invoice.created's,
    should a status event ever have made the row first).
    """
    await conn.execute(
        """INSERT INTO payment_history (customer_id, invoice_id, amount, currency, status, paid_at,
                                        created_at, invoice_version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (customer_id, invoice_id) DO UPDATE SET
               status = CASE WHEN EXCLUDED.invoice_version > payment_history.invoice_version
                             THEN EXCLUDED.status ELSE payment_history.status END,
               invoice_version = GREATEST(payment_history.invoice_version, EXCLUDED.invoice_version),
               paid_at = LEAST(payment_history.paid_at, EXCLUDED.paid_at),
               created_at = LEAST(payment_history.created_at, EXCLUDED.created_at)""",
        customer_id,
        invoice_id,
        _amount(amount),
        currency,
        status,
        paid_at,
        created_at,
        version,
    )


async def follow_invoice(
    conn: Connection, *, invoice_id: uuid.UUID, status: str, paid_at: dt.datetime | None, version: int
) -> None:
    """Moves an existing row found by invoice alone, with the same rules as `record_payment`."""
    await conn.execute(
        """UPDATE payment_history SET
               status = CASE WHEN $3 > invoice_version THEN $2 ELSE status END,
               invoice_version = GREATEST(invoice_version, $3),
               paid_at = LEAST(paid_at, $4)
           WHERE invoice_id = $1""",
        invoice_id,
        status,
        version,
        paid_at,
    )


async def customer(
    pool: Connection | asyncpg.Pool, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> asyncpg.Record | None:
    """The merchant's customer; another merchant's customer is simply not there."""
    return await pool.fetchrow(
        f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1 AND merchant_id = $2",
        customer_id,
        merchant_id,
    )


def _older_than(created_at: ColumnElement[Any], row_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """The keyset cursor's condition: rows after the page's last (created_at, id), newest first."""
    position = tuple_(bindparam("after_at", type_=TIMESTAMPTZ), bindparam("after_id", type_=UUID))
    return tuple_(created_at, row_id) < position


@functools.cache
def _customers_query(by_email: bool, paged: bool) -> Query:
    """Only the filters given become conditions: the planner sees the (merchant, lower(email))
    index or the (merchant, created_at, id) one, not `$n IS NULL OR ...` that can use neither."""
    c = tables.customers.c
    conditions = [c.merchant_id == bindparam("merchant_id")]
    if by_email:
        conditions.append(func.lower(c.email) == func.lower(bindparam("email", type_=Text)))
    if paged:
        conditions.append(_older_than(c.created_at, c.id))
    columns = [c[name] for name in CUSTOMER_COLUMNS.split(", ")]
    statement = select(*columns).where(*conditions).order_by(c.created_at.desc(), c.id.desc())
    return compile_query(statement.limit(bindparam("limit")))


async def customers_after(
    pool: Connection | asyncpg.Pool,
    merchant_id: uuid.UUID,
    email: str | None,
    after: Position | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first by (created_at, id): derived ids carry no time order of their own."""
    query = _customers_query(email is not None, after is not None)
    values = {"merchant_id": merchant_id, "email": email, "limit": limit, **_position(after)}
    return list(await pool.fetch(query.sql, *query.args(values)))


def _position(after: Position | None) -> dict[str, Any]:
    return {"after_at": after[0], "after_id": after[1]} if after else {}


@functools.cache
def _payments_query(paged: bool) -> Query:
    c = tables.payment_history.c
    conditions = [c.customer_id == bindparam("customer_id")]
    if paged:
        conditions.append(_older_than(c.created_at, c.invoice_id))
    columns = [c[name] for name in PAYMENT_COLUMNS.split(", ")]
    statement = select(*columns).where(*conditions).order_by(c.created_at.desc(), c.invoice_id.desc())
    return compile_query(statement.limit(bindparam("limit")))


async def payments_after(
    pool: Connection | asyncpg.Pool, customer_id: uuid.UUID, after: Position | None, limit: int
) -> list[asyncpg.Record]:
    query = _payments_query(after is not None)
    values = {"customer_id": customer_id, "limit": limit, **_position(after)}
    return list(await pool.fetch(query.sql, *query.args(values)))
