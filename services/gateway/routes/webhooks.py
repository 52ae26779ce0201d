"""/v1/webhook-endpoints, /v1/webhook-deliveries and /v1/notification-templates (merchant key).

Reading needs `webhooks:read`, changing `webhooks:write` (notification templates included: they
are the email side of the same "tell me what happened" feature). The signing secret appears
once, in the 201 of the create (and the 200 of a rotation). Another merchant's endpoint,
delivery or template is 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from checkout.merchant.v1 import merchant_pb2
from google.protobuf.message import Message

from services.gateway.operations import Args, Operation, Reply, Rule
from services.gateway.pagination import Listing, Page
from services.gateway.schemas.webhooks import (
    DeliveryListQuery,
    EndpointCreate,
    EndpointUpdate,
    NotificationDelivery,
    NotificationListQuery,
    NotificationTemplate,
    TemplateCreate,
    TemplateUpdate,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
)
from services.gateway.state import state_of

TAG = "Webhooks"
TEMPLATES = "Notifications"
# (merchant id, resource id) -> the gRPC request about that resource.
Build = Callable[[str, str], Message]
CURSOR_RULE = Rule(r"cursor", r".+", "cursor: must be a `next_cursor` this API returned.")
ENDPOINT_RULES = (
    Rule(r"url", r".+", "url: https (or http), a public host whose addresses are allowed (no private ones)."),
    Rule(
        r"allowed_ips\[\d+\]",
        r"must be an IP address or CIDR block",
        "allowed_ips[]: IP addresses or CIDR blocks.",
    ),
)
TEMPLATE_RULES = (
    Rule(
        r"subject|body_template",
        r".+",
        "subject, body_template: not blank; body_template uses only known `${field}` placeholders.",
    ),
)


async def _on_own(args: Args[Any, Any], rpc: str, build: Build, name: str = "id") -> Any:
    """Calls the merchant service's `rpc` about one of the caller's own resources, named by the
    path's id (another merchant's is the service's NOT_FOUND, so a 404)."""
    backends = state_of(args.request).backends
    method = getattr(backends.merchants(backends.shard_of(args.merchant_id)), rpc)
    return await backends.call(method, build(str(args.merchant_id), str(args.ids[name])), args.context())


def _endpoint_settings(message: Any, body: EndpointCreate | EndpointUpdate) -> None:
    if body.max_retries is not None:
        message.max_retries = body.max_retries
    if body.retry_backoff is not None:
        message.retry_backoff = body.retry_backoff
    if body.timeout_seconds is not None:
        message.timeout_seconds = body.timeout_seconds


async def create_endpoint(args: Args[EndpointCreate, None]) -> Reply:
    body = args.body
    message = merchant_pb2.CreateWebhookEndpointRequest(
        merchant_id=str(args.merchant_id),
        url=body.url,
        events=body.events,
        allowed_ips=body.allowed_ips or [],
    )
    _endpoint_settings(message, body)
    backends = state_of(args.request).backends
    created, replayed = await backends.command(
        backends.merchants(backends.shard_of(args.merchant_id)).CreateWebhookEndpoint,
        message,
        args.command_context(),
    )
    return Reply(WebhookEndpointWithSecret.with_secret(created.endpoint, created.secret), replayed=replayed)


async def list_endpoints(args: Args[None, None]) -> Listing[WebhookEndpoint]:
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(args.merchant_id)).ListWebhookEndpoints,
        merchant_pb2.ListWebhookEndpointsRequest(merchant_id=str(args.merchant_id)),
        args.context(),
    )
    # A merchant has a handful of endpoints: one page holds them all.
    return Listing[WebhookEndpoint].of([WebhookEndpoint.of(e) for e in listed.endpoints])


async def get_endpoint(args: Args[None, None]) -> WebhookEndpoint:
    found = await _on_own(
        args,
        "GetWebhookEndpoint",
        lambda m, i: merchant_pb2.GetWebhookEndpointRequest(merchant_id=m, endpoint_id=i),
    )
    return WebhookEndpoint.of(found)


async def update_endpoint(args: Args[EndpointUpdate, None]) -> WebhookEndpoint:
    body = args.body
    message = merchant_pb2.UpdateWebhookEndpointRequest(
        merchant_id=str(args.merchant_id), endpoint_id=str(args.ids["id"])
    )
    if body.url is not None:
        message.url = body.url
    if body.events is not None:
        message.events.extend(body.events)
        message.replace_events = True
    _endpoint_settings(message, body)
    if body.allowed_ips is not None:
        message.allowed_ips.extend(body.allowed_ips)
        message.replace_allowed_ips = True
    if body.status is not None:
        message.status = body.status
    backends = state_of(args.request).backends
    updated = await backends.call(
        backends.merchants(backends.shard_of(args.merchant_id)).UpdateWebhookEndpoint, message, args.context()
    )
    return WebhookEndpoint.of(updated)


