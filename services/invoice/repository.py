"""SQL for the invoice service's read models, its address allocator and its merchant profiles."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from libs.common.db import Connection

INVOICE_COLUMNS = (
    "id, merchant_id, customer_id, customer_email, title, description, items, subtotal, tax, total, "
    "currency, crypto_currency, crypto_amount, amount_paid, network, address_index, payment_address, "
    "payment_uri, status, exchange_rate, payment_tolerance, metadata, expires_at, created_at, "
    "updated_at, paid_at, overpaid, paid_late, status_reason"
)
PAYMENT_COLUMNS = (
    "id, invoice_id, network, tx_hash, output_index, asset, amount, from_address, to_address, status, "
    "confirmations, required_confirmations, block_number, block_hash, late, status_reason, detected_at, "
    "confirmed_at"
)
# The exact expression of idx_invoices_text_search: any other spelling would not use the index.
SEARCH_VECTOR = "to_tsvector('english', title || ' ' || coalesce(description, ''))"

Executor: TypeAlias = Connection | asyncpg.Pool


@dataclass(frozen=True)
class InvoiceFilter:
    merchant_id: uuid.UUID
    status: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    customer_id: uuid.UUID | None = None
    search: str | None = None
    before_id: uuid.UUID | None = None


async def invoice(conn: Executor, invoice_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1", invoice_id)


def invoices_query(where: InvoiceFilter, limit: int) -> tuple[str, list[Any]]:
    """Newest first (ids are time-ordered). Only the filters given become conditions, so the
    planner sees a plain query for each shape instead of `$n IS NULL OR ...` it cannot index."""
    conditions = ["merchant_id = $1"]
    args: list[Any] = [where.merchant_id]

    def add(condition: str, value: Any) -> None:
        args.append(value)
        conditions.append(condition.format(f"${len(args)}"))

    if where.status is not None:
        add("status = {}", where.status)
    if where.created_after is not None:
        add("created_at >= {}", where.created_after)
    if where.created_before is not None:
        add("created_at < {}", where.created_before)
    if where.customer_id is not None:
        add("customer_id = {}", where.customer_id)
    if where.search is not None:
        add(SEARCH_VECTOR + " @@ plainto_tsquery('english', {})", where.search)
    if where.before_id is not None:
        add("id < {}", where.before_id)
    args.append(limit)
    sql = (
        f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE {' AND '.join(conditions)} "
        f"ORDER BY id DESC LIMIT ${len(args)}"
    )
    return sql, args


async def invoices(conn: Executor, where: InvoiceFilter, limit: int) -> list[asyncpg.Record]:
    sql, args = invoices_query(where, limit)
    return list(await conn.fetch(sql, *args))


async def payments(conn: Executor, invoice_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE invoice_id = $1 ORDER BY detected_at, id",
            invoice_id,
        )
    )


async def audit_entries(
    conn: Executor, invoice_id: uuid.UUID, after_id: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    """Oldest first, in the order the invoice's events were written (its versions); the cursor is
    the last entry's id."""
    columns = "id, invoice_id, event, actor, timestamp, request_id, data"
    if after_id is None:
        return list(
            await conn.fetch(
                f"SELECT {columns} FROM audit_entries WHERE invoice_id = $1 ORDER BY event_version LIMIT $2",
                invoice_id,
                limit,
            )
        )
    return list(
        await conn.fetch(
            f"""SELECT {columns} FROM audit_entries WHERE invoice_id = $1
                  AND event_version > (SELECT event_version FROM audit_entries
                                       WHERE invoice_id = $1 AND id = $2)
                ORDER BY event_version LIMIT $3""",
            invoice_id,
            after_id,
            limit,
        )
    )


AUDIT_COLUMNS = "id, invoice_id, event, actor, timestamp, request_id, data, event_version"


async def audit_entries_after(
    conn: Executor, invoice_id: uuid.UUID, after_version: int, limit: int, *, table: str = "audit_entries"
) -> list[asyncpg.Record]:
    """Entries after an event version, oldest first; `table` may be the archived one."""
    return list(
        await conn.fetch(
            f"SELECT {AUDIT_COLUMNS} FROM {table} WHERE invoice_id = $1 AND event_version > $2 "
            f"ORDER BY event_version LIMIT $3",
            invoice_id,
            after_version,
            limit,
        )
    )


async def audit_version(
    conn: Executor, invoice_id: uuid.UUID, entry_id: uuid.UUID, *, table: str = "audit_entries"
) -> int | None:
    version = await conn.fetchval(
        f"SELECT event_version FROM {table} WHERE invoice_id = $1 AND id = $2", invoice_id, entry_id
    )
    return None if version is None else int(version)


async def count_invoices(conn: Executor) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM invoices"))


async def allocate_address_index(
    conn: Connection, merchant_id: uuid.UUID, network: str, xpub_hash: str
) -> int:
    """The next unused child index. The row lock taken here is held until the invoice's
    transaction ends: a concurrent create waits and gets the next index; a rollback frees it."""
    index = await conn.fetchval(
        """INSERT INTO address_allocations (merchant_id, network, xpub_hash, next_index)
           VALUES ($1, $2, $3, 1)
           ON CONFLICT (merchant_id, network, xpub_hash)
           DO UPDATE SET next_index = address_allocations.next_index + 1, updated_at = NOW()
           RETURNING next_index - 1""",
        merchant_id,
        network,
        xpub_hash,
    )
    return int(index)


async def merchant_profile(conn: Executor, merchant_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT merchant_id, wallets, settings, updated_at FROM merchant_profiles WHERE merchant_id = $1",
        merchant_id,
    )


async def upsert_merchant_profile(
    conn: Connection,
    merchant_id: uuid.UUID,
    *,
    wallets: dict[str, str] | None,
    settings: dict[str, Any] | None,
    at: dt.datetime,
) -> None:
    """Sets the fields given (None: unchanged), each only if `at` is newer than what it holds."""
    await conn.execute(
        """INSERT INTO merchant_profiles
               (merchant_id, wallets, settings, wallets_updated_at, settings_updated_at, updated_at)
           VALUES ($1, COALESCE($2::jsonb, '{}'), COALESCE($3::jsonb, '{}'),
                   CASE WHEN $2::jsonb IS NULL THEN '-infinity'::timestamptz ELSE $4 END,
                   CASE WHEN $3::jsonb IS NULL THEN '-infinity'::timestamptz ELSE $4 END, $4)
           ON CONFLICT (merchant_id) DO UPDATE SET
               wallets = CASE WHEN $2::jsonb IS NOT NULL AND merchant_profiles.wallets_updated_at < $4
                              THEN $2::jsonb ELSE merchant_profiles.wallets END,
               wallets_updated_at = CASE WHEN $2::jsonb IS NOT NULL
                              THEN GREATEST(merchant_profiles.wallets_updated_at, $4)
                              ELSE merchant_profiles.wallets_updated_at END,
               settings = CASE WHEN $3::jsonb IS NOT NULL AND merchant_profiles.settings_updated_at < $4
                              THEN $3::jsonb ELSE merchant_profiles.settings END,
               settings_updated_at = CASE WHEN $3::jsonb IS NOT NULL
                              THEN GREATEST(merchant_profiles.settings_updated_at, $4)
                              ELSE merchant_profiles.settings_updated_at END,
               updated_at = GREATEST(merchant_profiles.updated_at, $4)""",
        merchant_id,
        wallets,
        settings,
        at,
    )
