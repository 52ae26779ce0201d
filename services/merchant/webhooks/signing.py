"""Webhook signatures: ``Checkout-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

The timestamp is inside the MAC so a captured delivery cannot be replayed later with a fresh
``t``; the receiver rejects timestamps outside a tolerance window. During secret rotation the
sender emits one ``v1`` per active secret, so receivers holding either secret keep verifying.

Verifying a delivery as a merchant (Python, standard library only). Use the raw request body
exactly as received -- re-serialising parsed JSON changes the bytes and breaks the MAC -- and
the whole secret string, ``whsec_`` prefix included, as the key:

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
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300

# Bounds keep parsing cheap on hostile input; a real header is well under 1 KiB even with a
# few rotated signatures.
_MAX_HEADER_LENGTH = 4096
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() would also take "1_0", "٣", "+1"
_KEY = re.compile(r"[A-Za-z0-9_]+")
_VALUE = re.compile(r"[!-~]+")  # printable ASCII without spaces; unknown schemes are skipped, not trusted
_SIGNATURE = re.compile(r"[0-9a-f]{64}")  # what sign() emits: lowercase hex SHA-256


class SignatureError(ValueError):
    """The delivery must be rejected; ``reason`` says why (safe to log, holds no secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_secret() -> str:
    """A fresh endpoint secret; the prefix makes leaked secrets recognisable to secret scanners."""
    return SECRET_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Checkout-Signature`` header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    if not secret:
        raise ValueError("empty webhook secret")
    if timestamp < 0:
        raise ValueError("negative timestamp")
    return f"t={timestamp},{SCHEME}={_mac(secret, body, timestamp)}"


def sign_all(secrets: Sequence[str], body: bytes, timestamp: int) -> str:
    """``sign`` with one ``v1`` per secret: during a rotation both the new and the previous
    secret sign, so a receiver holding either keeps verifying."""
    if not secrets:
        raise ValueError("no webhook secret to sign with")
    header = sign(secrets[0], body, timestamp)
    return header + "".join(f",{SCHEME}={_mac(secret, body, timestamp)}" for secret in secrets[1:] if secret)


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > _MAX_HEADER_LENGTH:
        raise SignatureError("header too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        # Whitespace around items is tolerated (proxies and hand-written clients add it);
        # anything else out of shape is refused rather than guessed at.
        if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise SignatureError(f"malformed header item {item.strip()[:40]!r}")
        if key == "t":
            if timestamp is not None:
                raise SignatureError("duplicate t")  # ambiguous: which one did the MAC cover?
            if not _TIMESTAMP.fullmatch(value):
                raise SignatureError("malformed timestamp")
            timestamp = int(value)
        elif key == SCHEME:
            if not _SIGNATURE.fullmatch(value):
                raise SignatureError("malformed v1 signature")
            signatures.append(value)
        # Other schemes (v0, a future v2, ...) are ignored so senders can add schemes without
        # breaking receivers; they never count towards verification.
    if timestamp is None:
        raise SignatureError("missing t")
    if not signatures:
        raise SignatureError("missing v1")
    return timestamp, signatures


def verify(
    secret: str | Sequence[str],
    body: bytes,
    header: str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> None:
    """Raise ``SignatureError`` unless ``header`` is a fresh, valid signature of ``body``.

    ``secret`` may be several secrets (rotation); any ``v1`` matching any secret passes.
    """
    keys = [secret] if isinstance(secret, str) else list(secret)
    if not keys or not all(keys):
        raise ValueError("no webhook secret to verify with")  # configuration bug, not a bad request
    if tolerance_seconds < 0:
        raise ValueError("negative tolerance")
    timestamp, signatures = _parse(header)
    current = int(time.time()) if now is None else now
    # Both directions: a far-future t would otherwise stay "fresh" for as long as it likes.
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("timestamp outside tolerance")
    expected = [_mac(key, body, timestamp).encode() for key in keys]
    # Compare every pair without short-circuiting: timing must not reveal how close a guess was.
    matched = False
    for candidate in signatures:
        for mac in expected:
            matched |= hmac.compare_digest(mac, candidate.encode())
    if not matched:
        raise SignatureError("no matching v1 signature")
