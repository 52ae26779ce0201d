"""SQL of the invoice read models' reads (invoices, payments, audit entries), the address
allocator and the merchant profiles."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import TSQUERY, UUID

from libs.common import ids
from libs.common.db import Connection
from libs.common.sqlcore import Query, compile_query
from services.invoice import tables

INVOICE_COLUMNS = (
    "id, merchant_id, customer_id, customer_email, title, description, items, subtotal, tax, total, "
    "currency, crypto_currency, crypto_amount, amount_paid, network, address_index, payment_address, "
    "payment_uri, status, exchange_rate, payment_tolerance, metadata, expires_at, created_at, "
    "updated_at, paid_at, overpaid, paid_late, status_reason, amount_refunded"
)
PAYMENT_COLUMNS = (
    "id, invoice_id, network, tx_hash, output_index, asset, amount, from_address, to_address, status, "
    "confirmations, required_confirmations, block_number, block_hash, late, status_reason, detected_at, "
    "confirmed_at"
)
# An invoice's id is minted (with the time in it) before its created_at is set, by up to the rate
# lookup and the command's retries: well under this. Windows on created_at widen by it on the id.
ID_MINTED_BEFORE_CREATED = dt.timedelta(hours=1)
# The exact expression of idx_invoices_merchant_search (migration 1050): an invoice's words plus
# a lexeme naming its merchant. Any other spelling would not use the index.
SEARCH_DOCUMENT = (
    "(array_to_tsvector(ARRAY['merchant ' || merchant_id::text]) "
    "|| to_tsvector('english', title || ' ' || coalesce(description, '')))"
)

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


def _id_bound(at: dt.datetime, shift: dt.timedelta) -> uuid.UUID:
    try:
        return ids.first_id_at(at + shift)
    except OverflowError:  # a window edge within the shift of year 1 or 9999: no bound there
        return uuid.UUID(int=0) if shift < dt.timedelta(0) else uuid.UUID(int=(1 << 128) - 1)


# The filters a list or search may give: which are present is a query's shape, compiled once.
_FILTERS = ("status", "created_after", "created_before", "customer_id", "search", "before_id")
Shape: TypeAlias = frozenset[str]

_INVOICES = tables.invoices
_LISTED = [_INVOICES.c[name] for name in INVOICE_COLUMNS.split(", ")]
_ENGLISH = literal_column("'english'", Text)  # a constant regconfig, as the index has it
_WORDS = func.plainto_tsquery(_ENGLISH, bindparam("search", type_=Text))
# The merchant's lexeme and the words, both required. A query of stop words only has no words:
# it matches nothing (with the merchant's lexeme alone it would match all of its invoices).
_MERCHANT_LEXEME = cast(
    func.quote_literal(
        literal_column("'merchant '", Text) + cast(bindparam("merchant_id", type_=UUID), Text)
    ),
    TSQUERY,
)
_SEARCH_MATCHES = and_(
    literal_column(SEARCH_DOCUMENT).bool_op("@@")(_MERCHANT_LEXEME.op("&&")(_WORDS)), func.numnode(_WORDS) > 0
)


def _shape(where: InvoiceFilter) -> Shape:
    return frozenset(f for f in _FILTERS if getattr(where, f) is not None)


def _values(where: InvoiceFilter, limit: int) -> dict[str, Any]:
    """The bind parameters of every shape; each query takes those its shape has."""
    after, before = where.created_after, where.created_before
    return {
        "merchant_id": where.merchant_id,
        "status": where.status,
        "created_after": after,
        "first_id": None if after is None else _id_bound(after, -ID_MINTED_BEFORE_CREATED),
        "created_before": before,
        "id_limit": None if before is None else _id_bound(before, ID_MINTED_BEFORE_CREATED),
        "customer_id": where.customer_id,
        "search": where.search,
        "before_id": where.before_id,
        "limit": limit,
    }


def _list_statement(shape: Shape) -> Select[Any]:
    """Newest first (ids are time-ordered). Only the filters given become conditions, so the
    planner sees a plain query for each shape instead of `$n IS NULL OR ...` it cannot index."""
    c = _INVOICES.c
    conditions: list[ColumnElement[bool]] = [c.merchant_id == bindparam("merchant_id")]
    if "status" in shape:
        conditions.append(c.status == bindparam("status"))
    # The window bounds the id too (ids are time-ordered), so the (merchant_id, id) index starts
    # and stops at the window instead of walking from the newest invoice; created_at stays exact.
    if "created_after" in shape:
        conditions += [c.created_at >= bindparam("created_after"), c.id >= bindparam("first_id")]
    if "created_before" in shape:
        conditions += [c.created_at < bindparam("created_before"), c.id < bindparam("id_limit")]
    if "customer_id" in shape:
        conditions.append(c.customer_id == bindparam("customer_id"))
    if "search" in shape:
        conditions.append(_SEARCH_MATCHES)
    if "before_id" in shape:
        conditions.append(c.id < bindparam("before_id"))
    return select(*_LISTED).where(*conditions).order_by(c.id.desc()).limit(bindparam("limit"))


@functools.cache
def _list_query(shape: Shape) -> Query:
    return compile_query(_list_statement(shape))


def invoices_query(where: InvoiceFilter, limit: int) -> tuple[str, list[Any]]:
    """The SQL and arguments of the invoices `where` selects, newest first, at most `limit`."""
    query = _list_query(_shape(where))
    return query.sql, query.args(_values(where, limit))


async def invoices(conn: Executor, where: InvoiceFilter, limit: int) -> list[asyncpg.Record]:
    if where.search is None:
        sql, args = invoices_query(where, limit)
        return list(await conn.fetch(sql, *args))
    return await _search(conn, where, limit)


# A search first reads this many times the page from the merchant's newest invoices (that match
# the other filters): enough to fill the page when the words are in half of them.
SEARCH_WINDOW_PAGES = 2


async def _search(conn: Executor, where: InvoiceFilter, limit: int) -> list[asyncpg.Record]:
    """Newest first, in two steps that each have one right plan whatever the words.

    A word in most of a merchant's invoices is found in its newest few; a rarer one is found by
    the GIN index, whose every match must then be read from the table to sort them, so for a
    common word that was seconds. The planner can tell the two apart only by the word's
    frequency, which it misjudges for a merchant's own vocabulary (it multiplies the merchant's
    share in twice). So: the newest window first; only if it does not fill the page, the GIN
    index below the window, planned for these very words."""
    window = SEARCH_WINDOW_PAGES * limit
    newest = replace(where, search=None)
    query = _window_query(_shape(newest))
    rows = await conn.fetch(query.sql, *query.args({**_values(newest, window), "search": where.search}))
    hits = [r for r in rows if r["hit"]]
    if len(hits) >= limit or not rows or rows[0]["window_size"] < window:
        return hits[:limit]  # the page is full, or the window held all there is
    below = replace(where, before_id=rows[-1]["id"])
    sql, args = invoices_query(below, limit - len(hits))
    return hits + await _planned_per_call(conn, sql, args)


@functools.cache
def _window_query(shape: Shape) -> Query:
    """The newest window of `shape`'s invoices, each marked whether the words are in it, with the
    window's size on every row and its oldest row kept even when not a hit (the cursor below)."""
    rows = _list_statement(shape).subquery("window_rows")
    document = func.to_tsvector(_ENGLISH, rows.c.title + " " + func.coalesce(rows.c.description, ""))
    newest = (
        select(rows, document.bool_op("@@")(_WORDS).label("hit")).cte("newest").prefix_with("MATERIALIZED")
    )
    oldest = select(newest.c.id).order_by(newest.c.id).limit(1).scalar_subquery()
    size = select(func.count()).select_from(newest).scalar_subquery()
    return compile_query(
        select(newest, size.label("window_size"))
        .where(or_(newest.c.hit, newest.c.id == oldest))
        .order_by(newest.c.id.desc())
    )


