"""API keys verified once, then served from memory until revoked, expired or stale.

A key's first request asks the merchant service (VerifyApiKey); later ones are answered here,
keyed by the key's SHA-256 so no plaintext is kept. A dashboard session, which keeps only that
SHA-256, is re-verified from the merchant service's record of the key (ListApiKeys) when its
entry is not in memory. An entry is dropped
- at once by the gateway that serves the key's revocation,
- at once on every other replica, told by the one that served the revoke, and in any case when
  it hears the merchant service's `api_key.revoked` event on NATS (listener.py; a reconnect
  drops everything: an event may have been missed),
- at the key's own `expires_at`, checked on every use,
- and after CHECKOUT_API_KEY_CACHE_SECONDS in any case, the safety net for a lost event.

`last_used_at` is collected here and written in one TouchApiKeys call per shard every
CHECKOUT_API_KEY_TOUCH_SECONDS, not once per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from checkout.merchant.v1 import merchant_pb2
from prometheus_client import Counter

from libs.common import apikeys, ids
from services.gateway.clients import Backends
from services.gateway.context import CallContext
from services.gateway.errors import ApiError
from services.gateway.wire import to_timestamp

log = logging.getLogger("checkout.gateway.keys")

LOOKUPS = Counter(
    "gateway_api_key_cache_lookups_total", "API key verifications, by where they were answered.", ["result"]
)
_HITS = LOOKUPS.labels("cache")
DROPS = Counter("gateway_api_key_cache_drops_total", "Cached API keys dropped, by why.", ["reason"])
MAX_ENTRIES = 50_000
# The merchant service's failures that mean "the key is fine, the platform is not".
OUTAGE = ("unavailable", "deadline_exceeded", "internal", "rate_limited")


@dataclass(frozen=True)
class VerifiedKey:
    key_id: uuid.UUID
    merchant_id: uuid.UUID
    key_type: str
    permissions: frozenset[str]
    plan: str
    expires_at: float | None  # Unix time
    good_until: float  # monotonic: when the entry must be verified again


@dataclass
class KeyCache:
    backends: Backends
    ttl_seconds: float
    touch_seconds: float
    clock: Callable[[], float] = time.monotonic
    _by_hash: dict[str, VerifiedKey] = field(default_factory=dict)
    _hash_of: dict[uuid.UUID, str] = field(default_factory=dict)
    _inflight: dict[str, asyncio.Future[VerifiedKey | None]] = field(default_factory=dict)
    _used: dict[uuid.UUID, float] = field(default_factory=dict)

    # -- verification ----------------------------------------------------------------------------
    def cached(self, token: str) -> VerifiedKey | None:
        """The key behind `token` if it is in memory and still good; no I/O."""
        return self.cached_digest(apikeys.hash_key(token))

    def cached_digest(self, digest: str) -> VerifiedKey | None:
        """The same, by the key's SHA-256 (what a dashboard session keeps instead of the key)."""
        entry = self._by_hash.get(digest)
        if entry is None:
            return None
        if entry.good_until > self.clock() and not _expired(entry):
            _HITS.inc()
            self._used[entry.key_id] = time.time()
            return entry
        self._drop(digest, "expired" if _expired(entry) else "stale")
        return None

    async def verify(self, token: str, request_id: str) -> VerifiedKey | None:
        """The key behind `token`, asked of the merchant service, or None when it is not a valid
        active key. Raises ApiError when the service cannot say (an outage is not the caller's
        fault, and must not read as "invalid key")."""
        return await self._verified(apikeys.hash_key(token), lambda: self._ask(token, request_id))

    async def verify_known(
        self, digest: str, key_id: uuid.UUID, merchant_id: uuid.UUID, request_id: str
    ) -> VerifiedKey | None:
        """A key verified before, known by its SHA-256, id and merchant (a dashboard session's:
        the key itself is not kept), as it stands now: from memory, else from the merchant
        service's record of it. None once it is revoked, expired or gone."""
        return await self._verified(digest, lambda: self._ask_record(key_id, merchant_id, request_id))

    async def _verified(
        self, digest: str, ask: Callable[[], Awaitable[VerifiedKey | None]]
    ) -> VerifiedKey | None:
        entry = self.cached_digest(digest)
        if entry is not None:
            return entry
        waiting = self._inflight.get(digest)
        if waiting is not None:
            # One VerifyApiKey for a burst of first requests with the same key.
            return await asyncio.shield(waiting)
        future: asyncio.Future[VerifiedKey | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            entry = await ask()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(entry)
        finally:
            del self._inflight[digest]
        LOOKUPS.labels("service" if entry else "refused").inc()
        if entry is not None:
            self._store(digest, entry)
            self._used[entry.key_id] = time.time()
        return entry

    async def _ask(self, token: str, request_id: str) -> VerifiedKey | None:
        key_id = apikeys.key_id_of(token)
        if key_id is None:
            return None
        backends = self.backends
        stub = backends.merchants(backends.shard_of(key_id))  # the key id carries its merchant's slot
        try:
            response = await backends.call(
                stub.VerifyApiKey,
                merchant_pb2.VerifyApiKeyRequest(key=token),
                CallContext(request_id, "anonymous"),
            )
        except ApiError as error:
            if error.code in OUTAGE:
                raise
            return None
        key = response.api_key
        merchant_id = ids.parse_id(key.merchant_id)
        if merchant_id is None or ids.parse_id(key.id) != key_id or key.status in ("revoked", "expired"):
            return None
        return self._entry(key_id, merchant_id, key, response.plan_type)

    async def _ask_record(
        self, key_id: uuid.UUID, merchant_id: uuid.UUID, request_id: str
    ) -> VerifiedKey | None:
        backends = self.backends
        stub = backends.merchants(backends.shard_of(merchant_id))
        context = CallContext(request_id, "gateway")
        try:
            listed = await backends.call(
                stub.ListApiKeys, merchant_pb2.ListApiKeysRequest(merchant_id=str(merchant_id)), context
            )
            merchant = await backends.call(
                stub.GetMerchant, merchant_pb2.GetMerchantRequest(merchant_id=str(merchant_id)), context
            )
        except ApiError as error:
            if error.code in OUTAGE:
                raise
            return None
        key = next((k for k in listed.api_keys if k.id == str(key_id)), None)
        if key is None or key.status in ("revoked", "expired"):
            return None
        entry = self._entry(key_id, merchant_id, key, merchant.plan_type)
        return None if _expired(entry) else entry

    def _entry(
        self, key_id: uuid.UUID, merchant_id: uuid.UUID, key: merchant_pb2.ApiKey, plan: str
    ) -> VerifiedKey:
        expires_at = key.expires_at.ToDatetime(tzinfo=UTC).timestamp() if key.HasField("expires_at") else None
        return VerifiedKey(
            key_id=key_id,
            merchant_id=merchant_id,
            key_type=key.key_type,
            permissions=frozenset(key.permissions),
            plan=plan or "free",
            expires_at=expires_at,
            good_until=self.clock() + self.ttl_seconds,
        )

    def _store(self, digest: str, entry: VerifiedKey) -> None:
        if len(self._by_hash) >= MAX_ENTRIES:
            oldest = next(iter(self._by_hash))
            self._drop(oldest, "evicted")
        self._by_hash[digest] = entry
        self._hash_of[entry.key_id] = digest

    def _drop(self, digest: str, reason: str) -> None:
        entry = self._by_hash.pop(digest, None)
        if entry is not None:
            self._hash_of.pop(entry.key_id, None)
            DROPS.labels(reason).inc()

    # -- revocation -------------------------------------------------------------------------------
    def revoked(self, key_id: uuid.UUID) -> None:
        digest = self._hash_of.get(key_id)
        if digest is not None:
            self._drop(digest, "revoked")

    def clear(self, reason: str) -> None:
        for digest in list(self._by_hash):
            self._drop(digest, reason)

    def __len__(self) -> int:
        return len(self._by_hash)

    # -- last_used_at -----------------------------------------------------------------------------
    async def flush_touches(self) -> None:
        """One TouchApiKeys per shard with the keys used since the last flush."""
        used, self._used = self._used, {}
        by_shard: dict[int, list[merchant_pb2.KeyUse]] = {}
        for key_id, at in used.items():
            use = merchant_pb2.KeyUse(
                api_key_id=str(key_id), used_at=to_timestamp(datetime.fromtimestamp(at, UTC))
            )
            by_shard.setdefault(self.backends.shard_of(key_id), []).append(use)
        for shard, uses in by_shard.items():
            try:
                await self.backends.call(
                    self.backends.merchants(shard).TouchApiKeys,
                    merchant_pb2.TouchApiKeysRequest(uses=uses),
                    CallContext(str(uuid.uuid4()), "gateway"),
                )
            except ApiError as error:
                # Put them back for the next round; a later use of the same key wins.
                for use in uses:
                    key_id = uuid.UUID(use.api_key_id)
                    self._used.setdefault(key_id, used[key_id])
                log.warning("could not record API key use on shard %d: %s", shard, error.message)

    async def touch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.touch_seconds)
            await self.flush_touches()


def _expired(entry: VerifiedKey) -> bool:
    return entry.expires_at is not None and entry.expires_at <= time.time()
