"""What the merchant service answers with about webhooks and notifications: plain frozen values
built from its read models, each with the fields of the API message of the same name
(merchant.proto), so grpc_api.py maps it mechanically (libs/common/views.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    merchant_id: str
    url: str
    events: tuple[str, ...]
    status: str
    max_retries: int
    retry_backoff: str
    timeout_seconds: int
    allowed_ips: tuple[str, ...]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    consecutive_failures: int
    last_error: str
    last_failure_at: dt.datetime | None
    last_success_at: dt.datetime | None


@dataclass(frozen=True)
class WebhookEndpointWithSecret:
    """An endpoint and its signing secret, which only the answer that made it carries."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class WebhookAttempt:
    attempt: int
    status: str
    response_code: int
    response_body: str
    error: str
    duration_ms: int
    attempted_at: dt.datetime | None


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    endpoint_id: str
    merchant_id: str
    event_id: str
    event_type: str
    invoice_id: str
    status: str
    attempts: int
    response_code: int
    response_body: str
    last_error: str
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    attempt_log: tuple[WebhookAttempt, ...]


@dataclass(frozen=True)
class NotificationTemplate:
    id: str
    merchant_id: str
    event_type: str
    subject: str
    body_template: str
    recipient: str
    is_active: bool
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclass(frozen=True)
class NotificationDelivery:
    id: str
    template_id: str
    merchant_id: str
    event_id: str
    event_type: str
    invoice_id: str
    recipient: str
    subject: str
    status: str
    delivery_method: str
    attempts: int
    last_error: str
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime | None


def endpoint(row: asyncpg.Record) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        url=row["url"],
        events=tuple(row["events"]),
        status=row["status"],
        max_retries=row["max_retries"],
        retry_backoff=row["retry_backoff"],
        timeout_seconds=row["timeout_seconds"],
        allowed_ips=tuple(row["allowed_ips"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        consecutive_failures=row["consecutive_failures"],
        last_error=row["last_error"] or "",
        last_failure_at=row["last_failure_at"],
        last_success_at=row["last_success_at"],
    )


def attempt(row: asyncpg.Record) -> WebhookAttempt:
    return WebhookAttempt(
        attempt=row["attempt"],
        status=row["status"],
        response_code=row["response_code"] or 0,
        response_body=row["response_body"] or "",
        error=row["error"] or "",
        duration_ms=row["duration_ms"],
        attempted_at=row["attempted_at"],
    )


def delivery(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> WebhookDelivery:
    return WebhookDelivery(
        id=str(row["id"]),
        endpoint_id=str(row["webhook_endpoint_id"]),
        merchant_id=str(row["merchant_id"]),
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        invoice_id=str(row["invoice_id"] or ""),
        status=row["status"],
        attempts=row["attempts"],
        response_code=row["response_code"] or 0,
        response_body=row["response_body"] or "",
        last_error=row["last_error"] or "",
        # While an attempt runs, next_attempt_at is its lease, not a schedule: show it only
        # for deliveries still waiting.
        next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
        delivered_at=row["delivered_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempt_log=tuple(attempt(a) for a in attempts),
    )


def template(row: asyncpg.Record) -> NotificationTemplate:
    return NotificationTemplate(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        event_type=row["event_type"],
        subject=row["subject"],
        body_template=row["body_template"],
        recipient=row["recipient"],
        is_active=row["is_active"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def notification(row: asyncpg.Record) -> NotificationDelivery:
    return NotificationDelivery(
        id=str(row["id"]),
        template_id=str(row["template_id"]),
        merchant_id=str(row["merchant_id"]),
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        invoice_id=str(row["invoice_id"] or ""),
        recipient=row["recipient"],
        subject=row["subject"],
        status=row["status"],
        delivery_method=row["delivery_method"],
        attempts=row["attempts"],
        last_error=row["last_error"] or "",
        next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
        delivered_at=row["delivered_at"],
        created_at=row["created_at"],
    )