async def _planned_per_call(conn: Executor, sql: str, args: list[Any]) -> list[asyncpg.Record]:
    """Runs a prepared statement with a plan made for these very arguments.

    From its sixth execution PostgreSQL may run a prepared statement (asyncpg prepares every
    query) with a generic plan, made without the arguments. Below the newest window a word
    may still be in thousands of the merchant's invoices or in none: walking them in id order
    is right for the first, the GIN index for the second, and only the word tells which. The
    generic plan took the GIN path for every word: seconds for a common one."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as connection:
            return await _planned_per_call(connection, sql, args)
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        return list(await conn.fetch(sql, *args))


async def payments(conn: Executor, invoice_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE invoice_id = $1 ORDER BY detected_at, id",
            invoice_id,
        )
    )


async def merchant_payments(
    conn: Executor,
    merchant_id: uuid.UUID,
    detected_after: dt.datetime,
    detected_before: dt.datetime,
    after_id: uuid.UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A merchant's payments detected in [after, before), oldest first by id (ids are minted at
    detection, so id order is detection order), after the keyset cursor `after_id`."""
    return list(
        await conn.fetch(
            f"""SELECT {PAYMENT_COLUMNS} FROM payments
                WHERE merchant_id = $1 AND detected_at >= $2 AND detected_at < $3
                  AND id > coalesce($4, '00000000-0000-0000-0000-000000000000'::uuid)
                ORDER BY id LIMIT $5""",
            merchant_id,
            detected_after,
            detected_before,
            after_id,
            limit,
        )
    )


