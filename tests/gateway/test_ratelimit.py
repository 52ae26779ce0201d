"""Rate limits: per API key by the merchant's plan, per client IP for failed authentication and
on the public checkout, with the standing on every limited response, and open when Redis is
down."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from prometheus_client import REGISTRY

from services.gateway.app import create_app
from services.gateway.ratelimit import RateLimiter
from tests.gateway.conftest import Platform, bearer, create_invoice, new_key, new_merchant, serve

RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def unavailable_count() -> float:
    return REGISTRY.get_sample_value("gateway_rate_limiter_unavailable_total") or 0.0


async def test_a_burst_of_1000_requests_with_one_key_gets_429s_while_another_key_is_served(
    platform: Platform, operator: dict[str, str]
) -> None:
    # Counting is under test, not failing open: a loaded machine's slow Redis answer must not
    # let requests through uncounted.
    config = platform.gateway_config(rate_limit_free="100/hour", rate_limit_redis_timeout_seconds=5.0)
    async with serve(create_app(config)) as client:
        busy = await new_merchant(client, operator)
        calm = await new_merchant(client, operator)

        async def burst(n: int) -> list[httpx.Response]:
            return [await client.get("/v1/api-keys", headers=busy.auth) for _ in range(n)]

        responses = [r for batch in await asyncio.gather(*(burst(100) for _ in range(10))) for r in batch]
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 100 and statuses.count(429) == 900
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["RateLimit-Limit"] == "100" and refused.headers["RateLimit-Remaining"] == "0"
        assert all(all(h in r.headers for h in RATE_HEADERS) for r in responses)

        served = await client.get("/v1/api-keys", headers=calm.auth)
        assert served.status_code == 200
        assert (served.headers["RateLimit-Limit"], served.headers["RateLimit-Remaining"]) == ("100", "99")


async def test_every_limited_response_carries_the_standing_errors_included(
    platform: Platform, operator: dict[str, str]
) -> None:
    async with serve(create_app(platform.gateway_config(rate_limit_free="1000/day"))) as client:
        merchant = await new_merchant(client, operator)
        responses = [
            await client.get("/v1/api-keys", headers=merchant.auth),
            await client.get(f"/v1/invoices/{uuid.uuid4()}", headers=merchant.auth),
            await client.get("/v1/invoices?limit=0", headers=merchant.auth),
        ]
    assert [r.status_code for r in responses] == [200, 404, 422]
    assert all(all(h in r.headers for h in RATE_HEADERS) for r in responses)
    assert [r.headers["RateLimit-Remaining"] for r in responses] == ["999", "998", "997"]
    assert 0 < int(responses[0].headers["RateLimit-Reset"]) <= 86400


async def test_the_limit_follows_the_merchants_plan(platform: Platform, operator: dict[str, str]) -> None:
    config = platform.gateway_config(
        rate_limit_free="10/minute", rate_limit_pro="20/minute", rate_limit_enterprise="30/minute"
    )
    async with serve(create_app(config)) as client:
        for plan, limit in (("free", "10"), ("pro", "20"), ("enterprise", "30")):
            merchant = await new_merchant(client, operator, plan_type=plan)
            response = await client.get("/v1/api-keys", headers=merchant.auth)
            assert response.headers["RateLimit-Limit"] == limit, plan


async def test_failed_authentication_is_limited_per_client_ip(
    platform: Platform, operator: dict[str, str]
) -> None:
    app = create_app(platform.gateway_config(rate_limit_auth_failures="5/hour"))
    async with serve(app) as setup:
        merchant = await new_merchant(setup, operator)
        fresh_key = await new_key(setup, operator, merchant.id)
    async with serve(app, client_ip="127.9.0.1") as attacker, serve(app, client_ip="127.9.0.2") as bystander:
        guesses = [
            await attacker.get("/v1/invoices", headers=bearer(f"ck_sk_{uuid.uuid4().hex}_{'x' * 43}"))
            for _ in range(6)
        ]
        assert [r.status_code for r in guesses] == [401] * 5 + [429]
        assert guesses[-1].json()["error"]["code"] == "rate_limited" and "Retry-After" in guesses[-1].headers
        assert guesses[0].headers["RateLimit-Remaining"] == "4"
        # Past the limit the address is refused before any key it sends is looked up, even a real one.
        assert (await attacker.get("/v1/invoices", headers=bearer(fresh_key))).status_code == 429
        assert (await bystander.get("/v1/invoices", headers=bearer(fresh_key))).status_code == 200


async def test_the_public_checkout_is_limited_per_client_ip(
    platform: Platform, operator: dict[str, str]
) -> None:
    app = create_app(platform.gateway_config(rate_limit_checkout="3/hour"))
    async with serve(app) as client, serve(app) as neighbour:
        merchant = await new_merchant(client, operator)
        invoice_id = (await create_invoice(client, merchant))["id"]
        views = [await client.get(f"/v1/checkout/{invoice_id}") for _ in range(4)]
        assert [r.status_code for r in views] == [200, 200, 200, 429]
        assert views[0].headers["RateLimit-Limit"] == "3"
        assert (await neighbour.get(f"/v1/checkout/{invoice_id}")).status_code == 200


async def test_with_redis_down_the_limiter_lets_requests_through_and_counts_them(
    platform: Platform, operator: dict[str, str]
) -> None:
    before = unavailable_count()
    app = create_app(platform.gateway_config(redis_url="redis://127.0.0.1:1/0", rate_limit_free="1/minute"))
    async with serve(app) as client:
        merchant = await new_merchant(client, operator)
        responses = [await client.get("/v1/api-keys", headers=merchant.auth) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all("RateLimit-Limit" not in r.headers for r in responses)
    assert unavailable_count() >= before + 3


async def test_replicas_share_one_count_in_redis(platform: Platform) -> None:
    one, two = (
        RateLimiter(
            platform.config.redis_url, plans={"free": "10/hour"}, auth_failures="1/hour", checkout="1/hour"
        )
        for _ in range(2)
    )
    item, identity = one.plan_limit("free"), ("key", str(uuid.uuid4()))
    try:
        for _ in range(6):
            assert (await one.hit(item, *identity)).allowed  # type: ignore[union-attr]
        await one.flush()
        quota = await two.hit(item, *identity)
        assert quota is not None and quota.remaining == 3
        for _ in range(3):
            await two.hit(item, *identity)
        await two.flush()
        # One's next flush learns two's requests: 6 + 1 + 3 = 10 counted, so the 11th is refused.
        await one.hit(item, *identity)
        await one.flush()
        refused = await one.hit(item, *identity)
        assert refused is not None and not refused.allowed and refused.remaining == 0
    finally:
        await one.close()
        await two.close()


async def test_one_flush_sends_every_keys_counts_and_learns_each_keys_total(platform: Platform) -> None:
    one, two = (
        RateLimiter(
            platform.config.redis_url, plans={"free": "100/hour"}, auth_failures="1/hour", checkout="1/hour"
        )
        for _ in range(2)
    )
    item = one.plan_limit("free")
    identities = [("key", str(uuid.uuid4())) for _ in range(3)]
    try:
        for n, identity in enumerate(identities):
            for _ in range(2 + n):  # 2, 3 and 4 requests: 1, 2 and 3 of them left to flush
                await one.hit(item, *identity)
        await one.flush()  # one round trip for the three keys
        for n, identity in enumerate(identities):
            seen = await two.hit(item, *identity)  # two's first request reads Redis's total
            assert seen is not None and seen.remaining == 100 - (2 + n) - 1
        for identity in identities:
            await one.hit(item, *identity)
        await one.flush()  # and learns two's request to each key
        for n, identity in enumerate(identities):
            quota = await one.peek(item, *identity)
            assert quota is not None and quota.remaining == 100 - (2 + n) - 2
    finally:
        await one.close()
        await two.close()
