"""How the merchant service keeps an idempotent command's answer: as its message's bytes."""

from __future__ import annotations

from checkout.merchant.v1 import merchant_pb2 as pb

from libs.common.views import Reply
from services.merchant import views

MERCHANT_REPLY = Reply(views.Merchant, pb.Merchant)
CREATED_KEY_REPLY = Reply(views.CreateApiKeyResponse, pb.CreateApiKeyResponse)
