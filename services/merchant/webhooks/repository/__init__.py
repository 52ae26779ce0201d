"""SQL for webhook endpoints, notification templates, and the delivery worker's records."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy import Integer, Table, and_, bindparam, case, func, select

from libs.common.db import Connection
from libs.common.sqlcore import Query, compile_query, newest_first
from services.merchant import tables

Db = Connection | asyncpg.Pool

# The endpoint's own columns an endpoint answer has; its status and health come with them.
ENDPOINT_COLUMNS = (
    "id", "merchant_id", "url", "events", "max_retries", "retry_backoff", "timeout_seconds", "allowed_ips",
    "created_at", "updated_at",
)  # fmt: skip
DELIVERY_COLUMNS = """id, webhook_endpoint_id, merchant_id, event_id, event_type, invoice_id, status,
    attempts, response_code, response_body, last_error, next_attempt_at, delivered_at, created_at,
    updated_at"""
TEMPLATE_COLUMNS = (
    "id, merchant_id, event_type, subject, body_template, recipient, is_active, created_at, updated_at"
)
NOTIFICATION_COLUMNS = """id, template_id, merchant_id, event_id, event_type, invoice_id, recipient,
    subject, status, delivery_method, attempts, last_error, next_attempt_at, delivered_at, created_at"""


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


# -- the invoice projection --------------------------------------------------------------------
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
