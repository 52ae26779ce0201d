"""SQL for the merchant service's read models."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
from sqlalchemy import bindparam, func, literal_column, or_, select

from libs.common.db import Connection
from libs.common.sqlcore import Query, compile_query, newest_first
from services.merchant import tables

MERCHANT_COLUMNS = (
    "id, business_name, contact_email, status, plan_type, settings, wallets, created_at, updated_at"
)
API_KEY_COLUMNS = (
    "id, merchant_id, name, key_type, permissions, status, prefix, expires_at, created_at, last_used_at"
)


async def merchant(conn: Connection | asyncpg.Pool, merchant_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {MERCHANT_COLUMNS} FROM merchants WHERE id = $1", merchant_id)


async def merchants_before(pool: asyncpg.Pool, before: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    """Newest first; ids are time-ordered, so id order is creation order."""
    query = newest_first(tables.merchants, MERCHANT_COLUMNS, (), paged=before is not None)
    return list(await pool.fetch(query.sql, *query.args({"before": before, "limit": limit})))


async def email_taken(conn: Connection, email: str) -> bool:
    return bool(
        await conn.fetchval("SELECT true FROM merchants WHERE lower(contact_email) = lower($1)", email)
    )


async def claim_email(
    conn: Connection | asyncpg.Pool, email: str, merchant_id: uuid.UUID, slot: int
) -> uuid.UUID:
    """Claims `email` for `merchant_id` unless it is claimed; the id that holds the claim."""
    while True:
        claimed: uuid.UUID | None = await conn.fetchval(
            """WITH claimed AS (
                   INSERT INTO email_claims (email, merchant_id, slot) VALUES ($1, $2, $3)
                   ON CONFLICT (email) DO NOTHING RETURNING merchant_id)
               SELECT merchant_id FROM claimed
               UNION ALL SELECT merchant_id FROM email_claims WHERE email = $1
               LIMIT 1""",
            email,
            merchant_id,
            slot,
        )
        # None: a concurrent claim committed after this statement's snapshot; the next sees it.
        if claimed is not None:
            return claimed


async def api_key(conn: Connection | asyncpg.Pool, key_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id)


async def api_keys_of(pool: asyncpg.Pool, merchant_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE merchant_id = $1 ORDER BY created_at DESC",
            merchant_id,
        )
    )


def _active_by_hash() -> Query:
    """The active, unexpired key with a hash, and its merchant's plan as `plan_type`."""
    k, m = tables.api_keys.c, tables.merchants.c
    columns = [k[name] for name in API_KEY_COLUMNS.split(", ")]
    statement = (
        select(*columns, m.plan_type)
        .select_from(tables.api_keys.join(tables.merchants, m.id == k.merchant_id))
        .where(
            k.key_hash == bindparam("key_hash"),
            k.status == literal_column("'active'"),  # in the text, as a partial index would need it
            or_(k.expires_at.is_(None), k.expires_at > func.now()),
        )
    )
    return compile_query(statement)


_ACTIVE_BY_HASH = _active_by_hash()


async def active_key_by_hash(pool: asyncpg.Pool, key_hash: str) -> asyncpg.Record | None:
    """The active, unexpired key with this hash, and its merchant's plan as `plan_type`."""
    return await pool.fetchrow(_ACTIVE_BY_HASH.sql, *_ACTIVE_BY_HASH.args({"key_hash": key_hash}))


async def active_key(conn: Connection, merchant_id: uuid.UUID, key_id: uuid.UUID) -> asyncpg.Record | None:
    """The merchant's key if it is usable right now (not revoked, not expired)."""
    return await conn.fetchrow(
        f"""SELECT {API_KEY_COLUMNS} FROM api_keys
            WHERE id = $1 AND merchant_id = $2 AND status = 'active'
              AND (expires_at IS NULL OR expires_at > NOW())""",
        key_id,
        merchant_id,
    )


async def touch_keys(pool: asyncpg.Pool, uses: list[tuple[uuid.UUID, dt.datetime]]) -> int:
    """Moves each key's `last_used_at` forward to its latest use, in one statement for all."""
    status = await pool.execute(
        """UPDATE api_keys SET last_used_at = u.used_at
           FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, used_at)
           WHERE api_keys.id = u.id AND (last_used_at IS NULL OR last_used_at < u.used_at)""",
        [key_id for key_id, _ in uses],
        [used_at for _, used_at in uses],
    )
    return int(status.rsplit(" ", 1)[-1])


# -- the inline projection's writes (services/merchant/projections.py) ----------------------------
# A created event upserts its row back to its state at creation: a rebuild replays over the rows.


async def merchant_created(
    conn: Connection,
    merchant_id: uuid.UUID,
    *,
    business_name: str,
    contact_email: str,
    plan_type: str,
    settings: dict[str, Any],
    wallets: dict[str, str],
    at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO merchants (id, business_name, contact_email, status, plan_type, settings,
                                  wallets, created_at, updated_at)
           VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $7)
           ON CONFLICT (id) DO UPDATE SET business_name = EXCLUDED.business_name,
               contact_email = EXCLUDED.contact_email, status = EXCLUDED.status,
               plan_type = EXCLUDED.plan_type, settings = EXCLUDED.settings, wallets = EXCLUDED.wallets,
               created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at""",
        merchant_id,
        business_name,
        contact_email,
        plan_type,
        settings,
        wallets,
        at,
    )


async def merchant_updated(
    conn: Connection,
    merchant_id: uuid.UUID,
    *,
    business_name: str | None,
    settings: dict[str, Any] | None,
    wallets: dict[str, str] | None,
    at: dt.datetime,
) -> None:
    """Sets the fields given (None: unchanged)."""
    await conn.execute(
        """UPDATE merchants SET
               business_name = COALESCE($2, business_name),
               settings = CASE WHEN $3 THEN $4::jsonb ELSE settings END,
               wallets = CASE WHEN $5 THEN $6::jsonb ELSE wallets END,
               updated_at = $7
           WHERE id = $1""",
        merchant_id,
        business_name,
        settings is not None,
        settings if settings is not None else {},
        wallets is not None,
        wallets if wallets is not None else {},
        at,
    )


async def api_key_created(
    conn: Connection,
    key_id: uuid.UUID,
    *,
    merchant_id: uuid.UUID,
    key_hash: str,
    key_type: str,
    permissions: list[str],
    name: str,
    prefix: str,
    expires_at: dt.datetime | None,
    created_at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO api_keys (id, merchant_id, key_hash, key_type, permissions, status, name,
                                 prefix, expires_at, created_at)
           VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9)
           ON CONFLICT (id) DO UPDATE SET merchant_id = EXCLUDED.merchant_id, key_hash = EXCLUDED.key_hash,
               key_type = EXCLUDED.key_type, permissions = EXCLUDED.permissions, status = EXCLUDED.status,
               name = EXCLUDED.name, prefix = EXCLUDED.prefix, expires_at = EXCLUDED.expires_at,
               created_at = EXCLUDED.created_at""",
        key_id,
        merchant_id,
        key_hash,
        key_type,
        permissions,
        name,
        prefix,
        expires_at,
        created_at,
    )


async def api_key_revoked(conn: Connection, key_id: uuid.UUID) -> None:
    await conn.execute("UPDATE api_keys SET status = 'revoked' WHERE id = $1", key_id)
