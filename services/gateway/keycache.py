"""API keys verified once, then served from memory until revoked, expired or stale.

A key's first request asks the merchant service (VerifyApiKey); later ones are answered here,
keyed by the key's SHA-256 so no plaintext is kept. An entry is dropped
- at once by the gateway that serves the key's revocation,
- within milliseconds on every other replica, which hears the merchant service's
  `api_key.revoked` event on NATS (a reconnect drops everything: an event may have been missed),
- at the key's own `expires_at`, checked on every use,
- and after CHECKOUT_API_KEY_CACHE_SECONDS in any case, the safety net for a lost event.

`last_used_at` is collected here and written in one TouchApiKeys call per shard every
CHECKOUT_API_KEY_TOUCH_SECONDS, not once per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import nats
import orjson
from checkout.merchant.v1 import merchant_pb2
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
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
        digest = hashlib.sha256(token.encode()).hexdigest()
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
        entry = self.cached(token)
        if entry is not None:
            return entry
        digest = hashlib.sha256(token.encode()).hexdigest()
        waiting = self._inflight.get(digest)
        if waiting is not None:
            # One VerifyApiKey for a burst of first requests with the same key.
            return await asyncio.shield(waiting)
        future: asyncio.Future[VerifiedKey | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            entry = await self._ask(token, request_id)
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
        expires_at = key.expires_at.ToDatetime(tzinfo=UTC).timestamp() if key.HasField("expires_at") else None
        return VerifiedKey(
            key_id=key_id,
            merchant_id=merchant_id,
            key_type=key.key_type,
            permissions=frozenset(key.permissions),
            plan=response.plan_type or "free",
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


class RevocationListener:
    """Hears revocations on NATS and drops the key here: the merchant service's `api_key.revoked`
    events (the record of every revocation), and the notice a gateway replica sends its peers
    the moment it has served one, which beats the event's trip through the outbox relay."""

    def __init__(self, cache: KeyCache, nats_url: str, subject_prefix: str) -> None:
        self.cache = cache
        self.nats_url = nats_url
        self.subject = f"{subject_prefix}.*.api_key.revoked"
        # Outside the event stream's subjects (`<prefix>.>`): a notice between replicas, not an event.
        self.peer_subject = f"checkout-gateway.{subject_prefix}.api_key.revoked"
        self.nc: NatsClient | None = None
        self.subscribed = asyncio.Event()
        self._closing = False

    async def run(self) -> None:
        delay = 0.5
        while self.nc is None:
            try:
                self.nc = await nats.connect(
                    self.nats_url,
                    name="checkout-gateway",
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                )
            except (OSError, TimeoutError, nats.errors.Error) as error:
                log.warning("NATS unreachable (%s); API keys are re-verified after %.0fs meanwhile",
                            error, self.cache.ttl_seconds)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await self.nc.subscribe(self.subject, cb=self._on_revoked)
        await self.nc.subscribe(self.peer_subject, cb=self._on_peer_notice)
        await self.nc.flush()
        self.subscribed.set()

    async def tell_peers(self, key_id: uuid.UUID) -> None:
        """Tells every other replica, before this one answers the revoke; without NATS the
        merchant service's event (or the cache's TTL) still gets there."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            return
        try:
            await nc.publish(self.peer_subject, key_id.bytes)
            await nc.flush(timeout=1)
        except (nats.errors.Error, TimeoutError, OSError) as error:
            log.warning("could not tell the other gateways of a revoked key: %s", error)

    async def _on_peer_notice(self, msg: Msg) -> None:
        try:
            self.cache.revoked(uuid.UUID(bytes=msg.data))
        except ValueError:
            log.warning("unreadable revocation notice on %s", msg.subject)

    async def _on_revoked(self, msg: Msg) -> None:
        try:
            key_id = uuid.UUID(orjson.loads(msg.data)["data"]["api_key_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable api_key.revoked event on %s", msg.subject)
            return
        self.cache.revoked(key_id)

    async def _disconnected(self) -> None:
        if self._closing:
            return
        log.warning("NATS connection lost; cached API keys will be dropped on reconnect")

    async def _reconnected(self) -> None:
        # A revocation may have gone by while we were away.
        self.cache.clear("reconnected")

    async def close(self) -> None:
        self._closing = True
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.close()
