"""The merchant service over real gRPC, on real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import grpc
import pytest
from checkout.merchant.v1 import merchant_pb2 as pb
from checkout.merchant.v1 import merchant_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common import ids
from libs.common.config import Config
from libs.common.grpc_errors import from_rpc_error
from libs.common.protoconv import plain
from services.merchant.service import SPEC
from tests.common.support import poll
from tests.services import running
from tools.devstack import DEMO_ETHEREUM_XPUB


def create_request(email: str, name: str = "Acme") -> pb.CreateMerchantRequest:
    return pb.CreateMerchantRequest(
        merchant_id=str(ids.new_merchant_id(email)), business_name=name, contact_email=email
    )


async def test_merchant_is_created_read_back_and_its_email_is_unique(config: Config) -> None:
    async with running(SPEC, config) as (_, channel):
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        created = await stub.CreateMerchant(create_request("Owner@Shop.test"))
        assert created.contact_email == "owner@shop.test"
        assert created.status == "active" and created.plan_type == "free"
        fetched = await stub.GetMerchant(pb.GetMerchantRequest(merchant_id=created.id))
        assert fetched == created
        with pytest.raises(grpc.aio.AioRpcError) as duplicate:
            await stub.CreateMerchant(create_request("owner@shop.test", "Other"))
        assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_invalid_merchant_gets_field_details_and_leaves_nothing(config: Config) -> None:
    async with running(SPEC, config) as (runtime, channel):
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        request = create_request("bad@shop.test", " ")
        request.wallets["ethereum"] = "xpub-not-really"
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.CreateMerchant(request)
        remote = from_rpc_error(error.value)
        assert remote.code == "invalid_argument"
        assert {d.field for d in remote.details} == {"business_name", "wallets.ethereum"}
        pool = runtime.pool_for(ids.parse_id(request.merchant_id))  # type: ignore[arg-type]
        assert await pool.fetchval("SELECT count(*) FROM events") == 0
        assert await pool.fetchval("SELECT count(*) FROM merchants") == 0


async def test_concurrent_updates_of_one_merchant_lose_with_aborted_or_apply_in_order(config: Config) -> None:
    async with running(SPEC, config) as (runtime, channel):
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        merchant = await stub.CreateMerchant(create_request("race@shop.test"))
        results = await asyncio.gather(
            *(
                stub.UpdateMerchant(pb.UpdateMerchantRequest(merchant_id=merchant.id, business_name=f"n{i}"))
                for i in range(8)
            ),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert all(f.code() == grpc.StatusCode.ABORTED for f in failures)
        pool = runtime.pool_for(ids.parse_id(merchant.id))  # type: ignore[arg-type]
        versions = await pool.fetch(
            "SELECT event_version FROM events WHERE aggregate_id = $1 ORDER BY 1", ids.parse_id(merchant.id)
        )
        assert [v["event_version"] for v in versions] == list(range(1, 2 + len(results) - len(failures)))


async def test_api_key_verifies_until_revoked(config: Config) -> None:
    async with running(SPEC, config) as (_, channel):
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        merchant = await stub.CreateMerchant(create_request("keys@shop.test"))
        created = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(
                merchant_id=merchant.id, name="server", operator=True, use_default_permissions=True
            )
        )
        assert created.key.startswith("ck_sk_")
        verified = await stub.VerifyApiKey(pb.VerifyApiKeyRequest(key=created.key))
        assert verified.api_key.merchant_id == merchant.id
        await stub.RevokeApiKey(
            pb.RevokeApiKeyRequest(merchant_id=merchant.id, api_key_id=created.api_key.id)
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.VerifyApiKey(pb.VerifyApiKeyRequest(key=created.key))
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_updating_wallets_and_settings_replaces_them_and_is_read_back(config: Config) -> None:
    async with running(SPEC, config) as (_, channel):
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        merchant = await stub.CreateMerchant(create_request("wallets@shop.test"))
        request = pb.UpdateMerchantRequest(
            merchant_id=merchant.id, replace_wallets=True, replace_settings=True
        )
        request.wallets["ethereum"] = DEMO_ETHEREUM_XPUB
        request.settings.update({"payment_tolerance": {"underpaid_percent": "1.5"}})
        updated = await stub.UpdateMerchant(request)
        assert dict(updated.wallets) == {"ethereum": DEMO_ETHEREUM_XPUB}
        fetched = await stub.GetMerchant(pb.GetMerchantRequest(merchant_id=merchant.id))
        assert plain(fetched.settings) == {"payment_tolerance": {"underpaid_percent": "1.5"}}
        assert dict(fetched.wallets) == {"ethereum": DEMO_ETHEREUM_XPUB}


async def test_health_is_serving_only_while_postgres_and_nats_answer(config: Config) -> None:
    async with running(SPEC, config) as (runtime, channel):
        health = health_pb2_grpc.HealthStub(channel)

        async def status() -> int:
            response = await health.Check(health_pb2.HealthCheckRequest(service=""))
            return int(response.status)

        await poll(lambda: _is(status(), health_pb2.HealthCheckResponse.SERVING), what="SERVING")
        assert runtime.nc is not None
        await runtime.nc.close()  # NATS gone: the service must stop claiming to be ready
        await poll(lambda: _is(status(), health_pb2.HealthCheckResponse.NOT_SERVING), what="NOT_SERVING")


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
