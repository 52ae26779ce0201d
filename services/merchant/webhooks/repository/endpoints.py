"""SQL of webhook endpoints, notification templates and the endpoints' signing secrets."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence

import asyncpg
from sqlalchemy import Integer, and_, bindparam, case, func, select

from libs.common.db import Connection
from libs.common.sqlcore import Query, compile_query
from services.merchant import tables
from services.merchant.webhooks.repository.deliveries import Db

# The endpoint's own columns an endpoint answer has; its status and health come with them.
ENDPOINT_COLUMNS = (
    "id", "merchant_id", "url", "events", "max_retries", "retry_backoff", "timeout_seconds", "allowed_ips",
    "created_at", "updated_at",
)  # fmt: skip
TEMPLATE_COLUMNS = (
    "id, merchant_id, event_type, subject, body_template, recipient, is_active, created_at, updated_at"
)


@functools.cache
def _endpoints_query(one: bool) -> Query:
    """A merchant's endpoints (or the one with `endpoint_id`) with their health. `failing` is
    derived: an active endpoint whose last `failing_after` attempts all failed."""
    e, h = tables.webhook_endpoints.c, tables.webhook_endpoint_health.c
    failures = func.coalesce(h.consecutive_failures, 0)
    failing = and_(e.status == "active", failures >= bindparam("failing_after", type_=Integer))
    status = case((failing, "failing"), else_=e.status)
    joined = tables.webhook_endpoints.outerjoin(tables.webhook_endpoint_health, h.endpoint_id == e.id)
    conditions = [e.merchant_id == bindparam("merchant_id")]
    if one:
        conditions.append(e.id == bindparam("endpoint_id"))
    statement = (
        select(
            *(e[name] for name in ENDPOINT_COLUMNS),
            status.label("status"),
            failures.label("consecutive_failures"),
            h.last_error,
            h.last_failure_at,
            h.last_success_at,
        )
        .select_from(joined)
        .where(*conditions)
        .order_by(e.created_at, e.id)
    )
    return compile_query(statement)


# -- endpoints ---------------------------------------------------------------------------------
async def endpoint(
    db: Db, merchant_id: uuid.UUID, endpoint_id: uuid.UUID, failing_after: int
) -> asyncpg.Record | None:
    query = _endpoints_query(one=True)
    values = {"merchant_id": merchant_id, "endpoint_id": endpoint_id, "failing_after": failing_after}
    return await db.fetchrow(query.sql, *query.args(values))


async def endpoints_of(db: Db, merchant_id: uuid.UUID, failing_after: int) -> list[asyncpg.Record]:
    query = _endpoints_query(one=False)
    return list(
        await db.fetch(query.sql, *query.args({"merchant_id": merchant_id, "failing_after": failing_after}))
    )


async def subscribed_endpoints(conn: Connection, merchant_id: uuid.UUID, event_type: str) -> list[uuid.UUID]:
    rows = await conn.fetch(
        """SELECT id FROM webhook_endpoints
           WHERE merchant_id = $1 AND status = 'active' AND ($2 = ANY(events) OR '*' = ANY(events))
           ORDER BY id""",
        merchant_id,
        event_type,
    )
    return [r["id"] for r in rows]


# -- templates ---------------------------------------------------------------------------------
async def template(db: Db, merchant_id: uuid.UUID, template_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {TEMPLATE_COLUMNS} FROM notification_templates WHERE id = $1 AND merchant_id = $2",
        template_id,
        merchant_id,
    )


async def templates_of(db: Db, merchant_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            f"SELECT {TEMPLATE_COLUMNS} FROM notification_templates WHERE merchant_id = $1 "
            "ORDER BY created_at, id",
            merchant_id,
        )
    )


async def active_templates(conn: Connection, merchant_id: uuid.UUID, event_type: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"SELECT {TEMPLATE_COLUMNS} FROM notification_templates "
            "WHERE merchant_id = $1 AND event_type = $2 AND is_active ORDER BY id",
            merchant_id,
            event_type,
        )
    )


# -- signing secrets (vault.py seals and opens them; this is only where they are kept) ----------
# Events before secret references held the plaintext; their id is the reference (vault.py).
LEGACY_SECRET_EVENTS = ("webhook_endpoint.created", "webhook_endpoint.secret_rotated")


async def add_secret(
    conn: Connection,
    ref: uuid.UUID,
    endpoint_id: uuid.UUID,
    merchant_id: uuid.UUID,
    ciphertext: bytes,
    created_at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO webhook_secrets (id, endpoint_id, merchant_id, ciphertext, created_at)
           VALUES ($1, $2, $3, $4, $5)""",
        ref,
        endpoint_id,
        merchant_id,
        ciphertext,
        created_at,
    )


