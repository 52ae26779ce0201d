"""MerchantService over gRPC: the one place that knows the service's protobuf.

Each method maps its request to the application's plain values (requests.py, webhooks/requests.py,
feed's EventsQuery), calls the use case and maps the answer (the views) to its message
(libs/common/views.py; an idempotent command's answer takes the message its record was encoded
from, `Reply.message_of`). Errors are typed in libs/common/errors.py and mapped to gRPC statuses,
with field violations, by the shared interceptor (libs/common/grpc_server.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from checkout.merchant.v1 import merchant_pb2 as pb
from checkout.merchant.v1 import merchant_pb2_grpc
from google.protobuf.message import Message

from libs.common.protoconv import datetime_of, plain
from libs.common.views import to_message
from services.merchant.application import MerchantApp
from services.merchant.feed.application import EventsQuery, Feed
from services.merchant.messages import CREATED_KEY_REPLY, ENDPOINT_REPLY, MERCHANT_REPLY, TEMPLATE_REPLY
from services.merchant.requests import KeyUse, MerchantChange, NewApiKey, NewMerchant
from services.merchant.webhooks import requests as asks
from services.merchant.webhooks import views as webhook_views
from services.merchant.webhooks.application import WebhookApp

Context = grpc.aio.ServicerContext[Any, Any]


def given(request: Message, name: str) -> Any:
    """An optional field's value, or None when it was not sent."""
    return getattr(request, name) if request.HasField(name) else None


def grantor(request: pb.CreateApiKeyRequest, name: str) -> Any:
    """The `grantor` oneof's value when `name` is the one sent, else None."""
    return getattr(request, name) if request.WhichOneof("grantor") == name else None


def endpoint(answer: webhook_views.WebhookEndpoint) -> pb.WebhookEndpoint:
    return to_message(answer, pb.WebhookEndpoint)


def template(answer: webhook_views.NotificationTemplate) -> pb.NotificationTemplate:
    return to_message(answer, pb.NotificationTemplate)


