"""MerchantService over gRPC: maps requests and answers between protobuf and the applications
(errors are mapped by the shared interceptor). The merchant and API-key use cases speak plain
values (services/merchant/application.py); the webhook and feed ones still take and return
messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import grpc
from checkout.merchant.v1 import merchant_pb2 as pb
from checkout.merchant.v1 import merchant_pb2_grpc

from libs.common.protoconv import plain
from libs.common.service import Runtime
from libs.common.views import to_message
from services.merchant.application import MerchantApp
from services.merchant.feed.application import Feed, feed_of
from services.merchant.requests import KeyUse, MerchantChange, NewApiKey, NewMerchant
from services.merchant.webhooks.application import WebhookApp

Context = grpc.aio.ServicerContext[Any, Any]


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
        return to_message(await self.app.create_merchant(ask), pb.Merchant)

    async def GetMerchant(self, request: pb.GetMerchantRequest, context: Context) -> pb.Merchant:
        return to_message(await self.app.get_merchant(request.merchant_id), pb.Merchant)

    async def UpdateMerchant(self, request: pb.UpdateMerchantRequest, context: Context) -> pb.Merchant:
        change = MerchantChange(
            merchant_id=request.merchant_id,
            business_name=request.business_name if request.HasField("business_name") else None,
            settings=plain(request.settings) if request.replace_settings else None,
            wallets=dict(request.wallets) if request.replace_wallets else None,
        )
        return to_message(await self.app.update_merchant(change), pb.Merchant)

    async def ListMerchants(
        self, request: pb.ListMerchantsRequest, context: Context
    ) -> pb.ListMerchantsResponse:
        merchants, next_cursor = await self.app.list_merchants(request.limit, request.cursor)
        return pb.ListMerchantsResponse(
            merchants=[to_message(m, pb.Merchant) for m in merchants], next_cursor=next_cursor
        )

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        ask = NewApiKey(
            merchant_id=request.merchant_id,
            name=request.name,
            key_type=request.key_type,
            permissions=None if request.use_default_permissions else list(request.permissions),
            grantor=request.WhichOneof("grantor"),
            operator=request.operator,
            granting_api_key_id=request.granting_api_key_id,
            expires_at=request.expires_at.ToDatetime(tzinfo=dt.UTC)
            if request.HasField("expires_at")
            else None,
        )
        return to_message(await self.app.create_api_key(ask), pb.CreateApiKeyResponse)

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
            KeyUse(u.api_key_id, u.used_at.ToDatetime(tzinfo=dt.UTC) if u.HasField("used_at") else None)
            for u in request.uses
        ]
        return pb.TouchApiKeysResponse(touched=await self.app.touch_api_keys(uses))

    # -- webhooks and notifications ------------------------------------------------------------
    async def CreateWebhookEndpoint(
        self, request: pb.CreateWebhookEndpointRequest, context: Context
    ) -> pb.WebhookEndpointWithSecret:
        return await self.webhooks.create_endpoint(request)

    async def GetWebhookEndpoint(
        self, request: pb.GetWebhookEndpointRequest, context: Context
    ) -> pb.WebhookEndpoint:
        return await self.webhooks.get_endpoint(request)

    async def ListWebhookEndpoints(
        self, request: pb.ListWebhookEndpointsRequest, context: Context
    ) -> pb.ListWebhookEndpointsResponse:
        return await self.webhooks.list_endpoints(request)

    async def UpdateWebhookEndpoint(
        self, request: pb.UpdateWebhookEndpointRequest, context: Context
    ) -> pb.WebhookEndpoint:
        return await self.webhooks.update_endpoint(request)

    async def DeleteWebhookEndpoint(
        self, request: pb.DeleteWebhookEndpointRequest, context: Context
    ) -> pb.WebhookEndpoint:
        return await self.webhooks.delete_endpoint(request)

    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: Context
    ) -> pb.WebhookEndpointWithSecret:
        return await self.webhooks.rotate_secret(request)

    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: Context
    ) -> pb.ListWebhookDeliveriesResponse:
        return await self.webhooks.list_deliveries(request)

    async def GetWebhookDelivery(
        self, request: pb.GetWebhookDeliveryRequest, context: Context
    ) -> pb.WebhookDelivery:
        return await self.webhooks.get_delivery(request)

    async def RedeliverWebhook(
        self, request: pb.RedeliverWebhookRequest, context: Context
    ) -> pb.WebhookDelivery:
        return await self.webhooks.redeliver(request)

    async def CreateNotificationTemplate(
        self, request: pb.CreateNotificationTemplateRequest, context: Context
    ) -> pb.NotificationTemplate:
        return await self.webhooks.create_template(request)

    async def GetNotificationTemplate(
        self, request: pb.GetNotificationTemplateRequest, context: Context
    ) -> pb.NotificationTemplate:
        return await self.webhooks.get_template(request)

    async def ListNotificationTemplates(
        self, request: pb.ListNotificationTemplatesRequest, context: Context
    ) -> pb.ListNotificationTemplatesResponse:
        return await self.webhooks.list_templates(request)

    async def UpdateNotificationTemplate(
        self, request: pb.UpdateNotificationTemplateRequest, context: Context
    ) -> pb.NotificationTemplate:
        return await self.webhooks.update_template(request)

    async def DeleteNotificationTemplate(
        self, request: pb.DeleteNotificationTemplateRequest, context: Context
    ) -> pb.NotificationTemplate:
        return await self.webhooks.delete_template(request)

    async def ListNotificationDeliveries(
        self, request: pb.ListNotificationDeliveriesRequest, context: Context
    ) -> pb.ListNotificationDeliveriesResponse:
        return await self.webhooks.list_notifications(request)

    async def ListEvents(self, request: pb.ListEventsRequest, context: Context) -> pb.ListEventsResponse:
        return await self.feed.list_events(request)


def register(server: grpc.aio.Server, runtime: Runtime) -> Sequence[str]:
    servicer = MerchantServicer(MerchantApp(runtime), WebhookApp(runtime), feed_of(runtime))
    merchant_pb2_grpc.add_MerchantServiceServicer_to_server(servicer, server)
    return [pb.DESCRIPTOR.services_by_name["MerchantService"].full_name]