async def sealed_secrets(db: Db, refs: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    rows = await db.fetch("SELECT id, ciphertext FROM webhook_secrets WHERE id = ANY($1::uuid[])", list(refs))
    return {r["id"]: bytes(r["ciphertext"]) for r in rows}


async def legacy_secrets(db: Db, refs: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await db.fetch(
        """SELECT id, event_data->>'secret' AS secret FROM events
           WHERE id = ANY($1::uuid[]) AND event_type = ANY($2::text[]) AND event_data ? 'secret'""",
        list(refs),
        list(LEGACY_SECRET_EVENTS),
    )
    return {r["id"]: r["secret"] for r in rows if r["secret"]}


# -- the inline projection's writes (services/merchant/webhooks/projections.py) -------------------
# A created event upserts its row back to its state at creation: a rebuild replays over the rows.


async def endpoint_created(
    conn: Connection,
    endpoint_id: uuid.UUID,
    *,
    merchant_id: uuid.UUID,
    url: str,
    events: list[str],
    secret_ref: uuid.UUID,
    max_retries: int,
    retry_backoff: str,
    timeout_seconds: int,
    allowed_ips: list[str],
    at: dt.datetime,
) -> None:
    """The endpoint, and its health row unless it has one (a replay keeps the endpoint's delivery
    record: it is not in any event)."""
    await conn.execute(
        """INSERT INTO webhook_endpoints (id, merchant_id, url, events, secret_ref, status, max_retries,
               retry_backoff, timeout_seconds, allowed_ips, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $10)
           ON CONFLICT (id) DO UPDATE SET merchant_id = EXCLUDED.merchant_id, url = EXCLUDED.url,
               events = EXCLUDED.events, secret_ref = EXCLUDED.secret_ref, previous_secret_ref = NULL,
               previous_secret_expires_at = NULL, status = EXCLUDED.status,
               max_retries = EXCLUDED.max_retries, retry_backoff = EXCLUDED.retry_backoff,
               timeout_seconds = EXCLUDED.timeout_seconds, allowed_ips = EXCLUDED.allowed_ips,
               created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at""",
        endpoint_id,
        merchant_id,
        url,
        events,
        secret_ref,
        max_retries,
        retry_backoff,
        timeout_seconds,
        allowed_ips,
        at,
    )
    await conn.execute(
        "INSERT INTO webhook_endpoint_health (endpoint_id) VALUES ($1) ON CONFLICT DO NOTHING", endpoint_id
    )


async def endpoint_updated(
    conn: Connection,
    endpoint_id: uuid.UUID,
    *,
    url: str | None,
    events: list[str] | None,
    max_retries: int | None,
    retry_backoff: str | None,
    timeout_seconds: int | None,
    allowed_ips: list[str] | None,
    status: str | None,
    at: dt.datetime,
) -> None:
    """Sets the fields given (None: unchanged)."""
    await conn.execute(
        """UPDATE webhook_endpoints SET
               url = COALESCE($2, url),
               events = CASE WHEN $3 THEN $4::text[] ELSE events END,
               max_retries = COALESCE($5, max_retries),
               retry_backoff = COALESCE($6, retry_backoff),
               timeout_seconds = COALESCE($7, timeout_seconds),
               allowed_ips = CASE WHEN $8 THEN $9::text[] ELSE allowed_ips END,
               status = COALESCE($10, status),
               updated_at = $11
           WHERE id = $1""",
        endpoint_id,
        url,
        events is not None,
        events if events is not None else [],
        max_retries,
        retry_backoff,
        timeout_seconds,
        allowed_ips is not None,
        allowed_ips if allowed_ips is not None else [],
        status,
        at,
    )


async def clear_endpoint_failures(conn: Connection, endpoint_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE webhook_endpoint_health SET consecutive_failures = 0 WHERE endpoint_id = $1", endpoint_id
    )


async def secret_rotated(
    conn: Connection,
    endpoint_id: uuid.UUID,
    *,
    secret_ref: uuid.UUID,
    previous_expires_at: dt.datetime,
    at: dt.datetime,
) -> None:
    await conn.execute(
        """UPDATE webhook_endpoints SET previous_secret_ref = secret_ref,
               previous_secret_expires_at = $3, secret_ref = $2, updated_at = $4
           WHERE id = $1""",
        endpoint_id,
        secret_ref,
        previous_expires_at,
        at,
    )


async def endpoint_deleted(conn: Connection, endpoint_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id)


async def template_created(
    conn: Connection,
    template_id: uuid.UUID,
    *,
    merchant_id: uuid.UUID,
    event_type: str,
    subject: str,
    body_template: str,
    recipient: str,
    is_active: bool,
    at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO notification_templates (id, merchant_id, event_type, subject, body_template,
               recipient, is_active, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
           ON CONFLICT (id) DO UPDATE SET merchant_id = EXCLUDED.merchant_id,
               event_type = EXCLUDED.event_type, subject = EXCLUDED.subject,
               body_template = EXCLUDED.body_template, recipient = EXCLUDED.recipient,
               is_active = EXCLUDED.is_active, created_at = EXCLUDED.created_at,
               updated_at = EXCLUDED.updated_at""",
        template_id,
        merchant_id,
        event_type,
        subject,
        body_template,
        recipient,
        is_active,
        at,
    )


async def template_updated(
    conn: Connection,
    template_id: uuid.UUID,
    *,
    event_type: str | None,
    subject: str | None,
    body_template: str | None,
    recipient: str | None,
    is_active: bool | None,
    at: dt.datetime,
) -> None:
    """Sets the fields given (None: unchanged)."""
    await conn.execute(
        """UPDATE notification_templates SET
               event_type = COALESCE($2, event_type),
               subject = COALESCE($3, subject),
               body_template = COALESCE($4, body_template),
               recipient = COALESCE($5, recipient),
               is_active = COALESCE($6, is_active),
               updated_at = $7
           WHERE id = $1""",
        template_id,
        event_type,
        subject,
        body_template,
        recipient,
        is_active,
        at,
    )


async def template_deleted(conn: Connection, template_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM notification_templates WHERE id = $1", template_id)
