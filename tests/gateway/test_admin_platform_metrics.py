"""GET /v1/admin/platform-metrics against the fakes: the fan-out to every shard, the merge, and a
failing shard reported rather than dropped."""

from __future__ import annotations

import httpx
import pytest
from checkout.analytics.v1 import analytics_pb2 as pb

from services.gateway.app import create_app
from services.gateway.routes import admin
from tests.gateway.conftest import Merchant, bearer, make_config, operator, serve
from tests.gateway.fakes import FakeServices
from tests.gateway.test_resources import split

URL = "/v1/admin/platform-metrics?from=2026-01-01&to=2026-01-31"


def day(
    metric_date: str,
    created: int,
    paid: int,
    amount_created: str,
    amount_paid: str,
    active: int,
    currency: str = "USD",
) -> pb.PlatformDay:
    return pb.PlatformDay(
        metric_date=metric_date,
        currency=currency,
        invoices_created=created,
        invoices_paid=paid,
        amount_created=amount_created,
        amount_paid=amount_paid,
        conversion_rate="ignored by the merge",
        merchants_active=active,
    )


@pytest.fixture
def seeded(services: FakeServices) -> FakeServices:
    services.analytics.platform = {
        0: pb.PlatformMetrics(
            shard=0,
            data=[
                day("2026-01-02", 2, 1, "10.00", "7.50", 2),
                day("2026-01-05", 3, 0, "0.125", "0.00", 1),
            ],
            merchants_active=2,
            merchants_active_by_currency=[active("USD", 2)],
        ),
        1: pb.PlatformMetrics(
            shard=1,
            data=[day("2026-01-02", 1, 1, "1234567890.12", "1234567890.12", 1)],
            merchants_active=1,
            merchants_active_by_currency=[active("USD", 1)],
        ),
    }
    return services


def active(currency: str, merchants: int) -> pb.CurrencyActivity:
    return pb.CurrencyActivity(currency=currency, merchants_active=merchants)


def shard_calls(services: FakeServices) -> list[str]:
    return [name for name, _ in services.recorder.calls if name == "GetPlatformMetrics"]


async def test_every_shards_days_are_merged_exactly_with_the_rate_from_the_sums(
    client: httpx.AsyncClient, seeded: FakeServices
) -> None:
    response = await client.get(URL, headers=operator())
    assert response.status_code == 200, response.text
    assert response.json() == {
        "from": "2026-01-01",
        "to": "2026-01-31",
        "data": [
            {
                "metric_date": "2026-01-02",
                "currency": "USD",
                "invoices_created": 3,
                "invoices_paid": 2,
                "amount_created": "1234567900.12",
                "amount_paid": "1234567897.62",
                "conversion_rate": "66.67",
                "merchants_active": 3,
            },
            {
                "metric_date": "2026-01-05",
                "currency": "USD",
                "invoices_created": 3,
                "invoices_paid": 0,
                "amount_created": "0.125",
                "amount_paid": "0.00",
                "conversion_rate": "0.00",
                "merchants_active": 1,
            },
        ],
        # merchants_active: distinct over the range per shard (2 + 1), not the days' sum (4).
        "totals": {
            "invoices_created": 6,
            "invoices_paid": 2,
            "amount_created": "1234567900.245",
            "amount_paid": "1234567897.62",
            "conversion_rate": "33.33",
            "merchants_active": 3,
            "currency": "USD",
        },
        "totals_by_currency": [
            {
                "currency": "USD",
                "invoices_created": 6,
                "invoices_paid": 2,
                "amount_created": "1234567900.245",
                "amount_paid": "1234567897.62",
                "conversion_rate": "33.33",
                "merchants_active": 3,
            }
        ],
        "complete": True,
        "shards": [{"id": 0, "ok": True}, {"id": 1, "ok": True}],
    }
    assert len(shard_calls(seeded)) == 2


async def test_currencies_are_summed_apart_across_shards_and_the_totals_leave_amounts_null(
    client: httpx.AsyncClient, services: FakeServices
) -> None:
    services.analytics.platform = {
        0: pb.PlatformMetrics(
            shard=0,
            data=[
                day("2026-01-02", 1, 1, "10.00", "10.00", 1, "EUR"),
                day("2026-01-02", 2, 0, "5.50", "0.00", 2, "USD"),
            ],
            merchants_active=2,
            merchants_active_by_currency=[active("EUR", 1), active("USD", 2)],
        ),
        1: pb.PlatformMetrics(
            shard=1,
            data=[
                day("2026-01-02", 1, 0, "2.25", "0.00", 1, "EUR"),
                day("2026-01-03", 1, 1, "1500", "1500", 1, "JPY"),
                # A reorg took this back to zeros: it shows as a row, not as a traded currency.
                day("2026-01-03", 0, 0, "0.00", "0.00", 0, "GBP"),
            ],
            merchants_active=2,
            merchants_active_by_currency=[active("EUR", 1), active("GBP", 0), active("JPY", 1)],
        ),
    }
    response = await client.get(URL, headers=operator())
    assert response.status_code == 200, response.text
    body = response.json()
    assert [
        (d["metric_date"], d["currency"], d["invoices_created"], d["amount_created"], d["amount_paid"])
        for d in body["data"]
    ] == [
        ("2026-01-02", "EUR", 2, "12.25", "10.00"),
        ("2026-01-02", "USD", 2, "5.50", "0.00"),
        ("2026-01-03", "GBP", 0, "0.00", "0.00"),
        ("2026-01-03", "JPY", 1, "1500", "1500"),
    ]
    assert body["totals"] == {
        "invoices_created": 5,
        "invoices_paid": 2,
        "amount_created": None,
        "amount_paid": None,
        "currency": None,
        "conversion_rate": "40.00",
        "merchants_active": 4,
    }
    assert body["totals_by_currency"] == [
        {
            "currency": "EUR",
            "invoices_created": 2,
            "invoices_paid": 1,
            "amount_created": "12.25",
            "amount_paid": "10.00",
            "conversion_rate": "50.00",
            "merchants_active": 2,
        },
        {
            "currency": "JPY",
            "invoices_created": 1,
            "invoices_paid": 1,
            "amount_created": "1500",
            "amount_paid": "1500",
            "conversion_rate": "100.00",
            "merchants_active": 1,
        },
        {
            "currency": "USD",
            "invoices_created": 2,
            "invoices_paid": 0,
            "amount_created": "5.50",
            "amount_paid": "0.00",
            "conversion_rate": "0.00",
            "merchants_active": 2,
        },
    ]


