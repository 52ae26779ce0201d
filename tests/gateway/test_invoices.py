from __future__ import annotations

import uuid

import httpx
from starlette.applications import Starlette

from libs.common.cache import invoice_key
from services.gateway.state import GatewayState
from tests.gateway.conftest import Merchant, bearer, new_merchant
from tests.gateway.fakes import FakeServices

INVOICE = {
    "title": "Order 7",
    "description": "two teas",
    "items": [{"name": "tea", "quantity": "2", "unit_price": "12.50"}],
    "tax": "0.00",
    "currency": "USD",
    "crypto_currency": "ETH",
    "payment_tolerance": {"underpaid_percent": "1.0"},
    "metadata": {"order": 7},
}


async def create(client: httpx.AsyncClient, merchant: Merchant, **extra: object) -> httpx.Response:
    return await client.post("/v1/invoices", json={**INVOICE, **extra}, headers=bearer(merchant.key))


async def test_creating_an_invoice_returns_201_with_the_contract_fields(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    response = await create(client, merchant)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["merchant_id"] == merchant.id
    assert body["total"] == "25.00"
    assert body["items"] == INVOICE["items"]
    assert body["paid_at"] is None
    assert body["payment_tolerance"] == {"underpaid_percent": "1.0"}
    assert body["metadata"] == {"order": 7}
    assert set(body["exchange_rate"]) >= {"rate", "source", "fetched_at"}
    assert services.recorder.last("CreateInvoice")["x-actor"].startswith("merchant:")


async def test_a_merchant_id_in_the_body_is_refused_not_trusted(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await create(client, merchant, merchant_id=str(uuid.uuid4()))
    assert response.status_code == 422


async def test_a_services_field_violation_becomes_a_422_with_details(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await create(client, merchant, currency="XXX")
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [{"field": "currency", "reason": "only USD is priced"}]


async def test_a_key_without_invoices_write_cannot_create(client: httpx.AsyncClient) -> None:
    reader = await new_merchant(client, "reader@example.com", permissions=["invoices:read"])
    assert (await create(client, reader)).status_code == 403


async def test_another_merchants_invoice_is_404_even_when_cached(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    other = await new_merchant(client, "thief@example.com")
    invoice_id = (await create(client, merchant)).json()["id"]
    own = await client.get(f"/v1/invoices/{invoice_id}", headers=bearer(merchant.key))
    assert own.status_code == 200  # and now it sits in the hot cache
    stolen = await client.get(f"/v1/invoices/{invoice_id}", headers=bearer(other.key))
    assert stolen.status_code == 404


async def test_a_cached_invoice_is_served_without_the_service(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices, app: Starlette
) -> None:
    invoice_id = (await create(client, merchant)).json()["id"]
    state = app.state.gateway
    assert isinstance(state, GatewayState)
    if not await state.cache.ping():
        return  # no Redis here: the fail-open path is covered elsewhere
    await client.get(f"/v1/invoices/{invoice_id}", headers=bearer(merchant.key))
    calls = len([c for c in services.recorder.calls if c[0] == "GetInvoice"])
    again = await client.get(f"/v1/invoices/{invoice_id}", headers=bearer(merchant.key))
    assert again.status_code == 200
    assert len([c for c in services.recorder.calls if c[0] == "GetInvoice"]) == calls
    await state.cache.invalidate(invoice_key(invoice_id))


async def test_search_is_not_captured_by_the_invoice_id_route(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    await create(client, merchant)
    response = await client.get("/v1/invoices/search?q=order", headers=bearer(merchant.key))
    assert response.status_code == 200
    assert [i["title"] for i in response.json()["data"]] == ["Order 7"]
    assert response.json()["next_cursor"] is None


async def test_search_without_q_is_a_422_on_q(client: httpx.AsyncClient, merchant: Merchant) -> None:
    for query in ("", "?q=", "?q=%20%20"):
        response = await client.get(f"/v1/invoices/search{query}", headers=bearer(merchant.key))
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["field"] == "q"


async def test_list_filters_are_validated_field_by_field(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.get(
        "/v1/invoices?status=lost&created_after=yesterday&customer_id=42&limit=0",
        headers=bearer(merchant.key),
    )
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"status", "created_after", "customer_id", "limit"}


async def test_list_returns_the_merchants_invoices(client: httpx.AsyncClient, merchant: Merchant) -> None:
    await create(client, merchant)
    response = await client.get(
        "/v1/invoices?status=pending&created_after=2020-01-01T00:00:00Z", headers=bearer(merchant.key)
    )
    assert response.status_code == 200
    assert len(response.json()["data"]) == 1


async def test_a_slow_service_is_a_504(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices, app: Starlette
) -> None:
    state = app.state.gateway
    assert isinstance(state, GatewayState)
    state.backends.deadline = 0.2
    services.invoices.delay = 1.0
    response = await create(client, merchant)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"


async def test_the_public_checkout_shows_only_the_payer_fields(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice_id = (await create(client, merchant)).json()["id"]
    response = await client.get(f"/v1/checkout/{invoice_id}")
    assert response.status_code == 200
    assert set(response.json()) == {
        "id", "title", "status", "total", "currency", "crypto_currency", "crypto_amount",
        "amount_paid", "payment_address", "payment_uri", "expires_at", "overpaid", "paid_late",
        "payments",
    }  # fmt: skip


async def test_an_unknown_checkout_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/checkout/{uuid.uuid4()}")
    assert response.status_code == 404
