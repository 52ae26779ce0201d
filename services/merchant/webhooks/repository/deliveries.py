"""SQL of the delivery workers' records: queued webhook deliveries and their attempts, and queued
notification emails."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import Table

from libs.common.db import Connection
from libs.common.sqlcore import newest_first
from services.merchant import tables

Db = Connection | asyncpg.Pool

DELIVERY_COLUMNS = """id, webhook_endpoint_id, merchant_id, event_id, event_type, invoice_id, status,
    attempts, response_code, response_body, last_error, next_attempt_at, delivered_at, created_at,
    updated_at"""
NOTIFICATION_COLUMNS = """id, template_id, merchant_id, event_id, event_type, invoice_id, recipient,
    subject, status, delivery_method, attempts, last_error, next_attempt_at, delivered_at, created_at"""


# -- webhook deliveries ------------------------------------------------------------------------
_ADD_WEBHOOK_EVENT = """INSERT INTO webhook_events (id, merchant_id, invoice_id, event_type, body, created_at)
    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING"""
_ADD_DELIVERY = """INSERT INTO webhook_deliveries (id, webhook_endpoint_id, merchant_id, event_id, invoice_id,
        event_type, status, next_attempt_at, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, 'pending', clock_timestamp(), now(), now())
    ON CONFLICT (webhook_endpoint_id, event_id) DO NOTHING RETURNING true"""


async def add_webhook_events(
    conn: Connection, rows: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID | None, str, str, dt.datetime]]
) -> None:
    """`add_webhook_event` of each (event, merchant, invoice, type, body, at), pipelined."""
    await conn.executemany(_ADD_WEBHOOK_EVENT, rows)


async def add_deliveries(
    conn: Connection, rows: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID | None, str]]
) -> None:
    """`add_delivery` of each (delivery, endpoint, merchant, event, invoice, type), pipelined."""
    await conn.executemany(_ADD_DELIVERY, rows)


async def add_webhook_event(
    conn: Connection,
    event_id: uuid.UUID,
    merchant_id: uuid.UUID,
    invoice_id: uuid.UUID | None,
    event_type: str,
    body: str,
    at: dt.datetime,
) -> None:
    await conn.execute(
        _ADD_WEBHOOK_EVENT,
        event_id,
        merchant_id,
        invoice_id,
        event_type,
        body,
        at,
    )


async def add_delivery(
    conn: Connection,
    delivery_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    merchant_id: uuid.UUID,
    event_id: uuid.UUID,
    invoice_id: uuid.UUID | None,
    event_type: str,
) -> bool:
    """One delivery per (endpoint, event): a redelivered message adds nothing."""
    return bool(
        await conn.fetchval(
            _ADD_DELIVERY,
            delivery_id,
            endpoint_id,
            merchant_id,
            event_id,
            invoice_id,
            event_type,
        )
    )


async def claim_due_deliveries(pool: asyncpg.Pool, lease: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    """Leases due deliveries of active endpoints: their due time moves past the attempt's
    timeout, so a worker that dies mid-attempt leaves them due again, not lost; SKIP LOCKED lets
    several workers share a shard without sending one delivery twice at once."""
    return list(
        await pool.fetch(
            """WITH due AS (
                   SELECT d.id FROM webhook_deliveries d
                   JOIN webhook_endpoints e ON e.id = d.webhook_endpoint_id
                   WHERE d.status = 'pending' AND d.next_attempt_at <= clock_timestamp()
                     AND e.status = 'active'
                   ORDER BY d.next_attempt_at
                   LIMIT $2
                   FOR UPDATE OF d SKIP LOCKED)
               UPDATE webhook_deliveries d
               SET lease = $1,
                   next_attempt_at = clock_timestamp() + make_interval(secs => e.timeout_seconds + 30)
               FROM due, webhook_endpoints e, webhook_events w
               WHERE d.id = due.id AND e.id = d.webhook_endpoint_id AND w.id = d.event_id
               RETURNING d.id, d.attempts, d.event_id, d.event_type, w.body, e.id AS endpoint_id, e.url,
                   e.secret_ref, e.previous_secret_ref, e.previous_secret_expires_at, e.max_retries,
                   e.retry_backoff, e.timeout_seconds, e.allowed_ips""",
            lease,
            limit,
        )
    )


async def seconds_to_next_delivery(pool: asyncpg.Pool) -> float | None:
    value = await pool.fetchval(
        """SELECT EXTRACT(EPOCH FROM min(d.next_attempt_at) - clock_timestamp())
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.webhook_endpoint_id
           WHERE d.status = 'pending' AND e.status = 'active'"""
    )
    return None if value is None else float(value)


async def record_attempt(
    pool: asyncpg.Pool,
    *,
    delivery_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    lease: uuid.UUID,
    attempt: int,
    succeeded: bool,
    response_code: int | None,
    response_body: str | None,
    error: str | None,
    duration_ms: int,
    attempted_at: dt.datetime,
    status: str,
    next_attempt_at: dt.datetime | None,
) -> bool:
    """Writes the attempt, the delivery's new state and the endpoint's health in one transaction;
    False (and nothing written) when the lease was lost, e.g. to a redelivery request."""
    async with pool.acquire() as conn, conn.transaction():
        updated = await conn.execute(
            """UPDATE webhook_deliveries SET attempts = $3, status = $4, response_code = $5,
                   response_body = $6, last_error = $7, next_attempt_at = $8,
                   delivered_at = CASE WHEN $9 THEN $10 ELSE delivered_at END,
                   lease = NULL, updated_at = clock_timestamp()
               WHERE id = $1 AND lease = $2""",
            delivery_id,
            lease,
            attempt,
            status,
            response_code,
            response_body,
            error,
            next_attempt_at,
            succeeded,
            attempted_at,
        )
        if updated.endswith(" 0"):
            return False
        await conn.execute(
            """INSERT INTO webhook_attempts (delivery_id, attempt, status, response_code, response_body,
                   error, duration_ms, attempted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT DO NOTHING""",
            delivery_id,
            attempt,
            "succeeded" if succeeded else "failed",
            response_code,
            response_body,
            error,
            duration_ms,
            attempted_at,
        )
        if succeeded:
            await conn.execute(
                """UPDATE webhook_endpoint_health SET consecutive_failures = 0, last_success_at = $2
                   WHERE endpoint_id = $1""",
                endpoint_id,
                attempted_at,
            )
        else:
            await conn.execute(
                """UPDATE webhook_endpoint_health SET consecutive_failures = consecutive_failures + 1,
                       last_error = $2, last_failure_at = $3
                   WHERE endpoint_id = $1""",
                endpoint_id,
                error,
                attempted_at,
            )
    return True


async def delivery(db: Db, merchant_id: uuid.UUID, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND merchant_id = $2",
        delivery_id,
        merchant_id,
    )


async def deliveries_of(
    db: Db,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    event_type: str | None,
    before: uuid.UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first (ids are time-ordered)."""
    values = {"webhook_endpoint_id": endpoint_id, "status": status, "event_type": event_type}
    return await _newest_first(db, tables.webhook_deliveries, DELIVERY_COLUMNS, values, before, limit)


async def _newest_first(
    db: Db, table: Table, columns: str, values: dict[str, Any], before: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    """The rows equal to each value given (None: that filter is left out), newest first."""
    filters = tuple(name for name, value in values.items() if value is not None)
    query = newest_first(table, columns, filters, paged=before is not None)
    return list(await db.fetch(query.sql, *query.args({**values, "before": before, "limit": limit})))


async def attempts_of(db: Db, delivery_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[asyncpg.Record]]:
    rows = await db.fetch(
        "SELECT * FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id, attempt",
        delivery_ids,
    )
    found: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for row in rows:
        found.setdefault(row["delivery_id"], []).append(row)
    return found


async def schedule_redelivery(
    conn: Connection, merchant_id: uuid.UUID, delivery_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = clock_timestamp(),
                lease = NULL, updated_at = clock_timestamp()
            WHERE id = $1 AND merchant_id = $2 RETURNING {DELIVERY_COLUMNS}""",
        delivery_id,
        merchant_id,
    )


# -- notification deliveries -------------------------------------------------------------------
async def add_notification(
    conn: Connection,
    *,
    notification_id: uuid.UUID,
    template_id: uuid.UUID,
    merchant_id: uuid.UUID,
    event_id: uuid.UUID,
    invoice_id: uuid.UUID | None,
    event_type: str,
    recipient: str,
    subject: str,
    body: str,
    skipped_because: str | None,
) -> None:
    await conn.execute(
        """INSERT INTO notification_deliveries (id, template_id, merchant_id, event_id, invoice_id,
               event_type, recipient, subject, body, status, last_error, next_attempt_at, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
               CASE WHEN $10::text IS NULL THEN 'pending' ELSE 'skipped' END, $10,
               CASE WHEN $10::text IS NULL THEN clock_timestamp() END, now())
           ON CONFLICT (template_id, event_id) DO NOTHING""",
        notification_id,
        template_id,
        merchant_id,
        event_id,
        invoice_id,
        event_type,
        recipient,
        subject,
        body,
        skipped_because,
    )


async def claim_due_notifications(pool: asyncpg.Pool, lease: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            """WITH due AS (
                   SELECT id FROM notification_deliveries
                   WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
                   ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               UPDATE notification_deliveries n
               SET lease = $1, next_attempt_at = clock_timestamp() + interval '90 seconds'
               FROM due WHERE n.id = due.id
               RETURNING n.id, n.attempts, n.recipient, n.subject, n.body, n.event_id""",
            lease,
            limit,
        )
    )


async def seconds_to_next_notification(pool: asyncpg.Pool) -> float | None:
    value = await pool.fetchval(
        """SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - clock_timestamp())
           FROM notification_deliveries WHERE status = 'pending'"""
    )
    return None if value is None else float(value)


async def record_notification(
    pool: asyncpg.Pool,
    *,
    notification_id: uuid.UUID,
    lease: uuid.UUID,
    attempts: int,
    status: str,
    error: str | None,
    next_attempt_at: dt.datetime | None,
    delivered_at: dt.datetime | None,
) -> None:
    await pool.execute(
        """UPDATE notification_deliveries SET attempts = $3, status = $4, last_error = $5,
               next_attempt_at = $6, delivered_at = COALESCE($7, delivered_at), lease = NULL
           WHERE id = $1 AND lease = $2""",
        notification_id,
        lease,
        attempts,
        status,
        error,
        next_attempt_at,
        delivered_at,
    )


async def notifications_of(
    db: Db,
    merchant_id: uuid.UUID,
    *,
    template_id: uuid.UUID | None,
    status: str | None,
    before: uuid.UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    values = {"merchant_id": merchant_id, "template_id": template_id, "status": status}
    return await _newest_first(
        db, tables.notification_deliveries, NOTIFICATION_COLUMNS, values, before, limit
    )
