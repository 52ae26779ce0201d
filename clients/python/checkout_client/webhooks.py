"""Verifying a webhook delivery: `Checkout-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>[,v1=...]`, as the merchant service signs it (one `v1` per active secret while
a secret is rotated). Standard library only.

Use the raw request body exactly as received (re-serialised JSON has other bytes) and the whole
secret, `whsec_` prefix included; then de-duplicate on `Checkout-Event-Id` (retries deliver the
same event again)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence

SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300

# Bounds keep parsing cheap on hostile input; a real header is well under 1 KiB even with a
# few rotated signatures.
_MAX_HEADER_LENGTH = 4096
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() would also take "1_0", "٣", "+1"
_KEY = re.compile(r"[A-Za-z0-9_]+")
_VALUE = re.compile(r"[!-~]+")  # printable ASCII without spaces; unknown schemes are skipped, not trusted
_SIGNATURE = re.compile(r"[0-9a-f]{64}")  # what the sender emits: lowercase hex SHA-256


class WebhookSignatureError(ValueError):
    """The delivery must be rejected; `reason` says why (safe to log, holds no secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def mac(secret: str, body: bytes, timestamp: int) -> str:
    """The `v1` value: hex HMAC-SHA256 of `"<timestamp>." + body` under the secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > _MAX_HEADER_LENGTH:
        raise WebhookSignatureError("header too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        # Whitespace around items is tolerated (proxies and hand-written clients add it);
        # anything else out of shape is refused rather than guessed at.
        if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise WebhookSignatureError(f"malformed header item {item.strip()[:40]!r}")
        if key == "t":
            if timestamp is not None:
                raise WebhookSignatureError("duplicate t")  # ambiguous: which one did the MAC cover?
            if not _TIMESTAMP.fullmatch(value):
                raise WebhookSignatureError("malformed timestamp")
            timestamp = int(value)
        elif key == SCHEME:
            if not _SIGNATURE.fullmatch(value):
                raise WebhookSignatureError("malformed v1 signature")
            signatures.append(value)
        # Other schemes (v0, a future v2, ...) are ignored so senders can add schemes without
        # breaking receivers; they never count towards verification.
    if timestamp is None:
        raise WebhookSignatureError("missing t")
    if not signatures:
        raise WebhookSignatureError("missing v1")
    return timestamp, signatures


def verify_webhook(
    secret: str | Sequence[str],
    header: str,
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> None:
    """Raise `WebhookSignatureError` unless `header` is a fresh, valid signature of `body`.

    `secret` may be several secrets (the receiver's side of a rotation); any `v1` matching any
    of them passes. A timestamp further than `tolerance_seconds` from now, either way, is refused
    as a replay."""
    keys = [secret] if isinstance(secret, str) else list(secret)
    if not keys or not all(keys):
        raise ValueError("no webhook secret to verify with")  # configuration bug, not a bad request
    if tolerance_seconds < 0:
        raise ValueError("negative tolerance")
    timestamp, signatures = _parse(header)
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookSignatureError("timestamp outside tolerance")
    expected = [mac(key, body, timestamp).encode() for key in keys]
    # Compare every pair without short-circuiting: timing must not reveal how close a guess was.
    matched = False
    for candidate in signatures:
        for digest in expected:
            matched |= hmac.compare_digest(digest, candidate.encode())
    if not matched:
        raise WebhookSignatureError("no matching v1 signature")
