"""Webhook endpoints and their deliveries, notification templates and their emails."""

from __future__ import annotations

from typing import Annotated, Any

from checkout.merchant.v1 import merchant_pb2
from pydantic import Field

from libs.common import events, limits
from services.gateway.pagination import PageQuery
from services.gateway.schemas.base import RequestModel, ResponseModel, TimestampOut, optional, timestamp_of
from services.gateway.schemas.types import WHOLE, Choice, Id, text

ALL_EVENTS = "*"
SUBSCRIBABLE = (ALL_EVENTS, *events.WEBHOOK_EVENT_TYPES)
BACKOFFS = ("exponential", "linear")
ENDPOINT_STATUSES = ("active", "disabled")
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
NOTIFICATION_STATUSES = ("pending", "sent", "failed", "skipped")
RECIPIENTS = ("customer", "merchant")
# An IPv6 CIDR block is at most 43 characters.
IP_BLOCK_MAX_CHARS = 64
EVENT_TYPE_MAX_CHARS = 100

Url = Annotated[
    str, text(limits.WEBHOOK_URL_MAX_CHARS, min_length=1, description="https URL of a public host.")
]
EventList = list[Annotated[str, Choice(SUBSCRIBABLE)]]
AllowedIps = list[Annotated[str, text(IP_BLOCK_MAX_CHARS, description="An IP address or CIDR block.")]]


class EndpointFields(RequestModel):
    max_retries: Annotated[int, Field(ge=0, le=limits.WEBHOOK_MAX_RETRIES_MAX), WHOLE] | None = None
    retry_backoff: Annotated[str, Choice(BACKOFFS)] | None = None
    timeout_seconds: Annotated[int, Field(ge=1, le=limits.WEBHOOK_TIMEOUT_SECONDS_MAX), WHOLE] | None = None
    allowed_ips: AllowedIps | None = Field(
        default=None,
        max_length=limits.WEBHOOK_ALLOWED_IPS_MAX,
        description="If set, the endpoint's host must resolve to one of these.",
    )


class EndpointCreate(EndpointFields):
    url: Url
    events: EventList = Field(min_length=1, description="`*` for every invoice event, now and later.")


class EndpointUpdate(EndpointFields):
    url: Url | None = None
    events: EventList | None = Field(default=None, min_length=1, description="Replaces the list whole.")
    status: Annotated[str, Choice(ENDPOINT_STATUSES)] | None = None


class DeliveryListQuery(PageQuery):
    status: Annotated[str, Choice(DELIVERY_STATUSES)] | None = None
    event_type: Annotated[str, text(EVENT_TYPE_MAX_CHARS)] | None = None


class TemplateCreate(RequestModel):
    event_type: Annotated[str, Choice(events.WEBHOOK_EVENT_TYPES)]
    subject: Annotated[str, text(limits.TEMPLATE_SUBJECT_MAX_CHARS, min_length=1)]
    body_template: Annotated[str, text(limits.TEMPLATE_BODY_MAX_CHARS, min_length=1)]
    recipient: Annotated[str, Choice(RECIPIENTS)] | None = Field(
        default=None, description="`customer` unless said."
    )
    is_active: bool | None = None


class TemplateUpdate(RequestModel):
    event_type: Annotated[str, Choice(events.WEBHOOK_EVENT_TYPES)] | None = None
    subject: Annotated[str, text(limits.TEMPLATE_SUBJECT_MAX_CHARS, min_length=1)] | None = None
    body_template: Annotated[str, text(limits.TEMPLATE_BODY_MAX_CHARS, min_length=1)] | None = None
    recipient: Annotated[str, Choice(RECIPIENTS)] | None = None
    is_active: bool | None = None


class NotificationListQuery(PageQuery):
    template_id: Id | None = None
    status: Annotated[str, Choice(NOTIFICATION_STATUSES)] | None = None


class WebhookEndpoint(ResponseModel):
    id: str
    merchant_id: str
    url: str
    events: list[str]
    status: str = Field(description="active, disabled (by the merchant) or failing (see last_error).")
    max_retries: int
    retry_backoff: str
    timeout_seconds: int
    allowed_ips: list[str]
    consecutive_failures: int
    last_error: str | None
    last_failure_at: TimestampOut | None
    last_success_at: TimestampOut | None
    created_at: TimestampOut | None
    updated_at: TimestampOut | None

    @classmethod
    def of(cls, e: merchant_pb2.WebhookEndpoint) -> WebhookEndpoint:
        return cls(**_endpoint_fields(e))


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str | None = Field(
        description="The signing secret, shown in this response only. `null` in an idempotent replay "
        "(`Idempotent-Replayed: true`): it cannot be shown again; rotate it to get a new one."
    )

    @classmethod
    def with_secret(cls, e: merchant_pb2.WebhookEndpoint, secret: str) -> WebhookEndpointWithSecret:
        return cls(**_endpoint_fields(e), secret=optional(secret))


