"""Webhook and notification use cases: load, decide, append (with inline read models), return
API messages. Every request names its merchant; anything of another merchant is NOT_FOUND."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from checkout.merchant.v1 import merchant_pb2 as pb

from libs.common import context, ids
from libs.common.db import Connection
from libs.common.errors import FailedPrecondition, InvalidArgument, NotFound
from libs.common.eventstore import Commands, Repository, StoredEvent, utcnow
from libs.common.limits import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from libs.common.protoconv import timestamp
from libs.common.service import Runtime
from services.merchant import repository as merchants
from services.merchant.webhooks import projections, repository, ssrf
from services.merchant.webhooks.delivery import Dispatcher
from services.merchant.webhooks.domain import NotificationTemplate, WebhookEndpoint

DELIVERY_STATUSES = ("pending", "succeeded", "failed")
NOTIFICATION_STATUSES = ("pending", "sent", "failed", "skipped")


def endpoint_message(row: asyncpg.Record) -> pb.WebhookEndpoint:
    return pb.WebhookEndpoint(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        url=row["url"],
        events=row["events"],
        status=row["status"],
        max_retries=row["max_retries"],
        retry_backoff=row["retry_backoff"],
        timeout_seconds=row["timeout_seconds"],
        allowed_ips=row["allowed_ips"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        consecutive_failures=row["consecutive_failures"],
        last_error=row["last_error"] or "",
        last_failure_at=timestamp(row["last_failure_at"]),
        last_success_at=timestamp(row["last_success_at"]),
    )


def attempt_message(row: asyncpg.Record) -> pb.WebhookAttempt:
    return pb.WebhookAttempt(
        attempt=row["attempt"],
        status=row["status"],
        response_code=row["response_code"] or 0,
        response_body=row["response_body"] or "",
        error=row["error"] or "",
        duration_ms=row["duration_ms"],
        attempted_at=timestamp(row["attempted_at"]),
    )


def delivery_message(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
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
        next_attempt_at=timestamp(row["next_attempt_at"] if row["status"] == "pending" else None),
        delivered_at=timestamp(row["delivered_at"]),
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        attempt_log=[attempt_message(a) for a in attempts],
    )


def template_message(row: asyncpg.Record) -> pb.NotificationTemplate:
    return pb.NotificationTemplate(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        event_type=row["event_type"],
        subject=row["subject"],
        body_template=row["body_template"],
        recipient=row["recipient"],
        is_active=row["is_active"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    )


def notification_message(row: asyncpg.Record) -> pb.NotificationDelivery:
    return pb.NotificationDelivery(
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
        next_attempt_at=timestamp(row["next_attempt_at"] if row["status"] == "pending" else None),
        delivered_at=timestamp(row["delivered_at"]),
        created_at=timestamp(row["created_at"]),
    )


def _page(limit: int, cursor: str) -> tuple[int, uuid.UUID | None]:
    size = limit or PAGE_LIMIT_DEFAULT
    if not 1 <= size <= PAGE_LIMIT_MAX:
        raise InvalidArgument.field("limit", f"must be between 1 and {PAGE_LIMIT_MAX}")
    before = ids.parse_id(cursor) if cursor else None
    if cursor and before is None:
        raise InvalidArgument.field("cursor", "is not a cursor this service issued")
    return size, before


def _choice(value: str, field: str, choices: tuple[str, ...]) -> str | None:
    if not value:
        return None
    if value not in choices:
        raise InvalidArgument.field(field, f"must be one of {', '.join(choices)}")
    return value


class WebhookApp:
    def __init__(self, runtime: Runtime, dispatcher: Dispatcher) -> None:
        self.rt = runtime
        self.dispatcher = dispatcher
        self.vault = self.dispatcher.vault  # seals new secrets; only the worker opens them
        every = runtime.config.snapshot_every
        self.endpoints = Repository(runtime.store, WebhookEndpoint, every)
        self.templates = Repository(runtime.store, NotificationTemplate, every)
        self.failing_after = runtime.config.webhook_failing_after

    async def _save(
        self, conn: Connection, aggregate: WebhookEndpoint | NotificationTemplate
    ) -> list[StoredEvent]:
        repo: Any = self.endpoints if isinstance(aggregate, WebhookEndpoint) else self.templates
        stored: list[StoredEvent] = await repo.save(conn, aggregate)
        for event in stored:
            await projections.apply(conn, event)
        return stored

    def _scope(self, command: str) -> str:
        return f"{context.current().actor}:{command}"

    def _merchant(self, raw: str) -> tuple[uuid.UUID, asyncpg.Pool]:
        merchant_id = ids.parse_id(raw)
        if merchant_id is None:
            raise NotFound("merchant not found")
        return merchant_id, self.rt.pool_for(merchant_id)

    async def _check_target(self, url: str, allowed_ips: list[str]) -> None:
        """The SSRF check at save time: every address the host resolves to must be one we may
        contact (the worker checks again before each attempt: DNS answers change)."""
        try:
            await self.dispatcher.check_url(url, allowed_ips)
        except ssrf.UnsafeUrl as error:
            raise InvalidArgument.field("url", error.reason) from None
        except (OSError, TimeoutError):
            raise InvalidArgument.field("url", "the host name does not resolve") from None

    async def _endpoint(
        self, conn: Connection | asyncpg.Pool, merchant_id: uuid.UUID, endpoint_id: uuid.UUID
    ) -> pb.WebhookEndpoint:
        row = await repository.endpoint(conn, merchant_id, endpoint_id, self.failing_after)
        if row is None:
            raise NotFound("webhook endpoint not found")
        return endpoint_message(row)

    async def _load_endpoint(self, conn: Connection, merchant_id: uuid.UUID, raw_id: str) -> WebhookEndpoint:
        endpoint_id = ids.parse_id(raw_id)
        endpoint = await self.endpoints.get(conn, endpoint_id) if endpoint_id else None
        if endpoint is None or endpoint.merchant_id != str(merchant_id) or endpoint.deleted:
            raise NotFound("webhook endpoint not found")
        return endpoint

    # -- endpoints ------------------------------------------------------------------------------
    async def create_endpoint(self, request: pb.CreateWebhookEndpointRequest) -> pb.WebhookEndpointWithSecret:
        merchant_id, pool = self._merchant(request.merchant_id)
        endpoint_id = ids.new_id(ids.slot_of(merchant_id))

        async def handle(conn: Connection) -> pb.WebhookEndpointWithSecret:
            if await merchants.merchant(conn, merchant_id) is None:
                raise NotFound("merchant not found")
            endpoint, secret = WebhookEndpoint.create(
                endpoint_id,
                merchant_id=merchant_id,
                url=request.url,
                events=list(request.events),
                max_retries=request.max_retries if request.HasField("max_retries") else None,
                retry_backoff=request.retry_backoff if request.HasField("retry_backoff") else None,
                timeout_seconds=request.timeout_seconds if request.HasField("timeout_seconds") else None,
                allowed_ips=list(request.allowed_ips),
                now=utcnow(),
            )
            await self._check_target(endpoint.url, endpoint.allowed_ips)
            await self._save(conn, endpoint)
            await self.vault.seal(
                conn, ref=secret.ref, endpoint_id=endpoint_id, merchant_id=merchant_id, secret=secret.value
            )
            return pb.WebhookEndpointWithSecret(
                endpoint=await self._endpoint(conn, merchant_id, endpoint_id), secret=secret.value
            )

        return await Commands.run(
            pool,
            self._scope("CreateWebhookEndpoint"),
            handle,
            _encode_without_secret,
            pb.WebhookEndpointWithSecret.FromString,
        )

    async def get_endpoint(self, request: pb.GetWebhookEndpointRequest) -> pb.WebhookEndpoint:
        merchant_id, pool = self._merchant(request.merchant_id)
        endpoint_id = ids.parse_id(request.endpoint_id)
        if endpoint_id is None:
            raise NotFound("webhook endpoint not found")
        return await self._endpoint(pool, merchant_id, endpoint_id)

    async def list_endpoints(
        self, request: pb.ListWebhookEndpointsRequest
    ) -> pb.ListWebhookEndpointsResponse:
        merchant_id, pool = self._merchant(request.merchant_id)
        rows = await repository.endpoints_of(pool, merchant_id, self.failing_after)
        return pb.ListWebhookEndpointsResponse(endpoints=[endpoint_message(r) for r in rows])

    async def update_endpoint(self, request: pb.UpdateWebhookEndpointRequest) -> pb.WebhookEndpoint:
        merchant_id, pool = self._merchant(request.merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            endpoint = await self._load_endpoint(conn, merchant_id, request.endpoint_id)
            before = (endpoint.url, list(endpoint.allowed_ips))
            endpoint.update(
                url=request.url if request.HasField("url") else None,
                events=list(request.events) if request.replace_events else None,
                max_retries=request.max_retries if request.HasField("max_retries") else None,
                retry_backoff=request.retry_backoff if request.HasField("retry_backoff") else None,
                timeout_seconds=request.timeout_seconds if request.HasField("timeout_seconds") else None,
                allowed_ips=list(request.allowed_ips) if request.replace_allowed_ips else None,
                status=request.status if request.HasField("status") else None,
                now=utcnow(),
            )
            if (endpoint.url, endpoint.allowed_ips) != before:
                await self._check_target(endpoint.url, endpoint.allowed_ips)
            await self._save(conn, endpoint)
            result = await self._endpoint(conn, merchant_id, endpoint.id)
        if result.status == "active":
            self.dispatcher.wake(self.rt.shard_of(merchant_id))  # re-enabled: its queue is due
        return result

    async def delete_endpoint(self, request: pb.DeleteWebhookEndpointRequest) -> pb.WebhookEndpoint:
        merchant_id, pool = self._merchant(request.merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            endpoint = await self._load_endpoint(conn, merchant_id, request.endpoint_id)
            last = await self._endpoint(conn, merchant_id, endpoint.id)
            endpoint.delete(utcnow())
            await self._save(conn, endpoint)
        last.status = "deleted"
        return last

    async def rotate_secret(self, request: pb.RotateWebhookSecretRequest) -> pb.WebhookEndpointWithSecret:
        merchant_id, pool = self._merchant(request.merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            endpoint = await self._load_endpoint(conn, merchant_id, request.endpoint_id)
            secret = endpoint.rotate_secret(utcnow())
            await self._save(conn, endpoint)
            await self.vault.seal(
                conn, ref=secret.ref, endpoint_id=endpoint.id, merchant_id=merchant_id, secret=secret.value
            )
            return pb.WebhookEndpointWithSecret(
                endpoint=await self._endpoint(conn, merchant_id, endpoint.id), secret=secret.value
            )

    # -- deliveries -----------------------------------------------------------------------------
    async def list_deliveries(
        self, request: pb.ListWebhookDeliveriesRequest
    ) -> pb.ListWebhookDeliveriesResponse:
        merchant_id, pool = self._merchant(request.merchant_id)
        endpoint_id = ids.parse_id(request.endpoint_id)
        if endpoint_id is None or await repository.endpoint(pool, merchant_id, endpoint_id, 1) is None:
            raise NotFound("webhook endpoint not found")
        status = _choice(request.status, "status", DELIVERY_STATUSES)
        limit, before = _page(request.limit, request.cursor)
        rows = await repository.deliveries_of(
            pool,
            endpoint_id,
            status=status,
            event_type=request.event_type or None,
            before=before,
            limit=limit + 1,
        )
        page = rows[:limit]
        attempts = await repository.attempts_of(pool, [r["id"] for r in page])
        return pb.ListWebhookDeliveriesResponse(
            deliveries=[delivery_message(r, attempts.get(r["id"], [])) for r in page],
            next_cursor=str(page[-1]["id"]) if len(rows) > limit else "",
        )

    async def get_delivery(self, request: pb.GetWebhookDeliveryRequest) -> pb.WebhookDelivery:
        merchant_id, pool = self._merchant(request.merchant_id)
        delivery_id = ids.parse_id(request.delivery_id)
        row = await repository.delivery(pool, merchant_id, delivery_id) if delivery_id else None
        if row is None or delivery_id is None:
            raise NotFound("webhook delivery not found")
        attempts = await repository.attempts_of(pool, [delivery_id])
        return delivery_message(row, attempts.get(delivery_id, []))

    async def redeliver(self, request: pb.RedeliverWebhookRequest) -> pb.WebhookDelivery:
        merchant_id, pool = self._merchant(request.merchant_id)
        delivery_id = ids.parse_id(request.delivery_id)
        if delivery_id is None:
            raise NotFound("webhook delivery not found")
        async with pool.acquire() as conn, conn.transaction():
            row = await repository.delivery(conn, merchant_id, delivery_id)
            if row is None:
                raise NotFound("webhook delivery not found")
            endpoint = await repository.endpoint(
                conn, merchant_id, row["webhook_endpoint_id"], self.failing_after
            )
            if endpoint is None:
                raise NotFound("webhook delivery not found")
            if endpoint["status"] == "disabled":
                raise FailedPrecondition("the webhook endpoint is disabled; enable it to redeliver")
            row = await repository.schedule_redelivery(conn, merchant_id, delivery_id)
            assert row is not None
            attempts = await repository.attempts_of(conn, [delivery_id])
        self.dispatcher.wake(self.rt.shard_of(merchant_id))
        return delivery_message(row, attempts.get(delivery_id, []))

    # -- notification templates -----------------------------------------------------------------
    async def _template(
        self, db: Connection | asyncpg.Pool, merchant_id: uuid.UUID, template_id: uuid.UUID
    ) -> pb.NotificationTemplate:
        row = await repository.template(db, merchant_id, template_id)
        if row is None:
            raise NotFound("notification template not found")
        return template_message(row)

    async def _load_template(
        self, conn: Connection, merchant_id: uuid.UUID, raw_id: str
    ) -> NotificationTemplate:
        template_id = ids.parse_id(raw_id)
        template = await self.templates.get(conn, template_id) if template_id else None
        if template is None or template.merchant_id != str(merchant_id) or template.deleted:
            raise NotFound("notification template not found")
        return template

    async def create_template(self, request: pb.CreateNotificationTemplateRequest) -> pb.NotificationTemplate:
        merchant_id, pool = self._merchant(request.merchant_id)
        template_id = ids.new_id(ids.slot_of(merchant_id))

        async def handle(conn: Connection) -> pb.NotificationTemplate:
            if await merchants.merchant(conn, merchant_id) is None:
                raise NotFound("merchant not found")
            template = NotificationTemplate.create(
                template_id,
                merchant_id=merchant_id,
                event_type=request.event_type,
                subject=request.subject,
                body_template=request.body_template,
                recipient=request.recipient,
                is_active=request.is_active if request.HasField("is_active") else True,
                now=utcnow(),
            )
            await self._save(conn, template)
            return await self._template(conn, merchant_id, template_id)

        return await Commands.run(
            pool,
            self._scope("CreateNotificationTemplate"),
            handle,
            lambda message: message.SerializeToString(),
            pb.NotificationTemplate.FromString,
        )

    async def get_template(self, request: pb.GetNotificationTemplateRequest) -> pb.NotificationTemplate:
        merchant_id, pool = self._merchant(request.merchant_id)
        template_id = ids.parse_id(request.template_id)
        if template_id is None:
            raise NotFound("notification template not found")
        return await self._template(pool, merchant_id, template_id)

    async def list_templates(
        self, request: pb.ListNotificationTemplatesRequest
    ) -> pb.ListNotificationTemplatesResponse:
        merchant_id, pool = self._merchant(request.merchant_id)
        rows = await repository.templates_of(pool, merchant_id)
        return pb.ListNotificationTemplatesResponse(templates=[template_message(r) for r in rows])

    async def update_template(self, request: pb.UpdateNotificationTemplateRequest) -> pb.NotificationTemplate:
        merchant_id, pool = self._merchant(request.merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            template = await self._load_template(conn, merchant_id, request.template_id)
            template.update(
                event_type=request.event_type if request.HasField("event_type") else None,
                subject=request.subject if request.HasField("subject") else None,
                body_template=request.body_template if request.HasField("body_template") else None,
                recipient=request.recipient if request.HasField("recipient") else None,
                is_active=request.is_active if request.HasField("is_active") else None,
                now=utcnow(),
            )
            await self._save(conn, template)
            return await self._template(conn, merchant_id, template.id)

    async def delete_template(self, request: pb.DeleteNotificationTemplateRequest) -> pb.NotificationTemplate:
        merchant_id, pool = self._merchant(request.merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            template = await self._load_template(conn, merchant_id, request.template_id)
            last = await self._template(conn, merchant_id, template.id)
            template.delete(utcnow())
            await self._save(conn, template)
        return last

    async def list_notifications(
        self, request: pb.ListNotificationDeliveriesRequest
    ) -> pb.ListNotificationDeliveriesResponse:
        merchant_id, pool = self._merchant(request.merchant_id)
        template_id = ids.parse_id(request.template_id) if request.template_id else None
        if request.template_id and template_id is None:
            raise InvalidArgument.field("template_id", "must be an id")
        status = _choice(request.status, "status", NOTIFICATION_STATUSES)
        limit, before = _page(request.limit, request.cursor)
        rows = await repository.notifications_of(
            pool, merchant_id, template_id=template_id, status=status, before=before, limit=limit + 1
        )
        page = rows[:limit]
        return pb.ListNotificationDeliveriesResponse(
            deliveries=[notification_message(r) for r in page],
            next_cursor=str(page[-1]["id"]) if len(rows) > limit else "",
        )


def _encode_without_secret(response: pb.WebhookEndpointWithSecret) -> bytes:
    # The secret is shown once: a replayed create returns the endpoint with an empty secret
    # (rotate it if it was lost).
    stored = pb.WebhookEndpointWithSecret()
    stored.CopyFrom(response)
    stored.secret = ""
    return stored.SerializeToString()
