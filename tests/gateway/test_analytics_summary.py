"""GET /v1/analytics/summary against the fakes: validation, auth, rendering and the warm cache."""

from __future__ import annotations

import datetime as dt

import httpx
from checkout.analytics.v1 import analytics_pb2 as pb
from starlette.applications import Starlette

from services.gateway.state import GatewayState
from tests.gateway.conftest import Merchant, bearer, new_merchant, operator
from tests.gateway.fakes import FakeServices


def summary_calls(services: FakeServices) -> int:
    return len([name for name, _ in services.recorder.calls if name == "GetSummary"])


async def test_a_summary_renders_counts_as_integers_and_money_as_strings_ending_today(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.get("/v1/analytics/summary?period=30d", headers=bearer(merchant.key))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "period": "30d",
        "from": "2026-01-01",
        "to": dt.datetime.now(dt.UTC).date().isoformat(),  # the day the gateway pinned
        "invoices_created": 3,
        "invoices_paid": 1,
        "amount_created": "37.50",
        "amount_paid": "12.50",
        "currency": "USD",
        "conversion_rate": "33.33",
        "by_currency": [
            {
                "currency": "USD",
                "invoices_created": 3,
                "invoices_paid": 1,
                "amount_created": "37.50",
                "amount_paid": "12.50",
                "conversion_rate": "33.33",
            }
        ],
    }


async def test_a_summary_in_several_currencies_has_null_amounts_and_each_currencys_sums(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    usd = pb.CurrencyTotals(
        currency="USD",
        invoices_created=2,
        invoices_paid=1,
        amount_created="30.00",
        amount_paid="10.00",
        conversion_rate="50.00",
    )
    jpy = pb.CurrencyTotals(
        currency="JPY",
        invoices_created=1,
        invoices_paid=1,
        amount_created="1500",
        amount_paid="1500",
        conversion_rate="100.00",
    )
    # What the analytics service answers for several currencies: the amounts unset.
    services.analytics.summary = pb.Summary(
        period="7d",
        from_date="2026-01-01",
        to_date="2026-01-07",
        invoices_created=3,
        invoices_paid=2,
        conversion_rate="66.67",
        by_currency=[jpy, usd],
    )
    response = await client.get("/v1/analytics/summary?period=7d", headers=bearer(merchant.key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["invoices_created"], body["invoices_paid"], body["conversion_rate"]) == (3, 2, "66.67")
    assert (body["amount_created"], body["amount_paid"], body["currency"]) == (None, None, None)
    assert [(c["currency"], c["amount_created"], c["amount_paid"]) for c in body["by_currency"]] == [
        ("JPY", "1500", "1500"),
        ("USD", "30.00", "10.00"),
    ]


async def test_all_time_without_metrics_has_a_null_from(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.get("/v1/analytics/summary?period=all", headers=bearer(merchant.key))
    assert response.status_code == 200
    assert response.json()["from"] is None


async def test_a_missing_or_unknown_period_is_a_422_on_period(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    for query in ("", "?period=1y", "?period=7D", "?period="):
        response = await client.get(f"/v1/analytics/summary{query}", headers=bearer(merchant.key))
        assert response.status_code == 422, query
        error = response.json()["error"]
        assert error["code"] == "invalid_argument"
        assert [d["field"] for d in error["details"]] == ["period"]
    assert summary_calls(services) == 0


async def test_a_summary_needs_a_merchant_key_with_analytics_read(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/analytics/summary?period=7d")).status_code == 401
    assert (await client.get("/v1/analytics/summary?period=7d", headers=operator())).status_code == 403
    reader = await new_merchant(client, "reader@example.com", permissions=["invoices:read"])
    response = await client.get("/v1/analytics/summary?period=7d", headers=bearer(reader.key))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


async def test_a_summary_is_cached_until_the_merchants_analytics_generation_moves(
    app: Starlette, client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    for _ in range(2):
        response = await client.get("/v1/analytics/summary?period=7d", headers=bearer(merchant.key))
        assert response.status_code == 200
    assert summary_calls(services) == 1
    # Another period is another entry.
    await client.get("/v1/analytics/summary?period=90d", headers=bearer(merchant.key))
    assert summary_calls(services) == 2

    state = app.state.gateway
    assert isinstance(state, GatewayState)
    await state.cache.bump("analytics", merchant.id)  # what the projection does on a change
    await client.get("/v1/analytics/summary?period=7d", headers=bearer(merchant.key))
    assert summary_calls(services) == 3