def _endpoint_fields(e: merchant_pb2.WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "merchant_id": e.merchant_id,
        "url": e.url,
        "events": list(e.events),
        "status": e.status,
        "max_retries": e.max_retries,
        "retry_backoff": e.retry_backoff,
        "timeout_seconds": e.timeout_seconds,
        "allowed_ips": list(e.allowed_ips),
        "consecutive_failures": e.consecutive_failures,
        "last_error": optional(e.last_error),
        "last_failure_at": timestamp_of(e, "last_failure_at"),
        "last_success_at": timestamp_of(e, "last_success_at"),
        "created_at": timestamp_of(e, "created_at"),
        "updated_at": timestamp_of(e, "updated_at"),
    }


class WebhookAttempt(ResponseModel):
    attempt: int
    status: str
    response_code: int | None
    response_body: str | None
    error: str | None
    duration_ms: int
    attempted_at: TimestampOut | None


class WebhookDelivery(ResponseModel):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    invoice_id: str | None
    status: str = Field(json_schema_extra={"enum": list(DELIVERY_STATUSES)})
    attempts: int
    response_code: int | None
    response_body: str | None
    last_error: str | None
    next_attempt_at: TimestampOut | None
    delivered_at: TimestampOut | None
    created_at: TimestampOut | None
    updated_at: TimestampOut | None
    attempt_log: list[WebhookAttempt]

    @classmethod
    def of(cls, d: merchant_pb2.WebhookDelivery) -> WebhookDelivery:
        return cls(
            id=d.id,
            endpoint_id=d.endpoint_id,
            event_id=d.event_id,
            event_type=d.event_type,
            invoice_id=optional(d.invoice_id),
            status=d.status,
            attempts=d.attempts,
            response_code=d.response_code or None,
            response_body=optional(d.response_body),
            last_error=optional(d.last_error),
            next_attempt_at=timestamp_of(d, "next_attempt_at"),
            delivered_at=timestamp_of(d, "delivered_at"),
            created_at=timestamp_of(d, "created_at"),
            updated_at=timestamp_of(d, "updated_at"),
            attempt_log=[
                WebhookAttempt(
                    attempt=a.attempt,
                    status=a.status,
                    response_code=a.response_code or None,
                    response_body=optional(a.response_body),
                    error=optional(a.error),
                    duration_ms=a.duration_ms,
                    attempted_at=timestamp_of(a, "attempted_at"),
                )
                for a in d.attempt_log
            ],
        )


class NotificationTemplate(ResponseModel):
    id: str
    merchant_id: str
    event_type: str
    subject: str
    body_template: str
    recipient: str
    is_active: bool
    created_at: TimestampOut | None
    updated_at: TimestampOut | None

    @classmethod
    def of(cls, t: merchant_pb2.NotificationTemplate) -> NotificationTemplate:
        return cls(
            id=t.id,
            merchant_id=t.merchant_id,
            event_type=t.event_type,
            subject=t.subject,
            body_template=t.body_template,
            recipient=t.recipient,
            is_active=t.is_active,
            created_at=timestamp_of(t, "created_at"),
            updated_at=timestamp_of(t, "updated_at"),
        )


class NotificationDelivery(ResponseModel):
    id: str
    template_id: str
    event_id: str
    event_type: str
    invoice_id: str | None
    recipient: str
    subject: str
    status: str = Field(json_schema_extra={"enum": list(NOTIFICATION_STATUSES)})
    delivery_method: str
    attempts: int
    last_error: str | None
    next_attempt_at: TimestampOut | None
    delivered_at: TimestampOut | None
    created_at: TimestampOut | None

    @classmethod
    def of(cls, n: merchant_pb2.NotificationDelivery) -> NotificationDelivery:
        return cls(
            id=n.id,
            template_id=n.template_id,
            event_id=n.event_id,
            event_type=n.event_type,
            invoice_id=optional(n.invoice_id),
            recipient=n.recipient,
            subject=n.subject,
            status=n.status,
            delivery_method=n.delivery_method,
            attempts=n.attempts,
            last_error=optional(n.last_error),
            next_attempt_at=timestamp_of(n, "next_attempt_at"),
            delivered_at=timestamp_of(n, "delivered_at"),
            created_at=timestamp_of(n, "created_at"),
        )
