"""Customers, analytics, the operator's shard view and readiness, against the fakes."""

from __future__ import annotations

import uuid

import httpx

from libs.common import ids
from libs.common.config import SERVICES, Endpoint
from services.gateway.app import create_app
from tests.gateway.conftest import (
    DEAD_ADDRESS,
    Merchant,
    bearer,
    everything_at,
    make_config,
    operator,
    serve,
)
from tests.gateway.fakes import FakeServices


async def test_customers_list_renders_a_page(client: httpx.AsyncClient, merchant: Merchant) -> None:
    response = await client.get("/v1/customers?email=a@b.c&limit=5", headers=bearer(merchant.key))
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] == "next"
    assert body["data"][0]["email"] == "a@b.c"
    assert body["data"][0]["last_seen_at"] is None


async def test_an_unknown_customer_is_404(client: httpx.AsyncClient, merchant: Merchant) -> None:
    response = await client.get(f"/v1/customers/{uuid.uuid4()}", headers=bearer(merchant.key))
    assert response.status_code == 404


async def test_daily_analytics_keep_counts_as_integers_and_amounts_as_strings(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.get(
        "/v1/analytics/daily?from=2026-01-01&to=2026-01-31", headers=bearer(merchant.key)
    )
    assert response.status_code == 200
    assert response.json()["data"] == [
        {
            "metric_date": "2026-01-01",
            "currency": "USD",
            "invoices_created": 3,
            "invoices_paid": 1,
            "amount_created": "37.50",
            "amount_paid": "12.50",
            "conversion_rate": "0.3333",
        }
    ]


async def test_daily_analytics_need_both_dates(client: httpx.AsyncClient, merchant: Merchant) -> None:
    response = await client.get("/v1/analytics/daily?from=2026-01-01", headers=bearer(merchant.key))
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "to"


async def test_admin_shards_lists_every_shard_with_its_slots(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.get("/v1/admin/shards", headers=operator())
    assert response.status_code == 200
    body = response.json()
    assert body["shard_map_version"] == 1
    assert [s["id"] for s in body["shards"]] == [0, 1]
    assert sum(s["slots"] for s in body["shards"]) == 4096
    assert body["shards"][0]["slot_ranges"] == [[0, 2048]]
    assert all(s["healthy"] and s["merchants"] == 7 for s in body["shards"])


async def test_admin_shards_needs_the_operator(client: httpx.AsyncClient, merchant: Merchant) -> None:
    response = await client.get("/v1/admin/shards", headers=bearer(merchant.key))
    assert response.status_code == 403


async def test_readyz_is_200_when_every_shard_serves(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert len(body["checks"]) == len(SERVICES) * 2


async def split(services: FakeServices) -> dict[str, tuple[Endpoint, ...]]:
    """Shard 0 on the fakes, shard 1 down."""
    return {
        svc: (Endpoint(frozenset({0}), services.address), Endpoint(frozenset({1}), DEAD_ADDRESS))
        for svc in SERVICES
    }


async def test_a_down_shard_is_reported_unhealthy_not_dropped(services: FakeServices) -> None:
    async for client in serve(create_app(make_config(await split(services)))):
        response = await client.get("/v1/admin/shards", headers=operator())
        assert response.status_code == 200
        shards = response.json()["shards"]
        assert [(s["id"], s["healthy"]) for s in shards] == [(0, True), (1, False)]
        assert shards[1]["merchants"] is None and shards[1]["invoices"] is None


async def test_listing_merchants_with_a_shard_down_is_a_503_naming_it(
    services: FakeServices,
) -> None:
    async for client in serve(create_app(make_config(await split(services)))):
        response = await client.get("/v1/merchants", headers=operator())
        assert response.status_code == 503
        assert [d["field"] for d in response.json()["error"]["details"]] == ["shards[1]"]


async def test_checkout_routes_by_the_slot_inside_the_invoice_id(services: FakeServices) -> None:
    async for client in serve(create_app(make_config(await split(services)))):
        on_live_shard = ids.new_id(0)  # slot 0 is shard 0
        on_dead_shard = ids.new_id(4095)  # the last slot is shard 1
        assert (await client.get(f"/v1/checkout/{on_live_shard}")).status_code == 404
        assert (await client.get(f"/v1/checkout/{on_dead_shard}")).status_code == 503


async def test_the_same_address_for_all_shards_is_listed_once(services: FakeServices) -> None:
    app = create_app(make_config(everything_at(services.address)))
    async for client in serve(app):
        response = await client.get("/v1/merchants", headers=operator())
        assert response.status_code == 200
    assert len([c for c in services.recorder.calls if c[0] == "ListMerchants"]) == 1