async def delete_endpoint(args: Args[None, None]) -> WebhookEndpoint:
    deleted = await _on_own(
        args,
        "DeleteWebhookEndpoint",
        lambda m, i: merchant_pb2.DeleteWebhookEndpointRequest(merchant_id=m, endpoint_id=i),
    )
    return WebhookEndpoint.of(deleted)


async def rotate_secret(args: Args[None, None]) -> WebhookEndpointWithSecret:
    rotated = await _on_own(
        args,
        "RotateWebhookSecret",
        lambda m, i: merchant_pb2.RotateWebhookSecretRequest(merchant_id=m, endpoint_id=i),
    )
    return WebhookEndpointWithSecret.with_secret(rotated.endpoint, rotated.secret)


async def list_deliveries(args: Args[None, DeliveryListQuery]) -> Page[WebhookDelivery]:
    q = args.query
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(args.merchant_id)).ListWebhookDeliveries,
        merchant_pb2.ListWebhookDeliveriesRequest(
            merchant_id=str(args.merchant_id),
            endpoint_id=str(args.ids["id"]),
            status=q.status or "",
            event_type=q.event_type or "",
            limit=q.limit,
            cursor=q.cursor_or_empty,
        ),
        args.context(),
    )
    return Page[WebhookDelivery].of([WebhookDelivery.of(d) for d in listed.deliveries], listed.next_cursor)


async def get_delivery(args: Args[None, None]) -> WebhookDelivery:
    found = await _on_own(
        args,
        "GetWebhookDelivery",
        lambda m, i: merchant_pb2.GetWebhookDeliveryRequest(merchant_id=m, delivery_id=i),
    )
    return WebhookDelivery.of(found)


async def redeliver(args: Args[None, None]) -> WebhookDelivery:
    scheduled = await _on_own(
        args,
        "RedeliverWebhook",
        lambda m, i: merchant_pb2.RedeliverWebhookRequest(merchant_id=m, delivery_id=i),
    )
    # Accepted: the attempt runs in the worker at once; its result joins `attempt_log`.
    return WebhookDelivery.of(scheduled)


async def create_template(args: Args[TemplateCreate, None]) -> Reply:
    body = args.body
    message = merchant_pb2.CreateNotificationTemplateRequest(
        merchant_id=str(args.merchant_id),
        event_type=body.event_type,
        subject=body.subject,
        body_template=body.body_template,
        recipient=body.recipient or "",
    )
    if body.is_active is not None:
        message.is_active = body.is_active
    backends = state_of(args.request).backends
    created, replayed = await backends.command(
        backends.merchants(backends.shard_of(args.merchant_id)).CreateNotificationTemplate,
        message,
        args.command_context(),
    )
    return Reply(NotificationTemplate.of(created), replayed=replayed)


async def list_templates(args: Args[None, None]) -> Listing[NotificationTemplate]:
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(args.merchant_id)).ListNotificationTemplates,
        merchant_pb2.ListNotificationTemplatesRequest(merchant_id=str(args.merchant_id)),
        args.context(),
    )
    return Listing[NotificationTemplate].of([NotificationTemplate.of(t) for t in listed.templates])


async def get_template(args: Args[None, None]) -> NotificationTemplate:
    found = await _on_own(
        args,
        "GetNotificationTemplate",
        lambda m, i: merchant_pb2.GetNotificationTemplateRequest(merchant_id=m, template_id=i),
    )
    return NotificationTemplate.of(found)


async def update_template(args: Args[TemplateUpdate, None]) -> NotificationTemplate:
    body = args.body
    message = merchant_pb2.UpdateNotificationTemplateRequest(
        merchant_id=str(args.merchant_id), template_id=str(args.ids["id"])
    )
    for name in ("event_type", "subject", "body_template", "recipient"):
        value = getattr(body, name)
        if value is not None:
            setattr(message, name, value)
    if body.is_active is not None:
        message.is_active = body.is_active
    backends = state_of(args.request).backends
    updated = await backends.call(
        backends.merchants(backends.shard_of(args.merchant_id)).UpdateNotificationTemplate,
        message,
        args.context(),
    )
    return NotificationTemplate.of(updated)


async def delete_template(args: Args[None, None]) -> NotificationTemplate:
    deleted = await _on_own(
        args,
        "DeleteNotificationTemplate",
        lambda m, i: merchant_pb2.DeleteNotificationTemplateRequest(merchant_id=m, template_id=i),
    )
    return NotificationTemplate.of(deleted)


async def list_notifications(args: Args[None, NotificationListQuery]) -> Page[NotificationDelivery]:
    q = args.query
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(args.merchant_id)).ListNotificationDeliveries,
        merchant_pb2.ListNotificationDeliveriesRequest(
            merchant_id=str(args.merchant_id),
            template_id=q.template_id or "",
            status=q.status or "",
            limit=q.limit,
            cursor=q.cursor_or_empty,
        ),
        args.context(),
    )
    return Page[NotificationDelivery].of(
        [NotificationDelivery.of(n) for n in listed.deliveries], listed.next_cursor
    )