async def metadata_keys(
    conn: Executor,
    merchant_id: uuid.UUID,
    created_after: dt.datetime,
    created_before: dt.datetime,
    limit: int,
) -> list[str]:
    """The distinct top-level keys of the metadata of a merchant's invoices created in
    [after, before), sorted, at most `limit`."""
    where = InvoiceFilter(merchant_id, created_after=created_after, created_before=created_before)
    query = _keys_query(_shape(where))
    rows = await conn.fetch(query.sql, *query.args({**_values(where, 2**31 - 1), "keys": limit}))
    return [r["key"] for r in rows]


@functools.cache
def _keys_query(shape: Shape) -> Query:
    window = _list_statement(shape).subquery("w")
    # Only objects have keys (jsonb_object_keys of anything else is an error, not nothing).
    metadata = case(
        (func.jsonb_typeof(window.c.metadata) == "object", window.c.metadata),
        else_=literal_column("'{}'::jsonb"),
    )
    key = func.jsonb_object_keys(metadata).column_valued("key")
    return compile_query(select(key).distinct().select_from(window).order_by(key).limit(bindparam("keys")))


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
) -> tuple[int, dict[str, str] | None, dict[str, Any] | None]:
    """The next unused child index, taken in a statement of its own (outside the invoice's
    transaction), so the row lock lasts this one statement and a merchant's creates do not queue
    behind each other's commits. An index is never handed out twice; a create that fails after
    this leaves its index unused, a gap a wallet sees just like an invoice that was never paid.
    Also the merchant's profile (wallets, settings) as the statement saw it (None, None: no row),
    so a caller that took the profile from memory learns whether it still holds."""
    # Its commit need not wait for the WAL flush: a create's own commit flushes the WAL up to
    # and past this record, so an index is durable before any invoice uses it; lost in a crash
    # before that, no invoice had it. Waiting would hold the row lock for a whole flush.
    row = await conn.fetchrow(
        """WITH allocated AS (
               INSERT INTO address_allocations (merchant_id, network, xpub_hash, next_index)
               SELECT $1, $2, $3, 1 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush_wait
               ON CONFLICT (merchant_id, network, xpub_hash)
               DO UPDATE SET next_index = address_allocations.next_index + 1, updated_at = NOW()
               RETURNING next_index - 1 AS index)
           SELECT allocated.index, profile.wallets, profile.settings
           FROM allocated LEFT JOIN merchant_profiles AS profile ON profile.merchant_id = $1""",
        merchant_id,
        network,
        xpub_hash,
    )
    assert row is not None
    return int(row["index"]), row["wallets"], row["settings"]


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


async def received(conn: Executor, invoice_id: uuid.UUID, statuses: Iterable[str]) -> Decimal:
    """The sum of the invoice's payments in `statuses`, late ones included (Invoice.received)."""
    value = await conn.fetchval(
        "SELECT COALESCE(sum(amount), 0) FROM payments WHERE invoice_id = $1 AND status = ANY($2::text[])",
        invoice_id,
        sorted(statuses),
    )
    return Decimal(value)
