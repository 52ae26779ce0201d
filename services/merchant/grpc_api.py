"""MerchantService over gRPC: thin adapters onto the application (errors are mapped by the
shared interceptor)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from checkout.merchant.v1 import merchant_pb2 as pb
from checkout.merchant.v1 import merchant_pb2_grpc

from services.merchant.application import MerchantApp
from services.merchant.feed.application import Feed
from services.merchant.webhooks.application import WebhookApp

Context = grpc.aio.ServicerContext[Any, Any]


class MerchantServicer(merchant_pb2_grpc.MerchantServiceServicer):
    def __init__(self, app: MerchantApp, webhooks: WebhookApp, feed: Feed) -> None:
        self.app = app
        self.webhooks = webhooks
        self.feed = feed

    async def CreateMerchant(self, request: pb.CreateMerchantRequest, context: Context) -> pb.Merchant:
        return await self.app.create_merchant(request)

    async def ClaimContactEmail(
        self, request: pb.ClaimContactEmailRequest, context: Context
    ) -> pb.ClaimContactEmailResponse:
        return await self.app.claim_contact_email(request)

    async def GetMerchant(self, request: pb.GetMerchantRequest, context: Context) -> pb.Merchant:
        return await self.app.get_merchant(request)

    async def UpdateMerchant(self, request: pb.UpdateMerchantRequest, context: Context) -> pb.Merchant:
        return await self.app.update_merchant(request)

    async def ListMerchants(
        self, request: pb.ListMerchantsRequest, context: Context
    ) -> pb.ListMerchantsResponse:
        return await self.app.list_merchants(request)

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        return await self.app.create_api_key(request)

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        return await self.app.list_api_keys(request)

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: Context) -> pb.ApiKey:
        return await self.app.revoke_api_key(request)

    async def VerifyApiKey(
        self, request: pb.VerifyApiKeyRequest, context: Context
    ) -> pb.VerifyApiKeyResponse:
        return await self.app.verify_api_key(request)

    async def TouchApiKeys(
        self, request: pb.TouchApiKeysRequest, context: Context
    ) -> pb.TouchApiKeysResponse:
        return await self.app.touch_api_keys(request)

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


def register(
    server: grpc.aio.Server, merchants: MerchantApp, webhooks: WebhookApp, feed: Feed
) -> Sequence[str]:
    servicer = MerchantServicer(merchants, webhooks, feed)
    merchant_pb2_grpc.add_MerchantServiceServicer_to_server(servicer, server)
    return [pb.DESCRIPTOR.services_by_name["MerchantService"].full_name]
