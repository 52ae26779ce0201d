"""API key format: `ck_<type>_<key id, 32 hex>_<secret>`.

The key id inside the plaintext carries the merchant's slot (ids.py), so the gateway routes a
key to its shard before any lookup; only the SHA-256 of the whole key is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

KEY_TYPES = {"secret": "sk", "publishable": "pk"}
PERMISSIONS = (
    "merchants:read",
    "merchants:write",
    "api_keys:read",
    "api_keys:write",
    "invoices:read",
    "invoices:write",
    "customers:read",
    "analytics:read",
    "webhooks:read",
    "webhooks:write",
)
# A publishable key sits in a web page: it may create invoices, nothing else.
DEFAULT_PERMISSIONS = {"secret": PERMISSIONS, "publishable": ("invoices:write",)}
_KEY_RE = re.compile(r"^ck_(sk|pk)_([0-9a-f]{32})_([A-Za-z0-9_-]{32,64})$")


def mint(key_id: uuid.UUID, key_type: str) -> str:
    return f"ck_{KEY_TYPES[key_type]}_{key_id.hex}_{secrets.token_urlsafe(32)}"


def key_id_of(plaintext: str) -> uuid.UUID | None:
    match = _KEY_RE.match(plaintext)
    return uuid.UUID(hex=match.group(2)) if match else None


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def prefix_of(plaintext: str) -> str:
    return plaintext[:14]