READ, WRITE = "webhooks:read", "webhooks:write"
ENDPOINT_EXAMPLE = {
    "url": "https://shop.example/hooks/checkout",
    "events": ["invoice.paid", "invoice.confirmed"],
    "max_retries": 8,
    "retry_backoff": "exponential",
    "timeout_seconds": 10,
}
TEMPLATE_EXAMPLE = {
    "event_type": "invoice.paid",
    "subject": "Thank you for your payment",
    "body_template": "We received ${amount_paid} ${crypto_currency} for ${title}.",
    "recipient": "customer",
}
operations = [
    Operation(
        "POST", "/v1/webhook-endpoints", create_endpoint, "Register a webhook endpoint", TAG, "merchant",
        response=WebhookEndpointWithSecret, status=201, permission=WRITE, body=EndpointCreate,
        rules=ENDPOINT_RULES, idempotent=True, example=ENDPOINT_EXAMPLE,
        description="`secret` (the signing secret) is shown in this response only; an idempotent replay "
        "has `secret: null`. Deliveries: see this document's `webhooks`.",
    ),
    Operation(
        "GET", "/v1/webhook-endpoints", list_endpoints, "List webhook endpoints", TAG, "merchant",
        response=Listing[WebhookEndpoint], permission=READ,
    ),
    Operation(
        "GET", "/v1/webhook-endpoints/{id}", get_endpoint, "Read a webhook endpoint", TAG, "merchant",
        response=WebhookEndpoint, permission=READ, errors=(404,),
    ),
    Operation(
        "PATCH", "/v1/webhook-endpoints/{id}", update_endpoint, "Change a webhook endpoint", TAG, "merchant",
        response=WebhookEndpoint, permission=WRITE, body=EndpointUpdate, errors=(404,), rules=ENDPOINT_RULES,
        example={"status": "disabled"},
    ),
    Operation(
        "DELETE", "/v1/webhook-endpoints/{id}", delete_endpoint, "Delete a webhook endpoint", TAG, "merchant",
        response=WebhookEndpoint, permission=WRITE, errors=(404,),
    ),
    Operation(
        "POST", "/v1/webhook-endpoints/{id}/rotate-secret", rotate_secret, "Rotate the signing secret", TAG,
        "merchant", response=WebhookEndpointWithSecret, permission=WRITE, errors=(404,),
        description="The previous secret keeps signing (as a second `v1`) for 24 hours.",
    ),
    Operation(
        "GET", "/v1/webhook-endpoints/{id}/deliveries", list_deliveries, "List an endpoint's deliveries", TAG,
        "merchant", response=Page[WebhookDelivery], permission=READ, query=DeliveryListQuery, errors=(404,),
        rules=(CURSOR_RULE,),
    ),
    Operation(
        "GET", "/v1/webhook-deliveries/{id}", get_delivery, "Read a delivery and its attempts", TAG, "merchant",
        response=WebhookDelivery, permission=READ, errors=(404,),
    ),
    Operation(
        "POST", "/v1/webhook-deliveries/{id}/redeliver", redeliver, "Deliver again, now", TAG, "merchant",
        response=WebhookDelivery, status=202, permission=WRITE, errors=(404, 409),
    ),
    Operation(
        "POST", "/v1/notification-templates", create_template, "Create an email template", TEMPLATES,
        "merchant", response=NotificationTemplate, status=201, permission=WRITE, body=TemplateCreate,
        rules=TEMPLATE_RULES, idempotent=True, example=TEMPLATE_EXAMPLE,
    ),
    Operation(
        "GET", "/v1/notification-templates", list_templates, "List email templates", TEMPLATES, "merchant",
        response=Listing[NotificationTemplate], permission=READ,
    ),
    Operation(
        "GET", "/v1/notification-templates/{id}", get_template, "Read an email template", TEMPLATES, "merchant",
        response=NotificationTemplate, permission=READ, errors=(404,),
    ),
    Operation(
        "PATCH", "/v1/notification-templates/{id}", update_template, "Change an email template", TEMPLATES,
        "merchant", response=NotificationTemplate, permission=WRITE, body=TemplateUpdate, errors=(404,),
        rules=TEMPLATE_RULES, example={"is_active": False},
    ),
    Operation(
        "DELETE", "/v1/notification-templates/{id}", delete_template, "Delete an email template", TEMPLATES,
        "merchant", response=NotificationTemplate, permission=WRITE, errors=(404,),
    ),
    Operation(
        "GET", "/v1/notification-deliveries", list_notifications, "List sent (and due) emails", TEMPLATES,
        "merchant", response=Page[NotificationDelivery], permission=READ, query=NotificationListQuery,
        rules=(CURSOR_RULE,),
    ),
]  # fmt: skip
