"""`Idempotency-Key` on POST: the key and a fingerprint of the request, for the services.

The services store the first result under the key and replay it; the fingerprint lets them tell
a genuine retry from a reused key with another body (409). Canonical JSON makes the fingerprint
independent of key order and whitespace, which clients do not keep stable across retries. A
replayed answer carries `Idempotent-Replayed: true` (as Stripe's does).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from starlette.requests import Request

from services.gateway.context import CallContext, consistency_of, request_id_of
from services.gateway.errors import ApiError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"


def canonical_json(body: object) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def request_hash(method: str, path: str, body: object) -> str:
    text = f"{method.upper()} {path}\n{canonical_json(body)}"
    return hashlib.sha256(text.encode()).hexdigest()


def validate_key(raw: str | None) -> str | None:
    """The header's value, or None when absent; it travels as gRPC metadata, so ASCII only."""
    if raw is None:
        return None
    if not raw or len(raw) > MAX_KEY_LENGTH or not raw.isascii() or not raw.isprintable():
        raise ApiError.invalid(HEADER, f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return raw


def call_context(request: Request, actor: str, raw_body: bytes) -> CallContext:
    """The call context of a POST, carrying the idempotency key and fingerprint when sent."""
    key = validate_key(request.headers.get(HEADER))
    context = CallContext(request_id_of(request), actor, consistency=consistency_of(request))
    if key is None:
        return context
    # The body was validated already; an empty one (a cancel without a reason) reads as {}.
    body = json.loads(raw_body) if raw_body.strip() else {}
    fingerprint = request_hash(request.method, request.url.path, body)
    return replace(context, idempotency_key=key, idempotency_hash=fingerprint)