class MerchantServicer(merchant_pb2_grpc.MerchantServiceServicer):
    def __init__(self, app: MerchantApp, webhooks: WebhookApp, feed: Feed) -> None:
        self.app = app
        self.webhooks = webhooks
        self.feed = feed

    async def CreateMerchant(self, request: pb.CreateMerchantRequest, context: Context) -> pb.Merchant:
        ask = NewMerchant(
            merchant_id=request.merchant_id,
            business_name=request.business_name,
            contact_email=request.contact_email,
            plan_type=request.plan_type,
            settings=plain(request.settings),
            wallets=dict(request.wallets),
        )
        return MERCHANT_REPLY.message_of(await self.app.create_merchant(ask))

    async def ClaimContactEmail(
        self, request: pb.ClaimContactEmailRequest, context: Context
    ) -> pb.ClaimContactEmailResponse:
        claimed = await self.app.claim_contact_email(request.merchant_id, request.contact_email)
        return pb.ClaimContactEmailResponse(merchant_id=claimed)

    async def GetMerchant(self, request: pb.GetMerchantRequest, context: Context) -> pb.Merchant:
        return to_message(await self.app.get_merchant(request.merchant_id), pb.Merchant)

    async def UpdateMerchant(self, request: pb.UpdateMerchantRequest, context: Context) -> pb.Merchant:
        change = MerchantChange(
            merchant_id=request.merchant_id,
            business_name=given(request, "business_name"),
            settings=plain(request.settings) if request.replace_settings else None,
            wallets=dict(request.wallets) if request.replace_wallets else None,
        )
        return MERCHANT_REPLY.message_of(await self.app.update_merchant(change))

    async def ListMerchants(
        self, request: pb.ListMerchantsRequest, context: Context
    ) -> pb.ListMerchantsResponse:
        page = await self.app.list_merchants(request.limit, request.cursor)
        return pb.ListMerchantsResponse(
            merchants=[to_message(m, pb.Merchant) for m in page.items], next_cursor=page.next_cursor
        )

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        ask = NewApiKey(
            merchant_id=request.merchant_id,
            name=request.name,
            key_type=request.key_type,
            permissions=None if request.use_default_permissions else tuple(request.permissions),
            expires_at=datetime_of(request.expires_at) if request.HasField("expires_at") else None,
            operator=grantor(request, "operator"),
            granting_api_key_id=grantor(request, "granting_api_key_id"),
        )
        return CREATED_KEY_REPLY.message_of(await self.app.create_api_key(ask))

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        keys = await self.app.list_api_keys(request.merchant_id)
        return pb.ListApiKeysResponse(api_keys=[to_message(k, pb.ApiKey) for k in keys])

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Context) -> pb.ApiKey:
        return to_message(await self.app.revoke_api_key(request.merchant_id, request.api_key_id), pb.ApiKey)

    async def VerifyApiKey(
        self, request: pb.VerifyApiKeyRequest, context: Context
    ) -> pb.VerifyApiKeyResponse:
        return to_message(await self.app.verify_api_key(request.key), pb.VerifyApiKeyResponse)

    async def TouchApiKeys(
        self, request: pb.TouchApiKeysRequest, context: Context
    ) -> pb.TouchApiKeysResponse:
        uses = [
            KeyUse(u.api_key_id, datetime_of(u.used_at) if u.HasField("used_at") else None)
            for u in request.uses
        ]
        return pb.TouchApiKeysResponse(touched=await self.app.touch_api_keys(uses))

    # -- webhooks and notifications ------------------------------------------------------------
    async def CreateWebhookEndpoint(
        self, request: pb.CreateWebhookEndpointRequest, context: Context
    ) -> pb.WebhookEndpointWithSecret:
        ask = asks.NewEndpoint(
            merchant_id=request.merchant_id,
            url=request.url,
            events=tuple(request.events),
            max_retries=given(request, "max_retries"),
            retry_backoff=given(request, "retry_backoff"),
            timeout_seconds=given(request, "timeout_seconds"),
            allowed_ips=tuple(request.allowed_ips),
        )
        return ENDPOINT_REPLY.message_of(await self.webhooks.create_endpoint(ask))

    async def GetWebhookEndpoint(
        self, request: pb.GetWebhookEndpointRequest, context: Context
    ) -> pb.WebhookEndpoint:
        return endpoint(await self.webhooks.get_endpoint(request.merchant_id, request.endpoint_id))

    async def ListWebhookEndpoints(
        self, request: pb.ListWebhookEndpointsRequest, context: Context
    ) -> pb.ListWebhookEndpointsResponse:
        found = await self.webhooks.list_endpoints(request.merchant_id)
        return pb.ListWebhookEndpointsResponse(endpoints=[endpoint(e) for e in found])

    async def UpdateWebhookEndpoint(
        self, request: pb.UpdateWebhookEndpointRequest, context: Context
    ) -> pb.WebhookEndpoint:
        change = asks.EndpointChange(
            merchant_id=request.merchant_id,
            endpoint_id=request.endpoint_id,
            url=given(request, "url"),
            events=tuple(request.events) if request.replace_events else None,
            max_retries=given(request, "max_retries"),
            retry_backoff=given(request, "retry_backoff"),
            timeout_seconds=given(request, "timeout_seconds"),
            allowed_ips=tuple(request.allowed_ips) if request.replace_allowed_ips else None,
            status=given(request, "status"),
        )
        return endpoint(await self.webhooks.update_endpoint(change))

    async def DeleteWebhookEndpoint(
        self, request: pb.DeleteWebhookEndpointRequest, context: Context
    ) -> pb.WebhookEndpoint:
        return endpoint(await self.webhooks.delete_endpoint(request.merchant_id, request.endpoint_id))

    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: Context
    ) -> pb.WebhookEndpointWithSecret:
        rotated = await self.webhooks.rotate_secret(request.merchant_id, request.endpoint_id)
        return to_message(rotated, pb.WebhookEndpointWithSecret)

    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: Context
    ) -> pb.ListWebhookDeliveriesResponse:
        query = asks.DeliveryQuery(
            merchant_id=request.merchant_id,
            endpoint_id=request.endpoint_id,
            status=request.status,
            event_type=request.event_type,
            limit=request.limit,
            cursor=request.cursor,
        )
        page = await self.webhooks.list_deliveries(query)
        return pb.ListWebhookDeliveriesResponse(
            deliveries=[to_message(d, pb.WebhookDelivery) for d in page.items], next_cursor=page.next_cursor
        )

    async def GetWebhookDelivery(
        self, request: pb.GetWebhookDeliveryRequest, context: Context
    ) -> pb.WebhookDelivery:
        found = await self.webhooks.get_delivery(request.merchant_id, request.delivery_id)
        return to_message(found, pb.WebhookDelivery)

    async def RedeliverWebhook(
        self, request: pb.RedeliverWebhookRequest, context: Context
    ) -> pb.WebhookDelivery:
        scheduled = await self.webhooks.redeliver(request.merchant_id, request.delivery_id)
        return to_message(scheduled, pb.WebhookDelivery)

    async def CreateNotificationTemplate(
        self, request: pb.CreateNotificationTemplateRequest, context: Context
    ) -> pb.NotificationTemplate:
        ask = asks.NewTemplate(
            merchant_id=request.merchant_id,
            event_type=request.event_type,
            subject=request.subject,
            body_template=request.body_template,
            recipient=request.recipient,
            is_active=given(request, "is_active"),
        )
        return TEMPLATE_REPLY.message_of(await self.webhooks.create_template(ask))

    async def GetNotificationTemplate(
        self, request: pb.GetNotificationTemplateRequest, context: Context
    ) -> pb.NotificationTemplate:
        return template(await self.webhooks.get_template(request.merchant_id, request.template_id))

    async def ListNotificationTemplates(
        self, request: pb.ListNotificationTemplatesRequest, context: Context
    ) -> pb.ListNotificationTemplatesResponse:
        found = await self.webhooks.list_templates(request.merchant_id)
        return pb.ListNotificationTemplatesResponse(templates=[template(t) for t in found])

    async def UpdateNotificationTemplate(
        self, request: pb.UpdateNotificationTemplateRequest, context: Context
    ) -> pb.NotificationTemplate:
        change = asks.TemplateChange(
            merchant_id=request.merchant_id,
            template_id=request.template_id,
            event_type=given(request, "event_type"),
            subject=given(request, "subject"),
            body_template=given(request, "body_template"),
            recipient=given(request, "recipient"),
            is_active=given(request, "is_active"),
        )
        return template(await self.webhooks.update_template(change))

    async def DeleteNotificationTemplate(
        self, request: pb.DeleteNotificationTemplateRequest, context: Context
    ) -> pb.NotificationTemplate:
        return template(await self.webhooks.delete_template(request.merchant_id, request.template_id))

    async def ListNotificationDeliveries(
        self, request: pb.ListNotificationDeliveriesRequest, context: Context
    ) -> pb.ListNotificationDeliveriesResponse:
        query = asks.NotificationQuery(
            merchant_id=request.merchant_id,
            template_id=request.template_id,
            status=request.status,
            limit=request.limit,
            cursor=request.cursor,
        )
        page = await self.webhooks.list_notifications(query)
        return pb.ListNotificationDeliveriesResponse(
            deliveries=[to_message(d, pb.NotificationDelivery) for d in page.items],
            next_cursor=page.next_cursor,
        )

    async def ListEvents(self, request: pb.ListEventsRequest, context: Context) -> pb.ListEventsResponse:
        query = EventsQuery(
            merchant_id=request.merchant_id,
            after_sequence=request.after_sequence,
            types=tuple(request.types),
            limit=request.limit,
            wait_seconds=request.wait_seconds,
        )
        return to_message(await self.feed.list_events(query), pb.ListEventsResponse)


def register(
    server: grpc.aio.Server, merchants: MerchantApp, webhooks: WebhookApp, feed: Feed
) -> Sequence[str]:
    servicer = MerchantServicer(merchants, webhooks, feed)
    merchant_pb2_grpc.add_MerchantServiceServicer_to_server(servicer, server)
    return [pb.DESCRIPTOR.services_by_name["MerchantService"].full_name]
