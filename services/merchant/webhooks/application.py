"""Webhook and notification use cases: load, decide, append (with inline read models), answer
with plain values (requests.py in, views.py out; grpc_api.py maps them to and from protobuf).
Every request names its merchant; anything of another merchant is NOT_FOUND."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import asyncpg

from libs.common import context, ids
from libs.common.commandlog import Commands
from libs.common.db import Connection
from libs.common.errors import FailedPrecondition, InvalidArgument, NotFound
from libs.common.eventstore import Repository, StoredEvent, utcnow
from libs.common.limits import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from libs.common.service import Runtime
from libs.common.views import Page
from services.merchant import repository as merchants
from services.merchant.messages import ENDPOINT_REPLY, TEMPLATE_REPLY
from services.merchant.webhooks import projections, repository, ssrf, views
from services.merchant.webhooks.delivery import Dispatcher
from services.merchant.webhooks.domain import NotificationTemplate, WebhookEndpoint
from services.merchant.webhooks.requests import (
    DeliveryQuery,
    EndpointChange,
    NewEndpoint,
    NewTemplate,
    NotificationQuery,
    TemplateChange,
)

DELIVERY_STATUSES = ("pending", "succeeded", "failed")
NOTIFICATION_STATUSES = ("pending", "sent", "failed", "skipped")


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
    ) -> views.WebhookEndpoint:
        row = await repository.endpoint(conn, merchant_id, endpoint_id, self.failing_after)
        if row is None:
            raise NotFound("webhook endpoint not found")
        return views.endpoint(row)

    async def _load_endpoint(self, conn: Connection, merchant_id: uuid.UUID, raw_id: str) -> WebhookEndpoint:
        endpoint_id = ids.parse_id(raw_id)
        endpoint = await self.endpoints.get(conn, endpoint_id) if endpoint_id else None
        if endpoint is None or endpoint.merchant_id != str(merchant_id) or endpoint.deleted:
            raise NotFound("webhook endpoint not found")
        return endpoint

    # -- endpoints ------------------------------------------------------------------------------
    async def create_endpoint(self, request: NewEndpoint) -> views.WebhookEndpointWithSecret:
        merchant_id, pool = self._merchant(request.merchant_id)
        endpoint_id = ids.new_id(ids.slot_of(merchant_id))

        async def handle(conn: Connection) -> views.WebhookEndpointWithSecret:
            if await merchants.merchant(conn, merchant_id) is None:
                raise NotFound("merchant not found")
            endpoint, secret = WebhookEndpoint.create(
                endpoint_id,
                merchant_id=merchant_id,
                url=request.url,
                events=list(request.events),
                max_retries=request.max_retries,
                retry_backoff=request.retry_backoff,
                timeout_seconds=request.timeout_seconds,
                allowed_ips=list(request.allowed_ips),
                now=utcnow(),
            )
            await self._check_target(endpoint.url, endpoint.allowed_ips)
            await self._save(conn, endpoint)
            await self.vault.seal(
                conn, ref=secret.ref, endpoint_id=endpoint_id, merchant_id=merchant_id, secret=secret.value
            )
            return views.WebhookEndpointWithSecret(
                endpoint=await self._endpoint(conn, merchant_id, endpoint_id), secret=secret.value
            )

        return await Commands.run(
            pool, self._scope("CreateWebhookEndpoint"), handle, _without_secret, ENDPOINT_REPLY.decode
        )

    async def get_endpoint(self, raw_merchant_id: str, raw_endpoint_id: str) -> views.WebhookEndpoint:
        merchant_id, pool = self._merchant(raw_merchant_id)
        endpoint_id = ids.parse_id(raw_endpoint_id)
        if endpoint_id is None:
            raise NotFound("webhook endpoint not found")
        return await self._endpoint(pool, merchant_id, endpoint_id)

    async def list_endpoints(self, raw_merchant_id: str) -> tuple[views.WebhookEndpoint, ...]:
        merchant_id, pool = self._merchant(raw_merchant_id)
        rows = await repository.endpoints_of(pool, merchant_id, self.failing_after)
        return tuple(views.endpoint(r) for r in rows)

    async def update_endpoint(self, request: EndpointChange) -> views.WebhookEndpoint:
        merchant_id, pool = self._merchant(request.merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            endpoint = await self._load_endpoint(conn, merchant_id, request.endpoint_id)
            before = (endpoint.url, list(endpoint.allowed_ips))
            endpoint.update(
                url=request.url,
                events=None if request.events is None else list(request.events),
                max_retries=request.max_retries,
                retry_backoff=request.retry_backoff,
                timeout_seconds=request.timeout_seconds,
                allowed_ips=None if request.allowed_ips is None else list(request.allowed_ips),
                status=request.status,
                now=utcnow(),
            )
            if (endpoint.url, endpoint.allowed_ips) != before:
                await self._check_target(endpoint.url, endpoint.allowed_ips)
            await self._save(conn, endpoint)
            result = await self._endpoint(conn, merchant_id, endpoint.id)
        if result.status == "active":
            self.dispatcher.wake(self.rt.shard_of(merchant_id))  # re-enabled: its queue is due
        return result

    async def delete_endpoint(self, raw_merchant_id: str, raw_endpoint_id: str) -> views.WebhookEndpoint:
        merchant_id, pool = self._merchant(raw_merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            endpoint = await self._load_endpoint(conn, merchant_id, raw_endpoint_id)
            last = await self._endpoint(conn, merchant_id, endpoint.id)
            endpoint.delete(utcnow())
            await self._save(conn, endpoint)
        return replace(last, status="deleted")

    async def rotate_secret(
        self, raw_merchant_id: str, raw_endpoint_id: str
    ) -> views.WebhookEndpointWithSecret:
        merchant_id, pool = self._merchant(raw_merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            endpoint = await self._load_endpoint(conn, merchant_id, raw_endpoint_id)
            secret = endpoint.rotate_secret(utcnow())
            await self._save(conn, endpoint)
            await self.vault.seal(
                conn, ref=secret.ref, endpoint_id=endpoint.id, merchant_id=merchant_id, secret=secret.value
            )
            return views.WebhookEndpointWithSecret(
                endpoint=await self._endpoint(conn, merchant_id, endpoint.id), secret=secret.value
            )

    # -- deliveries -----------------------------------------------------------------------------
    async def list_deliveries(self, request: DeliveryQuery) -> Page[views.WebhookDelivery]:
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
        return Page(
            tuple(views.delivery(r, attempts.get(r["id"], [])) for r in page),
            str(page[-1]["id"]) if len(rows) > limit else "",
        )

    async def get_delivery(self, raw_merchant_id: str, raw_delivery_id: str) -> views.WebhookDelivery:
        merchant_id, pool = self._merchant(raw_merchant_id)
        delivery_id = ids.parse_id(raw_delivery_id)
        row = await repository.delivery(pool, merchant_id, delivery_id) if delivery_id else None
        if row is None or delivery_id is None:
            raise NotFound("webhook delivery not found")
        attempts = await repository.attempts_of(pool, [delivery_id])
        return views.delivery(row, attempts.get(delivery_id, []))

    async def redeliver(self, raw_merchant_id: str, raw_delivery_id: str) -> views.WebhookDelivery:
        merchant_id, pool = self._merchant(raw_merchant_id)
        delivery_id = ids.parse_id(raw_delivery_id)
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
        return views.delivery(row, attempts.get(delivery_id, []))

    # -- notification templates -----------------------------------------------------------------
    async def _template(
        self, db: Connection | asyncpg.Pool, merchant_id: uuid.UUID, template_id: uuid.UUID
    ) -> views.NotificationTemplate:
        row = await repository.template(db, merchant_id, template_id)
        if row is None:
            raise NotFound("notification template not found")
        return views.template(row)

    async def _load_template(
        self, conn: Connection, merchant_id: uuid.UUID, raw_id: str
    ) -> NotificationTemplate:
        template_id = ids.parse_id(raw_id)
        template = await self.templates.get(conn, template_id) if template_id else None
        if template is None or template.merchant_id != str(merchant_id) or template.deleted:
            raise NotFound("notification template not found")
        return template

    async def create_template(self, request: NewTemplate) -> views.NotificationTemplate:
        merchant_id, pool = self._merchant(request.merchant_id)
        template_id = ids.new_id(ids.slot_of(merchant_id))

        async def handle(conn: Connection) -> views.NotificationTemplate:
            if await merchants.merchant(conn, merchant_id) is None:
                raise NotFound("merchant not found")
            template = NotificationTemplate.create(
                template_id,
                merchant_id=merchant_id,
                event_type=request.event_type,
                subject=request.subject,
                body_template=request.body_template,
                recipient=request.recipient,
                is_active=True if request.is_active is None else request.is_active,
                now=utcnow(),
            )
            await self._save(conn, template)
            return await self._template(conn, merchant_id, template_id)

        return await Commands.run(
            pool,
            self._scope("CreateNotificationTemplate"),
            handle,
            TEMPLATE_REPLY.encode,
            TEMPLATE_REPLY.decode,
        )

    async def get_template(self, raw_merchant_id: str, raw_template_id: str) -> views.NotificationTemplate:
        merchant_id, pool = self._merchant(raw_merchant_id)
        template_id = ids.parse_id(raw_template_id)
        if template_id is None:
            raise NotFound("notification template not found")
        return await self._template(pool, merchant_id, template_id)

    async def list_templates(self, raw_merchant_id: str) -> tuple[views.NotificationTemplate, ...]:
        merchant_id, pool = self._merchant(raw_merchant_id)
        rows = await repository.templates_of(pool, merchant_id)
        return tuple(views.template(r) for r in rows)

    async def update_template(self, request: TemplateChange) -> views.NotificationTemplate:
        merchant_id, pool = self._merchant(request.merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            template = await self._load_template(conn, merchant_id, request.template_id)
            template.update(
                event_type=request.event_type,
                subject=request.subject,
                body_template=request.body_template,
                recipient=request.recipient,
                is_active=request.is_active,
                now=utcnow(),
            )
            await self._save(conn, template)
            return await self._template(conn, merchant_id, template.id)

    async def delete_template(self, raw_merchant_id: str, raw_template_id: str) -> views.NotificationTemplate:
        merchant_id, pool = self._merchant(raw_merchant_id)
        async with pool.acquire() as conn, conn.transaction():
            template = await self._load_template(conn, merchant_id, raw_template_id)
            last = await self._template(conn, merchant_id, template.id)
            template.delete(utcnow())
            await self._save(conn, template)
        return last

    async def list_notifications(self, request: NotificationQuery) -> Page[views.NotificationDelivery]:
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
        return Page(
            tuple(views.notification(r) for r in page), str(page[-1]["id"]) if len(rows) > limit else ""
        )


def _without_secret(answer: views.WebhookEndpointWithSecret) -> bytes:
    # The secret is shown once: a replayed create returns the endpoint with an empty secret
    # (rotate it if it was lost).
    return ENDPOINT_REPLY.encode(replace(answer, secret=""))
