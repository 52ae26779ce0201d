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
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.gateway import render
from services.gateway.auth import authenticate, require_merchant
from services.gateway.idempotency import call_context
from services.gateway.state import state_of
from services.gateway.validation import Fields, Problems, Query, json_body, path_id
from services.gateway.wire import timestamp_field

BACKOFFS = ("exponential", "linear")
ENDPOINT_STATUSES = ("active", "disabled")
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
NOTIFICATION_STATUSES = ("pending", "sent", "failed", "skipped")
RECIPIENTS = ("customer", "merchant")
MAX_RETRIES = 20
MAX_TIMEOUT_SECONDS = 30
ENDPOINT_FIELDS = ("url", "events", "max_retries", "retry_backoff", "timeout_seconds", "allowed_ips")
TEMPLATE_FIELDS = ("event_type", "subject", "body_template", "recipient", "is_active")

JsonObject = dict[str, object]
# (merchant id, resource id) -> the gRPC request about that resource.
Build = Callable[[str, str], Message]


# -- rendering ---------------------------------------------------------------------------------
def endpoint_json(e: merchant_pb2.WebhookEndpoint, *, secret: str | None = None) -> JsonObject:
    body: JsonObject = {
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
        "last_error": e.last_error or None,
        "last_failure_at": timestamp_field(e, "last_failure_at"),
        "last_success_at": timestamp_field(e, "last_success_at"),
        "created_at": timestamp_field(e, "created_at"),
        "updated_at": timestamp_field(e, "updated_at"),
    }
    if secret is not None:
        body["secret"] = secret
    return body


def delivery_json(d: merchant_pb2.WebhookDelivery) -> JsonObject:
    return {
        "id": d.id,
        "endpoint_id": d.endpoint_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "invoice_id": d.invoice_id or None,
        "status": d.status,
        "attempts": d.attempts,
        "response_code": d.response_code or None,
        "response_body": d.response_body or None,
        "last_error": d.last_error or None,
        "next_attempt_at": timestamp_field(d, "next_attempt_at"),
        "delivered_at": timestamp_field(d, "delivered_at"),
        "created_at": timestamp_field(d, "created_at"),
        "updated_at": timestamp_field(d, "updated_at"),
        "attempt_log": [
            {
                "attempt": a.attempt,
                "status": a.status,
                "response_code": a.response_code or None,
                "response_body": a.response_body or None,
                "error": a.error or None,
                "duration_ms": a.duration_ms,
                "attempted_at": timestamp_field(a, "attempted_at"),
            }
            for a in d.attempt_log
        ],
    }


def template_json(t: merchant_pb2.NotificationTemplate) -> JsonObject:
    return {
        "id": t.id,
        "merchant_id": t.merchant_id,
        "event_type": t.event_type,
        "subject": t.subject,
        "body_template": t.body_template,
        "recipient": t.recipient,
        "is_active": t.is_active,
        "created_at": timestamp_field(t, "created_at"),
        "updated_at": timestamp_field(t, "updated_at"),
    }


def notification_json(n: merchant_pb2.NotificationDelivery) -> JsonObject:
    return {
        "id": n.id,
        "template_id": n.template_id,
        "event_id": n.event_id,
        "event_type": n.event_type,
        "invoice_id": n.invoice_id or None,
        "recipient": n.recipient,
        "subject": n.subject,
        "status": n.status,
        "delivery_method": n.delivery_method,
        "attempts": n.attempts,
        "last_error": n.last_error or None,
        "next_attempt_at": timestamp_field(n, "next_attempt_at"),
        "delivered_at": timestamp_field(n, "delivered_at"),
        "created_at": timestamp_field(n, "created_at"),
    }


# -- request parsing ---------------------------------------------------------------------------
def _boolean(fields: Fields, body: JsonObject, name: str, problems: Problems) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        problems.add(fields.path(name), "must be true or false")
        return None
    return value


