"""SQL for the merchant service's read models."""

from __future__ import annotations

import datetime as dt
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


async def active_key_by_hash(pool: asyncpg.Pool, key_hash: str) -> asyncpg.Record | None:
    """The active, unexpired key with this hash, and its merchant's plan as `plan_type`."""
    columns = ", ".join(f"k.{c.strip()}" for c in API_KEY_COLUMNS.split(","))
    return await pool.fetchrow(
        f"""SELECT {columns}, m.plan_type FROM api_keys k JOIN merchants m ON m.id = k.merchant_id
            WHERE k.key_hash = $1 AND k.status = 'active' AND (k.expires_at IS NULL OR k.expires_at > NOW())""",
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
