"""Customers, analytics, the operator's views and readiness over HTTP, against the real
services (their projections follow the invoice events, so reads poll with a deadline)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from services.gateway.app import create_app
from tests.common.support import poll_for
from tests.gateway.conftest import Merchant, Platform, create_invoice, new_merchant, serve, with_shard_down

TODAY = datetime.now(UTC).date().isoformat()


async def test_a_customer_made_from_an_invoice_is_listed_read_and_has_a_payment_history(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice = await create_invoice(client, merchant, customer_email="Buyer@Example.com")

    async def listed() -> list[dict[str, Any]] | None:
        response = await client.get("/v1/customers?email=buyer@example.com", headers=merchant.auth)
        data: list[dict[str, Any]] = response.json()["data"]
        return data or None

    [customer] = await poll_for(listed, what="the customer projected from the invoice")
    assert customer["id"] == invoice["customer_id"] and customer["email"] == "buyer@example.com"
    one = await client.get(f"/v1/customers/{customer['id']}", headers=merchant.auth)
    assert one.status_code == 200 and one.json()["invoice_count"] >= 1
    history = await client.get(f"/v1/customers/{customer['id']}/payments?limit=5", headers=merchant.auth)
    assert history.status_code == 200 and history.json()["next_cursor"] is None


async def test_an_unknown_customer_is_404_and_customers_need_customers_read(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant
) -> None:
    assert (await client.get(f"/v1/customers/{uuid.uuid4()}", headers=merchant.auth)).status_code == 404
    other = await new_merchant(client, operator, permissions=["invoices:read"])
    assert (await client.get("/v1/customers", headers=other.auth)).status_code == 403


async def test_daily_analytics_keep_counts_as_integers_and_amounts_as_strings(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    await create_invoice(client, merchant)
    await create_invoice(client, merchant)

    async def day() -> dict[str, Any] | None:
        response = await client.get(f"/v1/analytics/daily?from={TODAY}&to={TODAY}", headers=merchant.auth)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return data[0] if data and data[0]["invoices_created"] == 2 else None

    metric = await poll_for(day, what="today's metrics to count both invoices")
    assert metric == {
        "metric_date": TODAY, "currency": "USD", "invoices_created": 2, "invoices_paid": 0,
        "amount_created": "50.00", "amount_paid": "0.00", "conversion_rate": "0.00",
    }  # fmt: skip
    summary = (await client.get("/v1/analytics/summary?period=7d", headers=merchant.auth)).json()
    assert (summary["to"], summary["invoices_created"], summary["currency"]) == (TODAY, 2, "USD")
    assert summary["amount_created"] == "50.00"


async def test_analytics_need_both_dates_and_a_known_period(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.get(f"/v1/analytics/daily?from={TODAY}", headers=merchant.auth)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [{"field": "to", "reason": "is required"}]
    for query in ("", "?period=1y"):
        bad = await client.get(f"/v1/analytics/summary{query}", headers=merchant.auth)
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "period"


async def test_admin_shards_lists_every_shard_with_its_slots(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    response = await client.get("/v1/admin/shards", headers=operator)
    assert response.status_code == 200, response.text
    shards = response.json()["shards"]
    assert [s["id"] for s in shards] == [0, 1]
    assert sum(s["slots"] for s in shards) == 4096
    assert all(s["healthy"] and isinstance(s["merchants"], int) for s in shards)


async def test_the_operators_views_need_the_operator(client: httpx.AsyncClient, merchant: Merchant) -> None:
    assert (await client.get("/v1/admin/shards", headers=merchant.auth)).status_code == 403
    url = f"/v1/admin/platform-metrics?from={TODAY}&to={TODAY}"
    assert (await client.get(url, headers=merchant.auth)).status_code == 403


async def test_platform_metrics_sum_every_shard_and_a_failing_shard_is_reported(
    client: httpx.AsyncClient, operator: dict[str, str], platform: Platform
) -> None:
    url = f"/v1/admin/platform-metrics?from={TODAY}&to={TODAY}"
    complete = await client.get(url, headers=operator)
    assert complete.status_code == 200, complete.text
    body = complete.json()
    assert body["complete"] is True and [s["id"] for s in body["shards"]] == [0, 1]
    assert body["from"] == TODAY and all(d["metric_date"] == TODAY for d in body["data"])
    down = platform.gateway_config(endpoints=with_shard_down(platform.config, 1))
    async with serve(create_app(down)) as partial:
        response = await partial.get(url, headers=operator)
        assert response.status_code == 200
        report = response.json()
        assert report["complete"] is False
        assert report["shards"][0] == {"id": 0, "ok": True, "error": None}
        assert report["shards"][1]["ok"] is False and report["shards"][1]["error"]["code"] == "unavailable"
        shards = (await partial.get("/v1/admin/shards", headers=operator)).json()["shards"]
        assert [s["healthy"] for s in shards] == [True, False] and shards[1]["merchants"] is None
        # A partial list would look complete: it is a 503 naming the missing shard.
        listing = await partial.get("/v1/merchants", headers=operator)
        assert listing.status_code == 503
        assert [d["field"] for d in listing.json()["error"]["details"]] == ["shards[1]"]
        ready = await partial.get("/readyz")
        assert ready.status_code == 503
        assert {c["shard"] for c in ready.json()["down"]} == {1}


async def test_bad_dates_are_a_422_naming_each_field_before_any_shard_is_asked(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    response = await client.get("/v1/admin/platform-metrics?from=2026-13-01&to=soon", headers=operator)
    assert response.status_code == 422
    assert {d["field"] for d in response.json()["error"]["details"]} == {"from", "to"}


async def test_readyz_is_200_when_every_shard_serves(client: httpx.AsyncClient) -> None:
    async def ready() -> dict[str, Any] | None:
        response = await client.get("/readyz")
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 else None

    body = await poll_for(ready, what="every service to report SERVING")
    assert body["status"] == "ready" and len(body["checks"]) == 8