async def test_no_metrics_anywhere_is_empty_days_and_zero_totals(client: httpx.AsyncClient) -> None:
    response = await client.get(URL, headers=operator())
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == []
    assert body["totals"] == {
        "invoices_created": 0,
        "invoices_paid": 0,
        "amount_created": "0.00",
        "amount_paid": "0.00",
        "conversion_rate": "0.00",
        "merchants_active": 0,
        "currency": None,
    }
    assert body["totals_by_currency"] == []


async def test_a_failing_shard_is_reported_and_the_others_are_still_merged(
    client: httpx.AsyncClient, seeded: FakeServices
) -> None:
    seeded.analytics.failing = {1}
    response = await client.get(URL, headers=operator())
    assert response.status_code == 200
    body = response.json()
    assert body["complete"] is False
    assert [(s["id"], s["ok"], s.get("error", {}).get("code")) for s in body["shards"]] == [
        (0, True, None),
        (1, False, "unavailable"),
    ]
    assert body["shards"][1]["error"]["message"]  # the gateway's wording, not the backend's
    assert [(d["metric_date"], d["invoices_created"]) for d in body["data"]] == [
        ("2026-01-02", 2),
        ("2026-01-05", 3),
    ]
    assert body["totals"]["amount_created"] == "10.125"


async def test_a_shard_past_the_deadline_is_reported_as_deadline_exceeded(
    client: httpx.AsyncClient, seeded: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "SHARD_DEADLINE_SECONDS", 0.2)
    seeded.analytics.stalled = {0}
    response = await client.get(URL, headers=operator())
    assert response.status_code == 200
    body = response.json()
    assert [(s["id"], s["ok"], s.get("error", {}).get("code")) for s in body["shards"]] == [
        (0, False, "deadline_exceeded"),
        (1, True, None),
    ]
    assert body["totals"]["invoices_created"] == 1


async def test_an_unreachable_shard_is_reported_not_dropped(seeded: FakeServices) -> None:
    async for client in serve(create_app(make_config(await split(seeded)))):
        response = await client.get(URL, headers=operator())
        assert response.status_code == 200
        body = response.json()
        assert [(s["id"], s["ok"]) for s in body["shards"]] == [(0, True), (1, False)]
        assert body["shards"][1]["error"]["code"] == "unavailable"
        assert body["totals"]["invoices_created"] == 5


async def test_when_no_shard_answers_it_is_a_503_naming_each(
    client: httpx.AsyncClient, seeded: FakeServices
) -> None:
    seeded.analytics.failing = {0, 1}
    response = await client.get(URL, headers=operator())
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert [d["field"] for d in error["details"]] == ["shards[0]", "shards[1]"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [("from", "is required"), ("to", "is required")]),
        ("?from=2026-01-01", [("to", "is required")]),
        ("?from=2026-1-1&to=2026-01-31", [("from", "must be a date as YYYY-MM-DD")]),
        ("?from=2026-02-30&to=2026-03-01", [("from", "must be a date as YYYY-MM-DD")]),
        ("?from=2026-02-01&to=2026-01-31", [("to", "must not be before from")]),
        ("?from=2025-01-01&to=2026-01-02", [("to", "the range may cover at most 366 days")]),
    ],
)
async def test_bad_dates_are_a_422_naming_each_field_before_any_shard_is_asked(
    client: httpx.AsyncClient, services: FakeServices, query: str, expected: list[tuple[str, str]]
) -> None:
    response = await client.get(f"/v1/admin/platform-metrics{query}", headers=operator())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_argument"
    assert [(d["field"], d["reason"]) for d in error["details"]] == expected
    assert shard_calls(services) == []


async def test_platform_metrics_need_the_operator_token(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    assert (await client.get(URL)).status_code == 401
    assert (await client.get(URL, headers=bearer("not-a-token"))).status_code == 401
    response = await client.get(URL, headers=bearer(merchant.key))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert shard_calls(services) == []