def _endpoint_fields(body: JsonObject, *, creating: bool) -> tuple[Fields, Problems, JsonObject]:
    problems = Problems()
    allowed = ENDPOINT_FIELDS if creating else (*ENDPOINT_FIELDS, "status")
    fields = Fields(body, problems, allowed=allowed)
    values: JsonObject = {
        "url": fields.string("url", required=creating, max_length=2048),
        "events": fields.string_list("events"),
        "max_retries": fields.integer("max_retries", minimum=0, maximum=MAX_RETRIES),
        "retry_backoff": fields.choice("retry_backoff", BACKOFFS),
        "timeout_seconds": fields.integer("timeout_seconds", minimum=1, maximum=MAX_TIMEOUT_SECONDS),
        "allowed_ips": fields.string_list("allowed_ips"),
    }
    if creating and body.get("events") is None:
        problems.add("events", "is required")
    elif values["events"] == [] and (creating or "events" in body):
        problems.add("events", "must name at least one event type")
    if not creating:
        values["status"] = fields.choice("status", ENDPOINT_STATUSES)
    return fields, problems, values


def create_endpoint_request(body: JsonObject) -> merchant_pb2.CreateWebhookEndpointRequest:
    _, problems, v = _endpoint_fields(body, creating=True)
    problems.raise_if_any()
    message = merchant_pb2.CreateWebhookEndpointRequest(
        url=str(v["url"]), events=_strings(v["events"]), allowed_ips=_strings(v["allowed_ips"])
    )
    if isinstance(v["max_retries"], int):
        message.max_retries = v["max_retries"]
    if isinstance(v["retry_backoff"], str):
        message.retry_backoff = v["retry_backoff"]
    if isinstance(v["timeout_seconds"], int):
        message.timeout_seconds = v["timeout_seconds"]
    return message


def update_endpoint_request(body: JsonObject) -> merchant_pb2.UpdateWebhookEndpointRequest:
    _, problems, v = _endpoint_fields(body, creating=False)
    problems.raise_if_any()
    message = merchant_pb2.UpdateWebhookEndpointRequest()
    if isinstance(v["url"], str):
        message.url = v["url"]
    if v["events"] is not None:
        message.events.extend(_strings(v["events"]))
        message.replace_events = True
    if isinstance(v["max_retries"], int):
        message.max_retries = v["max_retries"]
    if isinstance(v["retry_backoff"], str):
        message.retry_backoff = v["retry_backoff"]
    if isinstance(v["timeout_seconds"], int):
        message.timeout_seconds = v["timeout_seconds"]
    if v["allowed_ips"] is not None:
        message.allowed_ips.extend(_strings(v["allowed_ips"]))
        message.replace_allowed_ips = True
    if isinstance(v["status"], str):
        message.status = v["status"]
    return message


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _template_values(body: JsonObject, *, creating: bool) -> tuple[Problems, JsonObject]:
    problems = Problems()
    fields = Fields(body, problems, allowed=TEMPLATE_FIELDS)
    values: JsonObject = {
        "event_type": fields.string("event_type", required=creating, max_length=100),
        "subject": fields.string("subject", required=creating, max_length=200),
        "body_template": fields.string("body_template", required=creating, max_length=20_000),
        "recipient": fields.choice("recipient", RECIPIENTS),
        "is_active": _boolean(fields, body, "is_active", problems),
    }
    return problems, values


# -- endpoints ---------------------------------------------------------------------------------
async def _on_own(request: Request, permission: str, kind: str, rpc: str, build: Build) -> Any:
    """Calls the merchant service's `rpc` about one of the caller's own resources, named by the
    path's id (another merchant's is the service's NOT_FOUND, so a 404)."""
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, permission)
    resource_id = path_id(request, kind)
    backends = state_of(request).backends
    method = getattr(backends.merchants(backends.shard_of(merchant_id)), rpc)
    return await backends.call(method, build(str(merchant_id), str(resource_id)), caller.context(request))


async def create_endpoint(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "webhooks:write")
    body = await json_body(request)
    message = create_endpoint_request(body)
    message.merchant_id = str(merchant_id)
    backends = state_of(request).backends
    created = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).CreateWebhookEndpoint,
        message,
        call_context(request, caller.actor, body),
    )
    return JSONResponse(endpoint_json(created.endpoint, secret=created.secret), status_code=201)


