"""How the merchant service keeps an idempotent command's answer: as its message's bytes (the
answers kept before views existed are read back the same way)."""

from __future__ import annotations

from checkout.merchant.v1 import merchant_pb2 as pb

from libs.common.views import Reply
from services.merchant import views
from services.merchant.webhooks import views as webhook_views

MERCHANT_REPLY = Reply(views.Merchant, pb.Merchant)
CREATED_KEY_REPLY = Reply(views.CreateApiKeyResponse, pb.CreateApiKeyResponse)
ENDPOINT_REPLY = Reply(webhook_views.WebhookEndpointWithSecret, pb.WebhookEndpointWithSecret)
TEMPLATE_REPLY = Reply(webhook_views.NotificationTemplate, pb.NotificationTemplate)
