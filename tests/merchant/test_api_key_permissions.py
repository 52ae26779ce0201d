"""Who may grant what: an API key only ever grants a subset of what its grantor holds, and a
publishable key only what a web page may hold (issue 9, items 3 and 4), decided by the merchant
service over real gRPC on real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from checkout.merchant.v1 import events_pb2 as ev
from checkout.merchant.v1 import merchant_pb2 as pb
from checkout.merchant.v1 import merchant_pb2_grpc

from libs.common import apikeys, ids
from libs.common.config import Config
from libs.common.db import migrate_shard, migrations_for
from libs.common.grpc_errors import from_rpc_error
from libs.common.protoconv import timestamp
from services.merchant import projections
from services.merchant.service import SPEC
from tests.merchant.test_merchant_service import create_request
from tests.services import running

if TYPE_CHECKING:
    Stub = merchant_pb2_grpc.MerchantServiceAsyncStub


@asynccontextmanager
async def merchant_service(config: Config) -> AsyncIterator[tuple[Stub, Any]]:
    async with running(SPEC, config) as (runtime, channel):
        yield merchant_pb2_grpc.MerchantServiceStub(channel), runtime


async def issue(stub: Stub, merchant_id: str, grantor: str | None, **fields: Any) -> pb.CreateApiKeyResponse:
    request = pb.CreateApiKeyRequest(merchant_id=merchant_id, name="k", **fields)
    if grantor is None:
        request.operator = True
    else:
        request.granting_api_key_id = grantor
    return await stub.CreateApiKey(request)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


async def test_a_limited_key_grants_only_a_subset_of_what_it_holds(config: Config) -> None:
    async with merchant_service(config) as (stub, _):
        merchant = await stub.CreateMerchant(create_request("grants@shop.test"))
        limited = (await issue(stub, merchant.id, None, permissions=["api_keys:write"])).api_key
        # An empty list is no permissions, never "all".
        empty = await issue(stub, merchant.id, limited.id, permissions=[])
        assert list(empty.api_key.permissions) == []
        # Omitted: the type's default, narrowed to what the grantor holds.
        default = await issue(stub, merchant.id, limited.id, use_default_permissions=True)
        assert list(default.api_key.permissions) == ["api_keys:write"]
        web = await issue(stub, merchant.id, limited.id, key_type="publishable", use_default_permissions=True)
        assert list(web.api_key.permissions) == []
        for key_type in ("secret", "publishable"):
            error = await refused(
                issue(stub, merchant.id, limited.id, key_type=key_type, permissions=["invoices:write"])
            )
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "invoices:write" in (error.details() or "")
        # The operator holds everything.
        full = await issue(stub, merchant.id, None, use_default_permissions=True)
        assert set(full.api_key.permissions) == set(apikeys.PERMISSIONS)


async def test_a_publishable_key_holds_nothing_but_invoice_creation(config: Config) -> None:
    async with merchant_service(config) as (stub, _):
        merchant = await stub.CreateMerchant(create_request("web@shop.test"))
        web = await issue(stub, merchant.id, None, key_type="publishable", use_default_permissions=True)
        assert list(web.api_key.permissions) == ["invoices:write"] and web.key.startswith("ck_pk_")
        for asked in (["invoices:cancel"], ["invoices:write", "invoices:read"], ["api_keys:write"]):
            error = await refused(issue(stub, merchant.id, None, key_type="publishable", permissions=asked))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [d.field for d in from_rpc_error(error).details] == ["permissions"]


async def test_a_key_needs_a_grantor_that_is_an_active_key_of_its_merchant(config: Config) -> None:
    async with merchant_service(config) as (stub, _):
        merchant = await stub.CreateMerchant(create_request("grantor@shop.test"))
        other = await stub.CreateMerchant(create_request("other-grantor@shop.test"))
        nobody = await refused(stub.CreateApiKey(pb.CreateApiKeyRequest(merchant_id=merchant.id, name="k")))
        assert nobody.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [d.field for d in from_rpc_error(nobody).details] == ["grantor"]
        foreign = (await issue(stub, other.id, None, use_default_permissions=True)).api_key
        revoked = (await issue(stub, merchant.id, None, use_default_permissions=True)).api_key
        await stub.RevokeApiKey(pb.RevokeApiKeyRequest(merchant_id=merchant.id, api_key_id=revoked.id))
        for grantor in (foreign.id, revoked.id, str(uuid.uuid4())):
            error = await refused(issue(stub, merchant.id, grantor, use_default_permissions=True))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def legacy_key(
    merchant_id: uuid.UUID, key_type: str, permissions: list[str]
) -> tuple[uuid.UUID, ev.ApiKeyCreated]:
    """An ApiKeyCreated as written before invoices:cancel existed (no permissions_revision)."""
    key_id = ids.new_id(ids.slot_of(merchant_id))
    plaintext = apikeys.mint(key_id, key_type)
    return key_id, ev.ApiKeyCreated(
        api_key_id=str(key_id),
        merchant_id=str(merchant_id),
        name="old",
        key_type=key_type,
        permissions=permissions,
        key_hash=apikeys.hash_key(plaintext),
        prefix=apikeys.prefix_of(plaintext),
        created_at=timestamp(dt.datetime(2026, 6, 1, tzinfo=dt.UTC)),
    )


async def test_secret_keys_from_before_invoices_cancel_keep_cancelling_after_a_rebuild(
    config: Config,
) -> None:
    async with merchant_service(config) as (stub, runtime):
        merchant = await stub.CreateMerchant(create_request("legacy@shop.test"))
        merchant_id = uuid.UUID(merchant.id)
        pool = runtime.pool_for(merchant_id)
        old = {
            "writer": legacy_key(merchant_id, "secret", ["invoices:read", "invoices:write"]),
            "reader": legacy_key(merchant_id, "secret", ["invoices:read"]),
            "web": legacy_key(merchant_id, "publishable", ["invoices:write"]),
            # Issued before publishable keys had an allow list.
            "leaky": legacy_key(merchant_id, "publishable", ["api_keys:write", "invoices:write"]),
        }
        async with pool.acquire() as conn, conn.transaction():
            for key_id, event in old.values():
                await runtime.store.append(
                    conn, aggregate_id=key_id, aggregate_type="ApiKey", expected_version=0, new_events=[event]
                )
            await projections.rebuild(conn, runtime.store)
        listed = await stub.ListApiKeys(pb.ListApiKeysRequest(merchant_id=merchant.id))
        held = {k.id: list(k.permissions) for k in listed.api_keys}
        assert held[str(old["writer"][0])] == ["invoices:read", "invoices:write", "invoices:cancel"]
        assert held[str(old["reader"][0])] == ["invoices:read"]
        assert held[str(old["web"][0])] == ["invoices:write"]
        # What a publishable key may not use, it cannot pass on either.
        passed = await issue(stub, merchant.id, str(old["leaky"][0]), use_default_permissions=True)
        assert list(passed.api_key.permissions) == ["invoices:write"]
        # A key issued now with invoices:write alone does not cancel.
        new = await issue(stub, merchant.id, None, permissions=["invoices:write"])
        assert list(new.api_key.permissions) == ["invoices:write"]


async def test_the_migration_gives_existing_secret_writers_invoices_cancel(config: Config) -> None:
    dsn, schema = config.shard_dsn(0), "merchant_cancel_migration"
    migrations = migrations_for(SPEC.service_dir)
    await migrate_shard(dsn, schema, [m for m in migrations if m.version < "1003"])
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        merchant_id = uuid.uuid4()
        now = dt.datetime.now(dt.UTC)
        await conn.execute(
            "INSERT INTO merchants (id, business_name, contact_email, created_at, updated_at) "
            "VALUES ($1, 'Old', 'old@shop.test', $2, $2)",
            merchant_id,
            now,
        )
        rows = {
            "writer": ("secret", ["invoices:write"]),
            "reader": ("secret", ["invoices:read"]),
            "web": ("publishable", ["invoices:write"]),
        }
        for name, (key_type, permissions) in rows.items():
            await conn.execute(
                "INSERT INTO api_keys (id, merchant_id, key_hash, key_type, permissions, name, prefix, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, 'ck', $7)",
                uuid.uuid4(),
                merchant_id,
                name,
                key_type,
                permissions,
                name,
                now,
            )
        assert "1003_invoices_cancel" in await migrate_shard(dsn, schema, migrations)
        after = {r["name"]: list(r["permissions"]) for r in await conn.fetch("SELECT * FROM api_keys")}
        assert after == {
            "writer": ["invoices:write", "invoices:cancel"],
            "reader": ["invoices:read"],
            "web": ["invoices:write"],
        }
    finally:
        await conn.close()