async def list_endpoints(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "webhooks:read")
    backends = state_of(request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).ListWebhookEndpoints,
        merchant_pb2.ListWebhookEndpointsRequest(merchant_id=str(merchant_id)),
        caller.context(request),
    )
    # A merchant has a handful of endpoints: one page holds them all.
    return JSONResponse(render.page([endpoint_json(e) for e in listed.endpoints], ""))


async def get_endpoint(request: Request) -> JSONResponse:
    found = await _on_own(
        request,
        "webhooks:read",
        "webhook endpoint",
        "GetWebhookEndpoint",
        lambda m, i: merchant_pb2.GetWebhookEndpointRequest(merchant_id=m, endpoint_id=i),
    )
    return JSONResponse(endpoint_json(found))


async def update_endpoint(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "webhooks:write")
    endpoint_id = path_id(request, "webhook endpoint")
    message = update_endpoint_request(await json_body(request))
    message.merchant_id, message.endpoint_id = str(merchant_id), str(endpoint_id)
    backends = state_of(request).backends
    updated = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).UpdateWebhookEndpoint,
        message,
        caller.context(request),
    )
    return JSONResponse(endpoint_json(updated))


async def delete_endpoint(request: Request) -> JSONResponse:
    deleted = await _on_own(
        request,
        "webhooks:write",
        "webhook endpoint",
        "DeleteWebhookEndpoint",
        lambda m, i: merchant_pb2.DeleteWebhookEndpointRequest(merchant_id=m, endpoint_id=i),
    )
    return JSONResponse(endpoint_json(deleted))


async def rotate_secret(request: Request) -> JSONResponse:
    rotated = await _on_own(
        request,
        "webhooks:write",
        "webhook endpoint",
        "RotateWebhookSecret",
        lambda m, i: merchant_pb2.RotateWebhookSecretRequest(merchant_id=m, endpoint_id=i),
    )
    return JSONResponse(endpoint_json(rotated.endpoint, secret=rotated.secret))


# -- deliveries --------------------------------------------------------------------------------
async def list_deliveries(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "webhooks:read")
    endpoint_id = path_id(request, "webhook endpoint")
    problems = Problems()
    query = Query(request.query_params, problems)
    status = query.choice("status", DELIVERY_STATUSES)
    event_type = query.string("event_type", max_length=100)
    limit, cursor = query.limit(), query.cursor()
    problems.raise_if_any()
    backends = state_of(request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).ListWebhookDeliveries,
        merchant_pb2.ListWebhookDeliveriesRequest(
            merchant_id=str(merchant_id),
            endpoint_id=str(endpoint_id),
            status=status or "",
            event_type=event_type or "",
            limit=limit,
            cursor=cursor,
        ),
        caller.context(request),
    )
    return JSONResponse(render.page([delivery_json(d) for d in listed.deliveries], listed.next_cursor))


async def get_delivery(request: Request) -> JSONResponse:
    found = await _on_own(
        request,
        "webhooks:read",
        "webhook delivery",
        "GetWebhookDelivery",
        lambda m, i: merchant_pb2.GetWebhookDeliveryRequest(merchant_id=m, delivery_id=i),
    )
    return JSONResponse(delivery_json(found))


async def redeliver(request: Request) -> JSONResponse:
    scheduled = await _on_own(
        request,
        "webhooks:write",
        "webhook delivery",
        "RedeliverWebhook",
        lambda m, i: merchant_pb2.RedeliverWebhookRequest(merchant_id=m, delivery_id=i),
    )
    # Accepted: the attempt runs in the worker at once; its result joins `attempt_log`.
    return JSONResponse(delivery_json(scheduled), status_code=202)


