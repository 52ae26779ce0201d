"""Merchant use cases: load, decide, append (with inline read models), return API messages."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
from checkout.merchant.v1 import merchant_pb2 as pb

from libs.common import apikeys, cache, context, ids
from libs.common.commandlog import Commands
from libs.common.db import Connection
from libs.common.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from libs.common.eventstore import Repository, StoredEvent, utcnow
from libs.common.limits import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from libs.common.protoconv import plain, struct, timestamp
from libs.common.service import Runtime
from libs.common.shardmap import slot_for_email, slot_for_merchant
from services.merchant import projections, repository
from services.merchant.domain import ApiKey, Merchant, normalized_email


def merchant_message(row: asyncpg.Record, shard: int) -> pb.Merchant:
    return pb.Merchant(
        id=str(row["id"]),
        business_name=row["business_name"],
        contact_email=row["contact_email"],
        status=row["status"],
        plan_type=row["plan_type"],
        settings=struct(row["settings"]),
        wallets=row["wallets"],
        shard=shard,
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    )


def api_key_message(row: asyncpg.Record) -> pb.ApiKey:
    return pb.ApiKey(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        name=row["name"],
        key_type=row["key_type"],
        permissions=row["permissions"],
        status=row["status"],
        prefix=row["prefix"],
        expires_at=timestamp(row["expires_at"]),
        created_at=timestamp(row["created_at"]),
        last_used_at=timestamp(row["last_used_at"]),
    )


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

    async def claim_contact_email(self, request: pb.ClaimContactEmailRequest) -> pb.ClaimContactEmailResponse:
        """The claim on the email slot's shard (libs/common/placement.py explains why)."""
        merchant_id = _merchant_id(request.merchant_id)
        email = normalized_email(request.contact_email)
        if email is None:
            raise InvalidArgument.field("contact_email", "must be an email address")
        slot = slot_for_email(email)
        pool = self.rt.shard_pool(self.rt.shard_map.shard_for_slot(slot))
        claimed = await repository.claim_email(pool, email, merchant_id, slot)
        return pb.ClaimContactEmailResponse(merchant_id=str(claimed))

    async def create_merchant(self, request: pb.CreateMerchantRequest) -> pb.Merchant:
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

        async def handle(conn: Connection) -> pb.Merchant:
            merchant = Merchant.create(
                merchant_id,
                business_name=request.business_name,
                contact_email=request.contact_email,
                plan_type=request.plan_type,
                settings=plain(request.settings),
                wallets=dict(request.wallets),
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
            return merchant_message(row, shard)

        return await Commands.run(
            pool, self._scope("CreateMerchant"), handle, _encode, pb.Merchant.FromString
        )

    async def get_merchant(self, request: pb.GetMerchantRequest) -> pb.Merchant:
        merchant_id = ids.parse_id(request.merchant_id)
        row = await repository.merchant(self.rt.pool_for(merchant_id), merchant_id) if merchant_id else None
        if row is None or merchant_id is None:
            raise NotFound("merchant not found")
        return merchant_message(row, self.rt.shard_of(merchant_id))

    async def update_merchant(self, request: pb.UpdateMerchantRequest) -> pb.Merchant:
        merchant_id = ids.parse_id(request.merchant_id)
        if merchant_id is None:
            raise NotFound("merchant not found")
        pool = self.rt.pool_for(merchant_id)

        async def handle(conn: Connection) -> pb.Merchant:
            merchant = await self.merchants.get(conn, merchant_id)
            if merchant is None:
                raise NotFound("merchant not found")
            merchant.update(
                business_name=request.business_name if request.HasField("business_name") else None,
                settings=plain(request.settings) if request.replace_settings else None,
                wallets=dict(request.wallets) if request.replace_wallets else None,
                now=utcnow(),
            )
            await self._save(conn, merchant)
            row = await repository.merchant(conn, merchant_id)
            assert row is not None
            return merchant_message(row, self.rt.shard_of(merchant_id))

        result = await Commands.run(
            pool, self._scope("UpdateMerchant"), handle, _encode, pb.Merchant.FromString
        )
        await self.rt.cache.invalidate(cache.merchant_key(str(merchant_id)))
        return result

    async def list_merchants(self, request: pb.ListMerchantsRequest) -> pb.ListMerchantsResponse:
        limit = request.limit or PAGE_LIMIT_DEFAULT
        if not 1 <= limit <= PAGE_LIMIT_MAX:
            raise InvalidArgument.field("limit", f"must be between 1 and {PAGE_LIMIT_MAX}")
        before = ids.parse_id(request.cursor) if request.cursor else None
        if request.cursor and before is None:
            raise InvalidArgument.field("cursor", "is not a cursor this service issued")
        rows: list[tuple[asyncpg.Record, int]] = []
        for shard, pool in self.rt.pools.items():
            rows += [(r, shard) for r in await repository.merchants_before(pool, before, limit + 1)]
        rows.sort(key=lambda pair: pair[0]["id"], reverse=True)
        page = rows[:limit]
        return pb.ListMerchantsResponse(
            merchants=[merchant_message(r, s) for r, s in page],
            next_cursor=str(page[-1][0]["id"]) if len(rows) > limit else "",
        )

    async def create_api_key(self, request: pb.CreateApiKeyRequest) -> pb.CreateApiKeyResponse:
        merchant_id = ids.parse_id(request.merchant_id)
        if merchant_id is None:
            raise NotFound("merchant not found")
        pool = self.rt.pool_for(merchant_id)
        key_id = ids.new_id(ids.slot_of(merchant_id))

        async def handle(conn: Connection) -> pb.CreateApiKeyResponse:
            if await repository.merchant(conn, merchant_id) is None:
                raise NotFound("merchant not found")
            key, plaintext = ApiKey.issue(
                key_id,
                merchant_id=merchant_id,
                name=request.name,
                key_type=request.key_type,
                permissions=None if request.use_default_permissions else list(request.permissions),
                held=await self._held_by_grantor(conn, merchant_id, request),
                expires_at=request.expires_at.ToDatetime(tzinfo=dt.UTC)
                if request.HasField("expires_at")
                else None,
                now=utcnow(),
            )
            await self._save(conn, key)
            row = await repository.api_key(conn, key_id)
            assert row is not None
            return pb.CreateApiKeyResponse(api_key=api_key_message(row), key=plaintext)

        return await Commands.run(
            pool,
            self._scope("CreateApiKey"),
            handle,
            _encode_without_plaintext,
            pb.CreateApiKeyResponse.FromString,
        )

    async def _held_by_grantor(
        self, conn: Connection, merchant_id: uuid.UUID, request: pb.CreateApiKeyRequest
    ) -> frozenset[str] | None:
        """What the grantor of a new key holds (None: the operator, who holds everything), read
        from this service's records rather than taken from the caller, and narrowed to what its
        key type may hold."""
        grantor = request.WhichOneof("grantor")
        if grantor is None:
            raise InvalidArgument.field("grantor", "is required: operator or granting_api_key_id")
        if grantor == "operator":
            if not request.operator:
                raise InvalidArgument.field("operator", "must be true when set")
            return None
        granting_id = ids.parse_id(request.granting_api_key_id)
        row = await repository.active_key(conn, merchant_id, granting_id) if granting_id else None
        if row is None:
            raise PermissionDenied("the granting API key is not an active key of this merchant")
        return frozenset(
            p for p in row["permissions"] if apikeys.allows(row["key_type"], set(row["permissions"]), p)
        )

    async def list_api_keys(self, request: pb.ListApiKeysRequest) -> pb.ListApiKeysResponse:
        merchant_id = ids.parse_id(request.merchant_id)
        if merchant_id is None:
            raise NotFound("merchant not found")
        rows = await repository.api_keys_of(self.rt.pool_for(merchant_id), merchant_id)
        return pb.ListApiKeysResponse(api_keys=[api_key_message(r) for r in rows])

    async def revoke_api_key(self, request: pb.RevokeApiKeyRequest) -> pb.ApiKey:
        merchant_id, key_id = ids.parse_id(request.merchant_id), ids.parse_id(request.api_key_id)
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
        return api_key_message(row)

    async def verify_api_key(self, request: pb.VerifyApiKeyRequest) -> pb.VerifyApiKeyResponse:
        key_id = apikeys.key_id_of(request.key)
        if key_id is None:
            raise Unauthenticated("invalid API key")
        pool = self.rt.pool_for(key_id)
        row = await repository.active_key_by_hash(pool, apikeys.hash_key(request.key))
        if row is None or row["id"] != key_id:
            raise Unauthenticated("invalid, revoked or expired API key")
        # No write here: the gateway reports use in batches (TouchApiKeys).
        return pb.VerifyApiKeyResponse(api_key=api_key_message(row), plan_type=row["plan_type"])

    async def touch_api_keys(self, request: pb.TouchApiKeysRequest) -> pb.TouchApiKeysResponse:
        """Records when keys were last used; keys of shards served elsewhere, or unknown ids,
        are skipped (a use report is advice, not a command)."""
        by_shard: dict[int, list[tuple[uuid.UUID, dt.datetime]]] = {}
        for use in request.uses:
            key_id = ids.parse_id(use.api_key_id)
            if key_id is None or not use.HasField("used_at"):
                continue
            shard = self.rt.shard_of(key_id)
            if shard in self.rt.shards:
                by_shard.setdefault(shard, []).append((key_id, use.used_at.ToDatetime(tzinfo=dt.UTC)))
        touched = 0
        for shard, uses in by_shard.items():
            touched += await repository.touch_keys(self.rt.pools[shard], uses)
        return pb.TouchApiKeysResponse(touched=touched)


def _merchant_id(raw: str) -> uuid.UUID:
    """A merchant id: its FNV-1a hash lands in the slot it carries (the seed's routing rule)."""
    merchant_id = parse_uuid(raw, "merchant_id")
    if slot_for_merchant(merchant_id) != ids.slot_of(merchant_id):
        raise InvalidArgument.field("merchant_id", "must be minted as a merchant id (ids.new_merchant_id_in)")
    return merchant_id


def _encode(message: pb.Merchant) -> bytes:
    return message.SerializeToString()


def _encode_without_plaintext(response: pb.CreateApiKeyResponse) -> bytes:
    # Only the hash of a key is ever stored, so a replayed create returns the key's record with
    # an empty `key`: the plaintext was shown once, to the first response.
    stored = pb.CreateApiKeyResponse()
    stored.CopyFrom(response)
    stored.key = ""
    return stored.SerializeToString()
