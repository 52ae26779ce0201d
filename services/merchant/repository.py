"""SQL for the merchant service's read models."""

from __future__ import annotations

import uuid

import asyncpg

from libs.common.db import Connection

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
    return list(
        await pool.fetch(
            f"SELECT {MERCHANT_COLUMNS} FROM merchants WHERE ($1::uuid IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
            before,
            limit,
        )
    )


async def email_taken(conn: Connection, email: str) -> bool:
    return bool(
        await conn.fetchval("SELECT true FROM merchants WHERE lower(contact_email) = lower($1)", email)
    )


async def api_key(conn: Connection | asyncpg.Pool, key_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1", key_id)


async def api_keys_of(pool: asyncpg.Pool, merchant_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE merchant_id = $1 ORDER BY created_at DESC",
            merchant_id,
        )
    )


async def active_key_by_hash(pool: asyncpg.Pool, key_hash: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        f"""SELECT {API_KEY_COLUMNS} FROM api_keys
            WHERE key_hash = $1 AND status = 'active' AND (expires_at IS NULL OR expires_at > NOW())""",
        key_hash,
    )


async def active_key(conn: Connection, merchant_id: uuid.UUID, key_id: uuid.UUID) -> asyncpg.Record | None:
    """The merchant's key if it is usable right now (not revoked, not expired)."""
    return await conn.fetchrow(
        f"""SELECT {API_KEY_COLUMNS} FROM api_keys
            WHERE id = $1 AND merchant_id = $2 AND status = 'active'
              AND (expires_at IS NULL OR expires_at > NOW())""",
        key_id,
        merchant_id,
    )


async def touch_key(pool: asyncpg.Pool, key_id: uuid.UUID) -> None:
    """`last_used_at` to the minute: one write a minute per key, not one per request."""
    await pool.execute(
        """UPDATE api_keys SET last_used_at = NOW() WHERE id = $1
           AND (last_used_at IS NULL OR last_used_at < NOW() - interval '1 minute')""",
        key_id,
    )