# -- notification templates --------------------------------------------------------------------
async def create_template(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "webhooks:write")
    body = await json_body(request)
    problems, v = _template_values(body, creating=True)
    problems.raise_if_any()
    message = merchant_pb2.CreateNotificationTemplateRequest(
        merchant_id=str(merchant_id),
        event_type=str(v["event_type"]),
        subject=str(v["subject"]),
        body_template=str(v["body_template"]),
        recipient=str(v["recipient"] or ""),
    )
    if isinstance(v["is_active"], bool):
        message.is_active = v["is_active"]
    backends = state_of(request).backends
    created = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).CreateNotificationTemplate,
        message,
        call_context(request, caller.actor, body),
    )
    return JSONResponse(template_json(created), status_code=201)


async def list_templates(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "webhooks:read")
    backends = state_of(request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).ListNotificationTemplates,
        merchant_pb2.ListNotificationTemplatesRequest(merchant_id=str(merchant_id)),
        caller.context(request),
    )
    return JSONResponse(render.page([template_json(t) for t in listed.templates], ""))


async def get_template(request: Request) -> JSONResponse:
    found = await _on_own(
        request,
        "webhooks:read",
        "notification template",
        "GetNotificationTemplate",
        lambda m, i: merchant_pb2.GetNotificationTemplateRequest(merchant_id=m, template_id=i),
    )
    return JSONResponse(template_json(found))


async def update_template(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "webhooks:write")
    template_id = path_id(request, "notification template")
    problems, v = _template_values(await json_body(request), creating=False)
    problems.raise_if_any()
    message = merchant_pb2.UpdateNotificationTemplateRequest(
        merchant_id=str(merchant_id), template_id=str(template_id)
    )
    for name in ("event_type", "subject", "body_template", "recipient"):
        if isinstance(v[name], str):
            setattr(message, name, v[name])
    if isinstance(v["is_active"], bool):
        message.is_active = v["is_active"]
    backends = state_of(request).backends
    updated = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).UpdateNotificationTemplate,
        message,
        caller.context(request),
    )
    return JSONResponse(template_json(updated))


async def delete_template(request: Request) -> JSONResponse:
    deleted = await _on_own(
        request,
        "webhooks:write",
        "notification template",
        "DeleteNotificationTemplate",
        lambda m, i: merchant_pb2.DeleteNotificationTemplateRequest(merchant_id=m, template_id=i),
    )
    return JSONResponse(template_json(deleted))


async def list_notifications(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "webhooks:read")
    problems = Problems()
    query = Query(request.query_params, problems)
    template_id = query.uuid("template_id")
    status = query.choice("status", NOTIFICATION_STATUSES)
    limit, cursor = query.limit(), query.cursor()
    problems.raise_if_any()
    backends = state_of(request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).ListNotificationDeliveries,
        merchant_pb2.ListNotificationDeliveriesRequest(
            merchant_id=str(merchant_id),
            template_id=str(template_id) if template_id else "",
            status=status or "",
            limit=limit,
            cursor=cursor,
        ),
        caller.context(request),
    )
    return JSONResponse(render.page([notification_json(n) for n in listed.deliveries], listed.next_cursor))


routes = [
    Route("/v1/webhook-endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/webhook-endpoints", list_endpoints, methods=["GET"]),
    Route("/v1/webhook-endpoints/{id}", get_endpoint, methods=["GET"]),
    Route("/v1/webhook-endpoints/{id}", update_endpoint, methods=["PATCH"]),
    Route("/v1/webhook-endpoints/{id}", delete_endpoint, methods=["DELETE"]),
    Route("/v1/webhook-endpoints/{id}/rotate-secret", rotate_secret, methods=["POST"]),
    Route("/v1/webhook-endpoints/{id}/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/webhook-deliveries/{id}", get_delivery, methods=["GET"]),
    Route("/v1/webhook-deliveries/{id}/redeliver", redeliver, methods=["POST"]),
    Route("/v1/notification-templates", create_template, methods=["POST"]),
    Route("/v1/notification-templates", list_templates, methods=["GET"]),
    Route("/v1/notification-templates/{id}", get_template, methods=["GET"]),
    Route("/v1/notification-templates/{id}", update_template, methods=["PATCH"]),
    Route("/v1/notification-templates/{id}", delete_template, methods=["DELETE"]),
    Route("/v1/notification-deliveries", list_notifications, methods=["GET"]),
]
