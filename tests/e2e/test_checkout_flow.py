"""End to end through the gateway over HTTP, against real service processes, PostgreSQL, NATS
and Redis: the first real flow a merchant goes through."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import httpx

from libs.common import ids
from libs.common.config import Config
from libs.common.shardmap import ShardMap, slot_for_email
from tests.common.support import poll
from tools.devstack import DEMO_ETHEREUM_XPUB, Stack


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def onboard(
    http: httpx.AsyncClient, operator: dict[str, str], email: str
) -> tuple[dict[str, Any], str]:
    created = await http.post(
        "/v1/merchants",
        json={
            "business_name": f"Shop {email}",
            "contact_email": email,
            "wallets": {"ethereum": DEMO_ETHEREUM_XPUB},
        },
        headers=operator,
    )
    assert created.status_code == 201, created.text
    merchant = created.json()
    issued = await http.post(
        f"/v1/merchants/{merchant['id']}/api-keys", json={"name": "server"}, headers=operator
    )
    assert issued.status_code == 201, issued.text
    return merchant, issued.json()["key"]


def invoice_body(title: str = "Coffee beans", email: str = "buyer@example.com") -> dict[str, Any]:
    return {
        "title": title,
        "description": "Single origin, whole bean",
        "items": [{"name": "Beans 1kg", "quantity": "2", "unit_price": "12.50"}],
        "tax": "1.25",
        "currency": "USD",
        "crypto_currency": "ETH",
        "customer_email": email,
    }


async def test_merchant_api_key_invoice_customer_and_analytics_flow(
    http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    # Placement is by the email's slot: pick emails that land one merchant on each shard.
    shard_map = ShardMap.even(2)
    emails: dict[int, str] = {}
    for n in range(1000):
        email = f"owner{n}-{tag}@shop.test"
        emails.setdefault(shard_map.shard_for_slot(slot_for_email(email)), email)
    merchants = [await onboard(http, operator, emails[shard]) for shard in (0, 1)]
    assert [m["shard"] for m, _ in merchants] == [0, 1]
    (merchant, key), (_, other_key) = merchants[0], merchants[1]

    created = await http.post("/v1/invoices", json=invoice_body(f"Coffee {tag}"), headers=bearer(key))
    assert created.status_code == 201, created.text
    invoice = created.json()
    assert invoice["status"] == "pending"
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("25.00", "1.25", "26.25")
    assert invoice["crypto_amount"] == "0.010937500000000000"  # 26.25 / 2400, to 18 decimals
    assert invoice["payment_uri"].startswith(f"ethereum:{invoice['payment_address']}@1337?value=")
    assert invoice["paid_at"] is None and invoice["merchant_id"] == merchant["id"]
    assert created.headers["X-Request-Id"]

    fetched = await http.get(f"/v1/invoices/{invoice['id']}", headers=bearer(key))
    assert fetched.status_code == 200 and fetched.json()["id"] == invoice["id"]
    listed = await http.get("/v1/invoices?limit=10", headers=bearer(key))
    assert [i["id"] for i in listed.json()["data"]] == [invoice["id"]]
    found = await http.get("/v1/invoices/search", params={"q": f"coffee {tag}"}, headers=bearer(key))
    assert [i["id"] for i in found.json()["data"]] == [invoice["id"]]

    async def customer_appears() -> bool:
        response = await http.get("/v1/customers", params={"email": "buyer@example.com"}, headers=bearer(key))
        return response.status_code == 200 and len(response.json()["data"]) == 1

    await poll(customer_appears, timeout=20, what="the customer projected from invoice.created")
    customers = (await http.get("/v1/customers", headers=bearer(key))).json()["data"]
    assert customers[0]["id"] == invoice["customer_id"]

    today = dt.datetime.now(dt.UTC).date().isoformat()

    async def analytics_follow() -> bool:
        response = await http.get(f"/v1/analytics/daily?from={today}&to={today}", headers=bearer(key))
        data = response.json().get("data", [])
        return response.status_code == 200 and len(data) == 1 and data[0]["invoices_created"] == 1

    await poll(analytics_follow, timeout=20, what="the day's invoices_created")
    day = (await http.get(f"/v1/analytics/daily?from={today}&to={today}", headers=bearer(key))).json()[
        "data"
    ][0]
    assert day["amount_created"] in ("26.25", "26.25000000")
    assert day["currency"] == "USD"  # one row per currency; this merchant invoices in dollars

    # Another merchant's key sees nothing of this merchant's.
    assert (await http.get(f"/v1/invoices/{invoice['id']}", headers=bearer(other_key))).status_code == 404
    assert (
        await http.get(f"/v1/customers/{invoice['customer_id']}", headers=bearer(other_key))
    ).status_code == 404
    assert (await http.get(f"/v1/merchants/{merchant['id']}", headers=bearer(other_key))).status_code == 404

    # The payer's view needs no key and shows nothing else of the merchant's.
    checkout = await http.get(f"/v1/checkout/{invoice['id']}")
    assert checkout.status_code == 200
    assert set(checkout.json()) == {
        "id", "title", "status", "total", "currency", "crypto_currency", "crypto_amount",
        "amount_paid", "payment_address", "payment_uri", "expires_at",
        "overpaid", "paid_late", "payments",  # the payer's own payments
        "refunds",  # and refunds owed to the payer
    }  # fmt: skip

    shards = (await http.get("/v1/admin/shards", headers=operator)).json()["shards"]
    assert [s["id"] for s in shards] == [0, 1] and all(s["healthy"] for s in shards)
    assert sum(s["slots"] for s in shards) == 4096


async def test_bad_invoice_gets_422_with_field_details_and_leaves_nothing_behind(
    http: httpx.AsyncClient, operator: dict[str, str], stack: Stack
) -> None:
    merchant, key = await onboard(http, operator, f"strict-{uuid.uuid4().hex[:6]}@shop.test")
    bad = invoice_body()
    bad["items"] = [{"name": "", "quantity": "0", "unit_price": "-1"}]
    bad["currency"] = "XXX"
    response = await http.post("/v1/invoices", json=bad, headers=bearer(key))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_argument" and error["request_id"]
    fields = {d["field"] for d in error["details"]}
    assert {"items[0].name", "items[0].quantity", "items[0].unit_price", "currency"} <= fields

    listed = await http.get("/v1/invoices", headers=bearer(key))
    assert listed.json()["data"] == []
    config = Config(
        database_url=stack.servers.database_url, database_prefix=stack.extra_env["CHECKOUT_DATABASE_PREFIX"]
    )
    shard = merchant["shard"]
    conn = await asyncpg.connect(config.shard_dsn(shard))
    try:
        events = await conn.fetchval(
            "SELECT count(*) FROM invoice.events WHERE event_data->>'merchant_id' = $1", merchant["id"]
        )
    finally:
        await conn.close()
    assert events == 0


async def test_a_revoked_key_gets_401_at_once(http: httpx.AsyncClient, operator: dict[str, str]) -> None:
    _, key = await onboard(http, operator, f"revoke-{uuid.uuid4().hex[:6]}@shop.test")
    keys = (await http.get("/v1/api-keys", headers=bearer(key))).json()["data"]
    assert (await http.delete(f"/v1/api-keys/{keys[0]['id']}", headers=bearer(key))).status_code == 200
    response = await http.get("/v1/invoices", headers=bearer(key))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


async def test_idempotency_key_replays_the_first_invoice_and_rejects_another_body(
    http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    _, key = await onboard(http, operator, f"idem-{uuid.uuid4().hex[:6]}@shop.test")
    headers = {**bearer(key), "Idempotency-Key": "order-1001"}
    first = await http.post("/v1/invoices", json=invoice_body("Order 1001"), headers=headers)
    again = await http.post("/v1/invoices", json=invoice_body("Order 1001"), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await http.post("/v1/invoices", json=invoice_body("Order 1002"), headers=headers)
    assert other.status_code == 409
    assert len((await http.get("/v1/invoices", headers=bearer(key))).json()["data"]) == 1


async def test_duplicate_contact_email_is_409_unknown_ids_are_404_and_malformed_ones_422(
    http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    email = f"dup-{uuid.uuid4().hex[:6]}@shop.test"
    await onboard(http, operator, email)
    again = await http.post(
        "/v1/merchants", json={"business_name": "Again", "contact_email": email.upper()}, headers=operator
    )
    assert again.status_code == 409
    _, key = await onboard(http, operator, f"ids-{uuid.uuid4().hex[:6]}@shop.test")
    assert (await http.get(f"/v1/invoices/{ids.new_id(5)}", headers=bearer(key))).status_code == 404
    malformed = await http.get("/v1/invoices/not-a-uuid", headers=bearer(key))
    assert malformed.status_code == 422 and malformed.json()["error"]["details"][0]["field"] == "id"


async def test_health_ready_metrics_and_openapi_are_served(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).status_code == 200
    assert (
        "http_requests" in (await http.get("/metrics")).text
        or (await http.get("/metrics")).status_code == 200
    )
    spec = (await http.get("/openapi.json")).json()
    assert "/v1/invoices" in spec["paths"] and "/v1/checkout/{invoice_id}" in spec["paths"]
