"""The checkout platform's merchant client: typed, sync (`Client`) and async (`AsyncClient`),
with an idempotency key on every POST, retries on 429/503 that honour `Retry-After`, pagination
helpers (`iter_*`) and the webhook verifier (`verify_webhook`)."""

from checkout_client._core import NO_RETRIES, RetryPolicy, retry_after_seconds
from checkout_client.client import AsyncClient, Client
from checkout_client.errors import (
    CheckoutError,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from checkout_client.webhooks import WebhookSignatureError, verify_webhook

__all__ = [
    "NO_RETRIES",
    "AsyncClient",
    "CheckoutError",
    "Client",
    "Conflict",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RetryPolicy",
    "Unauthenticated",
    "Unavailable",
    "WebhookSignatureError",
    "retry_after_seconds",
    "verify_webhook",
]
