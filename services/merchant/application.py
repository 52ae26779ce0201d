"""Merchant use cases: load, decide, append (with inline read models), answer with plain values.

Requests are the frozen dataclasses of requests.py (or a few strings), answers the views of
views.py; grpc_api.py is the one place that maps them to and from protobuf. An idempotent
command's answer is kept as its message's bytes (messages.py), as before views existed."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from libs.common import apikeys, cache, context, ids
from libs.common.commandlog import Commands
from libs.common.db import Connection
from libs.common.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from libs.common.eventstore import Repository, StoredEvent, utcnow
from libs.common.limits import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from libs.common.service import Runtime
from libs.common.shardmap import slot_for_email, slot_for_merchant
from libs.common.views import Page
from services.merchant import projections, repository, views
from services.merchant.domain import ApiKey, Merchant, normalized_email
from services.merchant.messages import CREATED_KEY_REPLY, MERCHANT_REPLY
from services.merchant.requests import KeyUse, MerchantChange, NewApiKey, NewMerchant


def parse_uuid(raw: str, field: str) -> uuid.UUID:
    value = ids.parse_id(raw)
    if value is None:
        raise InvalidArgument.field(field, "must be a UUID")
    return value


class MerchantApp:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        every = runtime.config.snapshot_every
        self.merchants = Repository(runtime.store, Merchant, every)
        self.keys = Repository(runtime.store, ApiKey, every)

    async def _save(self, conn: Connection, aggregate: Merchant | ApiKey) -> list[StoredEvent]:
        repo: Any = self.merchants if isinstance(aggregate, Merchant) else self.keys
        stored: list[StoredEvent] = await repo.save(conn, aggregate)
        for event in stored:
            await projections.apply(conn, event)
        return stored

    def _scope(self, command: str) -> str:
        return f"{context.current().actor}:{command}"

    async def claim_contact_email(self, raw_merchant_id: str, contact_email: str) -> str:
        """The claim on the email slot's shard (libs/common/placement.py explains why): the id of
        the merchant that holds it (this one, or the one that claimed it first)."""
        merchant_id = _merchant_id(raw_merchant_id)
        email = normalized_email(contact_email)
        if email is None:
            raise InvalidArgument.field("contact_email", "must be an email address")
        slot = slot_for_email(email)
        pool = self.rt.shard_pool(self.rt.shard_map.shard_for_slot(slot))
        claimed = await repository.claim_email(pool, email, merchant_id, slot)
        return str(claimed)

    async def create_merchant(self, request: NewMerchant) -> views.Merchant:
        """Creates the merchant on the shard its id routes to, which is the email slot's shard
        unless tiered placement put it on another: then the email is claimed first (the gateway
        has claimed it already when this instance does not serve the email's shard)."""
        merchant_id = _merchant_id(request.merchant_id)
        pool = self.rt.pool_for(merchant_id)
        shard = self.rt.shard_of(merchant_id)
        email = normalized_email(request.contact_email)
        email_slot = slot_for_email(request.contact_email)
        email_shard = self.rt.shard_map.shard_for_slot(email_slot)
        if email is not None and email_shard != shard and email_shard in self.rt.shards:
            claimed = await repository.claim_email(self.rt.pools[email_shard], email, merchant_id, email_slot)
            if claimed != merchant_id:
                raise AlreadyExists("a merchant with this contact_email already exists")

        async def handle(conn: Connection) -> views.Merchant:
            merchant = Merchant.create(
                merchant_id,
                business_name=request.business_name,
                contact_email=request.contact_email,
                plan_type=request.plan_type,
                settings=request.settings,
                wallets=request.wallets,
                now=utcnow(),
            )
            # Claim and merchant in one transaction, when they share the shard (the default).
            if email_shard == shard and (
                await repository.claim_email(conn, merchant.contact_email, merchant_id, email_slot)
                != merchant_id
            ):
                raise AlreadyExists("a merchant with this contact_email already exists")
            if await repository.email_taken(conn, merchant.contact_email):
                raise AlreadyExists(
                    "a merchant with this contact_email already exists",
                )
            try:
                await self._save(conn, merchant)
            except asyncpg.UniqueViolationError:
                raise AlreadyExists("a merchant with this contact_email already exists") from None
            row = await repository.merchant(conn, merchant_id)
            assert row is not None
            return views.merchant(row, shard)

        return await Commands.run(
            pool, self._scope("CreateMerchant"), handle, MERCHANT_REPLY.encode, MERCHANT_REPLY.decode
        )

    async def get_merchant(self, raw_merchant_id: str) -> views.Merchant:
        merchant_id = ids.parse_id(raw_merchant_id)
        row = await repository.merchant(self.rt.pool_for(merchant_id), merchant_id) if merchant_id else None
        if row is None or merchant_id is None:
            raise NotFound("merchant not found")
        return views.merchant(row, self.rt.shard_of(merchant_id))

    async def update_merchant(self, request: MerchantChange) -> views.Merchant:
        merchant_id = ids.parse_id(request.merchant_id)
        if merchant_id is None:
            raise NotFound("merchant not found")
        pool = self.rt.pool_for(merchant_id)

        async def handle(conn: Connection) -> views.Merchant:
            merchant = await self.merchants.get(conn, merchant_id)
            if merchant is None:
                raise NotFound("merchant not found")
            merchant.update(
                business_name=request.business_name,
                settings=request.settings,
                wallets=request.wallets,
                now=utcnow(),
            )
            await self._save(conn, merchant)
            row = await repository.merchant(conn, merchant_id)
            assert row is not None
            return views.merchant(row, self.rt.shard_of(merchant_id))

        result = await Commands.run(
            pool, self._scope("UpdateMerchant"), handle, MERCHANT_REPLY.encode, MERCHANT_REPLY.decode
        )
        await self.rt.cache.invalidate(cache.merchant_key(str(merchant_id)))
        return result

    async def list_merchants(self, limit: int, cursor: str) -> Page[views.Merchant]:
        limit = limit or PAGE_LIMIT_DEFAULT
        if not 1 <= limit <= PAGE_LIMIT_MAX:
            raise InvalidArgument.field("limit", f"must be between 1 and {PAGE_LIMIT_MAX}")
        before = ids.parse_id(cursor) if cursor else None
        if cursor and before is None:
            raise InvalidArgument.field("cursor", "is not a cursor this service issued")
        rows: list[tuple[asyncpg.Record, int]] = []
        for shard, pool in self.rt.pools.items():
            rows += [(r, shard) for r in await repository.merchants_before(pool, before, limit + 1)]
        rows.sort(key=lambda pair: pair[0]["id"], reverse=True)
        page = rows[:limit]
        return Page(
            tuple(views.merchant(r, s) for r, s in page),
            str(page[-1][0]["id"]) if len(rows) > limit else "",
        )

    async def create_api_key(self, request: NewApiKey) -> views.CreateApiKeyResponse:
        merchant_id = ids.parse_id(request.merchant_id)
        if merchant_id is None:
            raise NotFound("merchant not found")
        pool = self.rt.pool_for(merchant_id)
        key_id = ids.new_id(ids.slot_of(merchant_id))

        async def handle(conn: Connection) -> views.CreateApiKeyResponse:
            if await repository.merchant(conn, merchant_id) is None:
                raise NotFound("merchant not found")
            key, plaintext = ApiKey.issue(
                key_id,
                merchant_id=merchant_id,
                name=request.name,
                key_type=request.key_type,
                permissions=None if request.permissions is None else list(request.permissions),
                held=await self._held_by_grantor(conn, merchant_id, request),
                expires_at=request.expires_at,
                now=utcnow(),
            )
            await self._save(conn, key)
            row = await repository.api_key(conn, key_id)
            assert row is not None
            return views.CreateApiKeyResponse(api_key=views.api_key(row), key=plaintext)

        return await Commands.run(
            pool, self._scope("CreateApiKey"), handle, _without_plaintext, CREATED_KEY_REPLY.decode
        )

    async def _held_by_grantor(
        self, conn: Connection, merchant_id: uuid.UUID, request: NewApiKey
    ) -> frozenset[str] | None:
        """What the grantor of a new key holds (None: the operator, who holds everything), read
        from this service's records rather than taken from the caller, and narrowed to what its
        key type may hold."""
        if request.operator is None and request.granting_api_key_id is None:
            raise InvalidArgument.field("grantor", "is required: operator or granting_api_key_id")
        if request.operator is not None:
            if not request.operator:
                raise InvalidArgument.field("operator", "must be true when set")
            return None
        granting_id = ids.parse_id(request.granting_api_key_id or "")
        row = await repository.active_key(conn, merchant_id, granting_id) if granting_id else None
        if row is None:
            raise PermissionDenied("the granting API key is not an active key of this merchant")
        return frozenset(
            p for p in row["permissions"] if apikeys.allows(row["key_type"], set(row["permissions"]), p)
        )

    async def list_api_keys(self, raw_merchant_id: str) -> tuple[views.ApiKey, ...]:
        merchant_id = ids.parse_id(raw_merchant_id)
        if merchant_id is None:
            raise NotFound("merchant not found")
        rows = await repository.api_keys_of(self.rt.pool_for(merchant_id), merchant_id)
        return tuple(views.api_key(r) for r in rows)

    async def revoke_api_key(self, raw_merchant_id: str, raw_key_id: str) -> views.ApiKey:
        merchant_id, key_id = ids.parse_id(raw_merchant_id), ids.parse_id(raw_key_id)
        if merchant_id is None or key_id is None:
            raise NotFound("API key not found")
        pool = self.rt.pool_for(key_id)
        async with pool.acquire() as conn, conn.transaction():
            key = await self.keys.get(conn, key_id)
            if key is None or key.merchant_id != str(merchant_id):
                raise NotFound("API key not found")
            key.revoke(utcnow())
            await self._save(conn, key)
            row = await repository.api_key(conn, key_id)
        assert row is not None
        return views.api_key(row)

    async def verify_api_key(self, key: str) -> views.VerifyApiKeyResponse:
        key_id = apikeys.key_id_of(key)
        if key_id is None:
            raise Unauthenticated("invalid API key")
        pool = self.rt.pool_for(key_id)
        row = await repository.active_key_by_hash(pool, apikeys.hash_key(key))
        if row is None or row["id"] != key_id:
            raise Unauthenticated("invalid, revoked or expired API key")
        # No write here: the gateway reports use in batches (TouchApiKeys).
        return views.VerifyApiKeyResponse(api_key=views.api_key(row), plan_type=row["plan_type"])

    async def touch_api_keys(self, uses: Sequence[KeyUse]) -> int:
        """Records when keys were last used; keys of shards served elsewhere, or unknown ids,
        are skipped (a use report is advice, not a command)."""
        by_shard: dict[int, list[tuple[uuid.UUID, dt.datetime]]] = {}
        for use in uses:
            key_id = ids.parse_id(use.api_key_id)
            if key_id is None or use.used_at is None:
                continue
            shard = self.rt.shard_of(key_id)
            if shard in self.rt.shards:
                by_shard.setdefault(shard, []).append((key_id, use.used_at))
        touched = 0
        for shard, times in by_shard.items():
            touched += await repository.touch_keys(self.rt.pools[shard], times)
        return touched


def _merchant_id(raw: str) -> uuid.UUID:
    """A merchant id: its FNV-1a hash lands in the slot it carries (the seed's routing rule)."""
    merchant_id = parse_uuid(raw, "merchant_id")
    if slot_for_merchant(merchant_id) != ids.slot_of(merchant_id):
        raise InvalidArgument.field("merchant_id", "must be minted as a merchant id (ids.new_merchant_id_in)")
    return merchant_id


def _without_plaintext(answer: views.CreateApiKeyResponse) -> bytes:
    # Only the hash of a key is ever stored, so a replayed create returns the key's record with
    # an empty `key`: the plaintext was shown once, to the first response.
    return CREATED_KEY_REPLY.encode(replace(answer, key=""))
