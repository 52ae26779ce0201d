"""Invoices over HTTP, against the real invoice service."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from starlette.applications import Starlette

from libs.common.cache import invoice_key
from services.gateway.app import create_app
from services.gateway.schemas import invoices as schemas
from services.invoice import state
from tests.common.support import poll
from tests.gateway.conftest import INVOICE, Merchant, Platform, create_invoice, new_merchant, serve, state_of


async def test_creating_an_invoice_returns_201_with_the_contract_fields(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.post(
        "/v1/invoices",
        json={**INVOICE, "tax": "2.00", "customer_email": "buyer@example.com", "metadata": {"order": 42}},
        headers=merchant.auth,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert {
        "id", "merchant_id", "customer_id", "title", "description", "items", "subtotal", "tax", "total",
        "currency", "crypto_currency", "crypto_amount", "payment_address", "payment_uri", "status",
        "exchange_rate", "payment_tolerance", "expires_at", "created_at", "updated_at", "paid_at",
    } <= set(body)  # fmt: skip
    assert (body["subtotal"], body["tax"], body["total"]) == ("25.00", "2.00", "27.00")
    assert body["merchant_id"] == merchant.id and body["status"] == "pending"
    assert body["metadata"] == {"order": 42} and body["customer_id"] is not None
    assert body["exchange_rate"]["source"] == "fixed" and body["paid_at"] is None


async def test_a_merchant_id_in_the_body_is_refused_not_trusted(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.post(
        "/v1/invoices", json={**INVOICE, "merchant_id": str(uuid.uuid4())}, headers=merchant.auth
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [{"field": "merchant_id", "reason": "is not a known field"}]


async def test_a_services_field_violation_becomes_a_422_with_details(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    # The schema cannot know the total, which the invoice service computes and refuses at 0.
    body = {**INVOICE, "items": [{"name": "x", "quantity": "0.001", "unit_price": "0.01"}]}
    response = await client.post("/v1/invoices", json=body, headers=merchant.auth)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [{"field": "total", "reason": "must be greater than 0"}]


async def test_a_key_without_invoices_write_cannot_create(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    reader = await new_merchant(client, operator, permissions=["invoices:read"])
    response = await client.post("/v1/invoices", json=INVOICE, headers=reader.auth)
    assert response.status_code == 403


async def test_another_merchants_invoice_is_404_even_when_cached(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant, app: Starlette
) -> None:
    other = await new_merchant(client, operator)
    invoice_id = (await create_invoice(client, merchant))["id"]
    own = await client.get(f"/v1/invoices/{invoice_id}", headers=merchant.auth)
    assert own.status_code == 200
    assert await state_of(app).cache.get(invoice_key(invoice_id)) is not None  # it sits in the hot cache
    stolen = await client.get(f"/v1/invoices/{invoice_id}", headers=other.auth)
    assert stolen.status_code == 404


async def test_search_is_not_captured_by_the_invoice_id_route(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    await create_invoice(client, merchant, title="Order seven")
    await create_invoice(client, merchant, title="Tea")
    response = await client.get("/v1/invoices/search?q=order", headers=merchant.auth)
    assert response.status_code == 200, response.text
    assert [i["title"] for i in response.json()["data"]] == ["Order seven"]
    assert response.json()["next_cursor"] is None


async def test_search_without_q_is_a_422_on_q(client: httpx.AsyncClient, merchant: Merchant) -> None:
    for query in ("", "?q=", "?q=%20%20"):
        response = await client.get(f"/v1/invoices/search{query}", headers=merchant.auth)
        assert response.status_code == 422, query
        assert response.json()["error"]["details"][0]["field"] in ("q", "query")


async def test_list_filters_are_validated_field_by_field(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.get(
        "/v1/invoices?status=lost&created_after=yesterday&customer_id=42&limit=0", headers=merchant.auth
    )
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"status", "created_after", "customer_id", "limit"}


async def test_list_returns_the_merchants_invoices_newest_first_in_pages(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    ids = [(await create_invoice(client, merchant, title=f"n{n}"))["id"] for n in range(3)]
    first = (await client.get("/v1/invoices?limit=2&status=pending", headers=merchant.auth)).json()
    assert [i["id"] for i in first["data"]] == ids[::-1][:2]
    rest = (
        await client.get(f"/v1/invoices?limit=2&cursor={first['next_cursor']}", headers=merchant.auth)
    ).json()
    assert [i["id"] for i in rest["data"]] == ids[:1] and rest["next_cursor"] is None


async def test_every_status_of_the_lifecycle_is_a_valid_list_filter(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    for status in ("pending", "partial", "paid", "confirmed", "expired", "cancelled", "invalid"):
        response = await client.get(f"/v1/invoices?status={status}", headers=merchant.auth)
        assert response.status_code == 200, (status, response.text)


def test_the_api_names_the_invoice_statuses_of_the_aggregate_not_a_copy() -> None:
    assert schemas.STATUSES is state.STATUSES


async def test_a_slow_service_is_a_504(client: httpx.AsyncClient, merchant: Merchant, app: Starlette) -> None:
    state_of(app).backends.deadline = 0.000001
    response = await client.post("/v1/invoices", json=INVOICE, headers=merchant.auth)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"


async def test_the_public_checkout_shows_only_the_payer_fields(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice_id = (await create_invoice(client, merchant))["id"]
    response = await client.get(f"/v1/checkout/{invoice_id}")
    assert response.status_code == 200
    assert set(response.json()) == {
        "id", "title", "status", "total", "currency", "crypto_currency", "crypto_amount",
        "amount_paid", "payment_address", "payment_uri", "expires_at", "overpaid", "paid_late",
        "payments", "refunds",  # the payer's own payments, and refunds owed to the payer
    }  # fmt: skip


async def test_an_unknown_checkout_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/v1/checkout/{uuid.uuid4()}")).status_code == 404


def view_reads(kind: str, result: str) -> float:
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value("gateway_view_cache_lookups_total", {"kind": kind, "result": result}) or 0.0
    )


async def test_the_invoice_and_checkout_views_are_served_from_memory_until_the_invoice_changes(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice_id = (await create_invoice(client, merchant))["id"]
    for path, kind, headers in (
        (f"/v1/invoices/{invoice_id}", "invoice", merchant.auth),
        (f"/v1/checkout/{invoice_id}", "checkout", {}),
    ):

        async def from_memory(path: str = path, kind: str = kind, headers: dict[str, str] = headers) -> bool:
            # The invoice's own creation event drops a view rendered before it was heard.
            first = await client.get(path, headers=headers)
            before = view_reads(kind, "memory")
            again = await client.get(path, headers=headers)
            return view_reads(kind, "memory") == before + 1 and again.content == first.content

        await poll(from_memory, what=f"the {kind} view to be served from memory")
    await client.post(f"/v1/invoices/{invoice_id}/cancel", headers=merchant.auth)
    assert (await client.get(f"/v1/checkout/{invoice_id}")).json()["status"] == "cancelled"
    assert (await client.get(f"/v1/invoices/{invoice_id}", headers=merchant.auth)).json()[
        "status"
    ] == "cancelled"


async def test_one_invoice_event_drops_the_views_and_wakes_the_payer_pages_open_on_it(
    platform: Platform, client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice_id = (await create_invoice(client, merchant))["id"]
    key = uuid.UUID(invoice_id)
    replica = create_app(platform.config)  # a gateway that only hears of the change on NATS
    async with serve(replica) as payer:
        state = state_of(replica)
        assert (await payer.get(f"/pay/{invoice_id}/status")).json()["status"] == "pending"
        watch = state.live.watch(key)  # what a payer's open page waits on
        try:
            cancelled = await client.post(f"/v1/invoices/{invoice_id}/cancel", headers=merchant.auth)
            assert cancelled.status_code == 200

            async def woken_to_cancelled() -> bool:
                await asyncio.wait_for(watch.changed.wait(), timeout=5)
                watch.changed.clear()
                # Woken only with its views dropped: what the page reads now is fresh.
                assert state.views.get("payer", key) is None and state.views.get("checkout", key) is None
                status = (await payer.get(f"/pay/{invoice_id}/status")).json()["status"]
                return bool(status == "cancelled")

            # The creation event may wake it first; the cancellation's must follow.
            await poll(woken_to_cancelled, what="the open page to be woken to the cancellation")
        finally:
            watch.close()


async def test_every_invoice_answer_links_the_payers_page_at_the_public_address(
    platform: Platform, operator: dict[str, str]
) -> None:
    app = create_app(platform.gateway_config(public_base_url="https://pay.example"))
    async with serve(app) as client:
        merchant = await new_merchant(client, operator)
        invoice = await create_invoice(client, merchant, title="Linked beans")
        url = f"https://pay.example/pay/{invoice['id']}"
        answers = [
            invoice,
            (await client.get(f"/v1/invoices/{invoice['id']}", headers=merchant.auth)).json(),
            (await client.get("/v1/invoices", headers=merchant.auth)).json()["data"][0],
            (await client.get("/v1/invoices/search?q=linked", headers=merchant.auth)).json()["data"][0],
            (await client.post(f"/v1/invoices/{invoice['id']}/cancel", headers=merchant.auth)).json(),
        ]
    assert [a["checkout_url"] for a in answers] == [url] * 5
