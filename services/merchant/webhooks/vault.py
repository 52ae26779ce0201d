"""Webhook signing secrets at rest: encrypted with a key from configuration, outside the event
store.

A secret is shown to the merchant once and must sign every delivery, so it has to be kept, but
the event store is immutable and its events are published on JetStream to every service: a
secret there could never be taken back. Events carry a reference (`secret_ref`) instead; the
secret itself is a row of `webhook_secrets` (merchant schema), sealed with Fernet (AES-128-CBC
plus HMAC-SHA256, authenticated) under `CHECKOUT_WEBHOOK_SECRET_KEYS`. Several keys may be
configured, newest first: the newest seals, any of them opens (MultiFernet), so a key is rotated
by putting a new one in front and retired once nothing sealed under it is left.

The API seals (when an endpoint is created or its secret rotated); only the delivery worker
opens. `webhook_secrets` is not a read model: no event describes its rows, so a rebuild of the
read models leaves it alone.

Events written before references existed hold the plaintext secret. Their endpoints keep signing:
the projection points such an endpoint at the event itself (its id is the reference) and
`reveal` reads the secret from there, an upcast on read. Those old events still hold the old
secrets; rotating the endpoint's secret replaces them (see the README).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from libs.common.config import ConfigError
from libs.common.db import Connection
from services.merchant.webhooks import repository

KEYS_VARIABLE = "CHECKOUT_WEBHOOK_SECRET_KEYS"


def _fernet(key: str, position: int) -> Fernet:
    try:
        if len(base64.urlsafe_b64decode(key.encode())) != 32:
            raise ValueError
        return Fernet(key.encode())
    except (ValueError, binascii.Error):
        raise ConfigError(
            f"{KEYS_VARIABLE}: key {position + 1} is not a Fernet key (32 url-safe base64 bytes; "
            'make one with: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())")'
        ) from None


class SecretVault:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError(
                f"{KEYS_VARIABLE} is required by the merchant service: the key(s) webhook signing "
                "secrets are encrypted with, comma-separated, newest first"
            )
        self._box = MultiFernet([_fernet(key, i) for i, key in enumerate(keys)])

    async def seal(
        self, conn: Connection, *, ref: uuid.UUID, endpoint_id: uuid.UUID, merchant_id: uuid.UUID, secret: str
    ) -> None:
        """Stores `secret` under `ref`, encrypted with the newest key, in the caller's transaction
        (the one that appends the event naming `ref`)."""
        ciphertext = self._box.encrypt(secret.encode())
        await repository.add_secret(conn, ref, endpoint_id, merchant_id, ciphertext, dt.datetime.now(dt.UTC))

    async def reveal(self, conn: Connection, refs: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The secrets behind `refs` that can be read: sealed ones decrypted, legacy ones from the
        event that holds them. A ref that resolves to nothing (or does not decrypt with any
        configured key) is left out, and the caller signs with what is left."""
        found: dict[uuid.UUID, str] = {}
        sealed = await repository.sealed_secrets(conn, refs)
        for ref, ciphertext in sealed.items():
            try:
                found[ref] = self._box.decrypt(ciphertext).decode()
            except InvalidToken:
                continue  # sealed under a key no longer configured: reported by the caller
        legacy = [ref for ref in refs if ref not in sealed]
        if legacy:
            found.update(await repository.legacy_secrets(conn, legacy))
        return found
