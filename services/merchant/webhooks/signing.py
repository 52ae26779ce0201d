"""Webhook signatures: ``Checkout-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

The timestamp is inside the MAC so a captured delivery cannot be replayed later with a fresh
``t``; the receiver rejects timestamps outside a tolerance window. During secret rotation the
sender emits one ``v1`` per active secret, so receivers holding either secret keep verifying.

Verifying a delivery as a merchant: `checkout_client.verify_webhook(secret, header, body)` (the
merchant client, clients/python), whose MAC this module signs with, or by hand (Python, standard
library only). Use the raw request body exactly as received -- re-serialising parsed JSON
changes the bytes and breaks the MAC -- and the whole secret string, ``whsec_`` prefix included,
as the key:

```python
import hashlib, hmac, time


def verify_checkout_signature(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    items = [item.strip().partition("=") for item in header.split(",")]
    stamps = [value.strip() for key, _, value in items if key.strip() == "t"]
    signatures = [value.strip() for key, _, value in items if key.strip() == "v1"]
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()) or not signatures:
        return False
    if abs(time.time() - int(stamps[0])) > tolerance:
        return False  # too old, or from the future: treat as a replay
    payload = stamps[0].encode() + b"." + body
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest().encode()
    return any(hmac.compare_digest(expected, s.encode()) for s in signatures)
```

Then de-duplicate on the ``Checkout-Event-Id`` header: retries deliver the same event again.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence

from checkout_client.webhooks import DEFAULT_TOLERANCE_SECONDS, SCHEME, mac, verify_webhook
from checkout_client.webhooks import WebhookSignatureError as SignatureError

SECRET_PREFIX = "whsec_"
__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "SECRET_PREFIX",
    "SignatureError",
    "new_secret",
    "sign",
    "sign_all",
    "verify",
]


def new_secret() -> str:
    """A fresh endpoint secret; the prefix makes leaked secrets recognisable to secret scanners."""
    return SECRET_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Checkout-Signature`` header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    if not secret:
        raise ValueError("empty webhook secret")
    if timestamp < 0:
        raise ValueError("negative timestamp")
    return f"t={timestamp},{SCHEME}={mac(secret, body, timestamp)}"


def sign_all(secrets: Sequence[str], body: bytes, timestamp: int) -> str:
    """``sign`` with one ``v1`` per secret: during a rotation both the new and the previous
    secret sign, so a receiver holding either keeps verifying."""
    if not secrets:
        raise ValueError("no webhook secret to sign with")
    header = sign(secrets[0], body, timestamp)
    return header + "".join(f",{SCHEME}={mac(secret, body, timestamp)}" for secret in secrets[1:] if secret)


def verify(
    secret: str | Sequence[str],
    body: bytes,
    header: str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> None:
    """The merchant's check (`verify_webhook`), in this module's argument order."""
    verify_webhook(secret, header, body, tolerance_seconds=tolerance_seconds, now=now)
