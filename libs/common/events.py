"""The event catalogue: every event type name and its protobuf message, defined once in protos/.

The store keeps `event_data` as the message's JSON form (field names as in the .proto), and the
relay publishes the same JSON, so a consumer decodes with `decode(event_type, data)`.
"""

from __future__ import annotations

from typing import Any

from checkout.invoice.v1 import events_pb2 as invoice_events
from checkout.merchant.v1 import events_pb2 as merchant_events
from google.protobuf import json_format
from google.protobuf.message import Message

from libs.common import protojson

EVENT_TYPES: dict[str, type[Message]] = {
    "merchant.created": merchant_events.MerchantCreated,
    "merchant.updated": merchant_events.MerchantUpdated,
    "api_key.created": merchant_events.ApiKeyCreated,
    "api_key.revoked": merchant_events.ApiKeyRevoked,
    "webhook_endpoint.created": merchant_events.WebhookEndpointCreated,
    "webhook_endpoint.updated": merchant_events.WebhookEndpointUpdated,
    "webhook_endpoint.secret_rotated": merchant_events.WebhookSecretRotated,
    "webhook_endpoint.deleted": merchant_events.WebhookEndpointDeleted,
    "notification_template.created": merchant_events.NotificationTemplateCreated,
    "notification_template.updated": merchant_events.NotificationTemplateUpdated,
    "notification_template.deleted": merchant_events.NotificationTemplateDeleted,
    "invoice.created": invoice_events.InvoiceCreated,
    "invoice.payment_detected": invoice_events.PaymentDetected,
    "invoice.payment_updated": invoice_events.PaymentUpdated,
    "invoice.payment_confirmed": invoice_events.PaymentConfirmed,
    "invoice.payment_reorged": invoice_events.PaymentReorged,
    "invoice.partially_paid": invoice_events.InvoicePartiallyPaid,
    "invoice.paid": invoice_events.InvoicePaid,
    "invoice.confirmed": invoice_events.InvoiceConfirmed,
    "invoice.expired": invoice_events.InvoiceExpired,
    "invoice.cancelled": invoice_events.InvoiceCancelled,
    "invoice.invalid": invoice_events.InvoiceInvalid,
    "invoice.reopened": invoice_events.InvoiceReopened,
    # Refunds are part of the Invoice aggregate (its stream), named as merchants look for them.
    "refund.created": invoice_events.RefundCreated,
    "refund.claimed": invoice_events.RefundClaimed,
    "refund.completed": invoice_events.RefundCompleted,
    "refund.cancelled": invoice_events.RefundCancelled,
}
# The prefixes of the Invoice aggregate's event types: what reaches merchants as webhooks.
INVOICE_EVENT_PREFIXES = ("invoice.", "refund.")
# What a merchant can subscribe a webhook endpoint or a notification template to.
WEBHOOK_EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(t for t in EVENT_TYPES if t.startswith(INVOICE_EVENT_PREFIXES))
)
# The invoice status events share one shape (see events.proto), so consumers can treat them alike.
STATUS_EVENTS: dict[str, str] = {
    "invoice.partially_paid": "partial",
    "invoice.paid": "paid",
    "invoice.confirmed": "confirmed",
    "invoice.expired": "expired",
    "invoice.cancelled": "cancelled",
    "invoice.invalid": "invalid",
    "invoice.reopened": "pending",
}
# Their messages, for isinstance checks: one code path reads them all.
StatusMessage = (
    invoice_events.InvoicePartiallyPaid
    | invoice_events.InvoicePaid
    | invoice_events.InvoiceConfirmed
    | invoice_events.InvoiceExpired
    | invoice_events.InvoiceCancelled
    | invoice_events.InvoiceInvalid
    | invoice_events.InvoiceReopened
)
STATUS_MESSAGES = (
    invoice_events.InvoicePartiallyPaid,
    invoice_events.InvoicePaid,
    invoice_events.InvoiceConfirmed,
    invoice_events.InvoiceExpired,
    invoice_events.InvoiceCancelled,
    invoice_events.InvoiceInvalid,
    invoice_events.InvoiceReopened,
)
# The statuses at which an invoice counts as paid.
PAID_STATUSES = frozenset({"paid", "confirmed"})
_BY_MESSAGE = {cls.DESCRIPTOR.full_name: name for name, cls in EVENT_TYPES.items()}


def type_of(message: Message) -> str:
    try:
        return _BY_MESSAGE[message.DESCRIPTOR.full_name]
    except KeyError:
        raise KeyError(f"{message.DESCRIPTOR.full_name} is not in the event catalogue") from None


def encode(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def decode(event_type: str, data: dict[str, Any]) -> Message:
    return protojson.parse(data, EVENT_TYPES[event_type]())
