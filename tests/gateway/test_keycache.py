"""API keys verified once, then served from memory, and dropped at once on revocation, on this
gateway and on every other replica; `last_used_at` written in batches."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from checkout.merchant.v1 import merchant_pb2
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from libs.common.config import SERVICES, Endpoint
from services.gateway.app import create_app
from services.gateway.context import CallContext
from tests.common.support import poll
from tests.gateway.conftest import (
    DEAD_ADDRESS,
    Merchant,
    Platform,
    bearer,
    new_key,
    new_merchant,
    serve,
    state_of,
)
from tools.devservers import Servers, free_ports

ROOT = Path(__file__).resolve().parents[2]


def lookups(result: str) -> float:
    return REGISTRY.get_sample_value("gateway_api_key_cache_lookups_total", {"result": result}) or 0.0


async def key_id_of(client: httpx.AsyncClient, key: str) -> str:
    listed = await client.get("/v1/api-keys", headers=bearer(key))
    prefix = key[:14]
    [found] = [k["id"] for k in listed.json()["data"] if k["prefix"] == prefix]
    assert isinstance(found, str)
    return found


async def test_a_key_is_verified_once_and_then_served_from_memory(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    asked, cached = lookups("service"), lookups("cache")
    for _ in range(5):
        assert (await client.get("/v1/api-keys", headers=merchant.auth)).status_code == 200
    assert lookups("service") - asked == 1
    assert lookups("cache") - cached == 4


async def test_last_used_at_is_written_in_a_batch_not_per_request(
    client: httpx.AsyncClient, merchant: Merchant, app: Starlette
) -> None:
    for _ in range(3):
        await client.get("/v1/api-keys", headers=merchant.auth)
    listed = (await client.get("/v1/api-keys", headers=merchant.auth)).json()["data"]
    assert [k["last_used_at"] for k in listed] == [None]
    await state_of(app).keys.flush_touches()
    [key] = (await client.get("/v1/api-keys", headers=merchant.auth)).json()["data"]
    used = datetime.fromisoformat(key["last_used_at"])
    assert datetime.now(UTC) - used < timedelta(seconds=30)


async def test_a_revoked_key_is_refused_at_once_by_the_gateway_that_revoked_it(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    key_id = await key_id_of(client, merchant.key)
    revoked = await client.delete(f"/v1/api-keys/{key_id}", headers=merchant.auth)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert (await client.get("/v1/api-keys", headers=merchant.auth)).status_code == 401


async def test_a_key_past_its_expiry_is_refused_though_it_was_cached(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant
) -> None:
    expires = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    key = await new_key(client, operator, merchant.id, expires_at=expires)
    assert (await client.get("/v1/api-keys", headers=bearer(key))).status_code == 200

    async def refused() -> bool:
        return (await client.get("/v1/api-keys", headers=bearer(key))).status_code == 401

    await poll(refused, timeout=10, what="the expired key to be refused")


async def test_an_outage_of_the_merchant_service_is_a_503_not_an_invalid_key(
    platform: Platform, operator: dict[str, str], client: httpx.AsyncClient
) -> None:
    merchant = await new_merchant(client, operator)
    dead = (Endpoint(frozenset(platform.config.shards), DEAD_ADDRESS),)
    config = platform.gateway_config(endpoints={**platform.config.endpoints, "merchant": dead})
    async with serve(create_app(config)) as offline:
        response = await offline.get("/v1/api-keys", headers=merchant.auth)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"


# -- two gateway processes ------------------------------------------------------------------------


@pytest.fixture
def replicas(platform: Platform, servers: Servers, tmp_path: Path) -> Iterator[list[str]]:
    """Two gateway processes in front of the session's services."""
    config = platform.config
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKOUT_")}
    env.update(
        {
            "CHECKOUT_REDIS_URL": config.redis_url,
            "CHECKOUT_NATS_URL": config.nats_url,
            "CHECKOUT_SUBJECT_PREFIX": config.subject_prefix,
            "CHECKOUT_SHARD_COUNT": str(config.shard_count),
            "CHECKOUT_ADMIN_TOKEN": config.admin_token,
            "CHECKOUT_PARENT_PID": str(os.getpid()),
            "CHECKOUT_LOG_LEVEL": "WARNING",
            **{f"CHECKOUT_{svc.upper()}_ENDPOINTS": config.endpoints[svc][0].address for svc in SERVICES},
        }
    )
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    urls = []
    try:
        # Both picked before either gateway binds: one at a time, the same port can come twice.
        for n, port in enumerate(free_ports(2)):
            log = (tmp_path / f"gateway{n}.log").open("wb")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.gateway"],
                    cwd=ROOT,
                    env={**env, "CHECKOUT_HTTP_LISTEN": f"127.0.0.1:{port}"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


@asynccontextmanager
async def clients(urls: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=urls[0], timeout=10) as a,
        httpx.AsyncClient(base_url=urls[1], timeout=10) as b,
    ):
        for c in (a, b):

            async def up(c: httpx.AsyncClient = c) -> bool:
                try:
                    return (await c.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await poll(up, timeout=30, what="a gateway process to serve")
        yield [a, b]


async def test_a_revoked_key_is_refused_at_once_on_every_replica(
    replicas: list[str], operator: dict[str, str]
) -> None:
    async with clients(replicas) as (a, b):
        merchant = await new_merchant(a, operator)
        # Both replicas have verified the key and hold it in memory.
        for replica in (a, b, a, b):
            assert (await replica.get("/v1/api-keys", headers=merchant.auth)).status_code == 200
        key_id = await key_id_of(a, merchant.key)
        assert (await a.delete(f"/v1/api-keys/{key_id}", headers=merchant.auth)).status_code == 200
        revoked_at = time.monotonic()
        assert (await a.get("/v1/api-keys", headers=merchant.auth)).status_code == 401

        async def refused_by_b() -> bool:
            return (await b.get("/v1/api-keys", headers=merchant.auth)).status_code == 401

        # The replica that served the revoke told the others before it answered (~10-20 ms on a
        # quiet machine, where the first request to B is already refused); the deadline only
        # absorbs a loaded machine's scheduling.
        await poll(refused_by_b, timeout=1.0, what="the other replica to refuse the revoked key")
        assert time.monotonic() - revoked_at < 1.0


async def test_a_replica_that_missed_the_peer_notice_still_hears_the_merchant_services_event(
    client: httpx.AsyncClient, merchant: Merchant, app: Starlette, platform: Platform
) -> None:
    async with serve(create_app(platform.config)) as other:
        assert (await other.get("/v1/api-keys", headers=merchant.auth)).status_code == 200
        key_id = await key_id_of(client, merchant.key)
        # Revoked behind the gateways' backs: only the event on NATS can tell them.
        state = state_of(app)
        backends = state.backends
        await backends.call(
            backends.merchants(backends.shard_of(uuid.UUID(key_id))).RevokeApiKey,
            merchant_pb2.RevokeApiKeyRequest(merchant_id=merchant.id, api_key_id=key_id),
            CallContext("test-revoke", "operator"),
        )

        async def refused() -> bool:
            return (await other.get("/v1/api-keys", headers=merchant.auth)).status_code == 401

        await poll(refused, timeout=5, what="the event to reach the replica")
