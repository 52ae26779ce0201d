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
# One permission per kind of operation: cancelling an invoice is not creating one.
PERMISSIONS = (
    "merchants:read",
    "merchants:write",
    "api_keys:read",
    "api_keys:write",
    "invoices:read",
    "invoices:write",
    "invoices:cancel",
    # Keys issued before refunds existed do not gain it: a merchant grants it to a key it means to.
    "refunds:write",
    "customers:read",
    "analytics:read",
    "webhooks:read",
    "webhooks:write",
)
# What a key of each type may ever hold. A publishable key sits in a web page, where anyone can
# read it: it may create invoices, nothing else. Checked when a key is issued (merchant service)
# and on every request (gateway), so a key issued before a narrowing is narrowed too.
ALLOWED_PERMISSIONS: dict[str, frozenset[str]] = {
    "secret": frozenset(PERMISSIONS),
    "publishable": frozenset({"invoices:write"}),
}
DEFAULT_PERMISSIONS = {"secret": PERMISSIONS, "publishable": ("invoices:write",)}
# The catalogue revision an ApiKeyCreated event's permission list was written against (its
# `permissions_revision`). 0: before `invoices:cancel` existed, when `invoices:write` also
# cancelled; `upcast` reads such lists in today's terms.
PERMISSIONS_REVISION = 1


def allows(key_type: str, held: frozenset[str] | set[str], permission: str) -> bool:
    """Whether a key of `key_type` holding `held` may do what `permission` guards."""
    return permission in held and permission in ALLOWED_PERMISSIONS.get(key_type, frozenset())


def upcast(key_type: str, permissions: list[str], revision: int) -> list[str]:
    """A stored permission list in the current catalogue's terms: a secret key that held
    `invoices:write` before cancelling had its own permission keeps cancelling."""
    granted = list(permissions)
    if (
        revision < 1
        and key_type == "secret"
        and "invoices:write" in granted
        and "invoices:cancel" not in granted
    ):
        granted.append("invoices:cancel")
    return granted


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
