"""What the HTTP edge refuses before a service sees it (issue 9, items 6, 9 and 10): NUL and
other unstorable text, JSON floats for money, bodies that are not JSON, and log lines a path
could forge."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import INVOICE, Merchant


def details(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 422, response.text
    body = response.json()["error"]
    assert body["code"] == "invalid_argument"
    found: list[dict[str, str]] = body["details"]
    return found


NUL = "\u0000"


async def test_a_nul_in_a_json_string_is_a_422_naming_the_field(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    body = {
        **INVOICE,
        "title": f"Coffee{NUL}beans",
        "items": [{"name": f"x{NUL}", "quantity": "1", "unit_price": "1"}],
    }
    found = details(await client.post("/v1/invoices", json=body, headers=merchant.auth))
    assert {(d["field"], d["reason"]) for d in found} == {
        ("title", "must not contain NUL (\\u0000) characters"),
        ("items[0].name", "must not contain NUL (\\u0000) characters"),
    }


async def test_a_nul_inside_metadata_values_or_keys_is_a_422_on_metadata(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    for metadata in ({"note": f"a{NUL}b"}, {f"k{NUL}": 1}, {"deep": [{"x": NUL}]}):
        found = details(
            await client.post("/v1/invoices", json={**INVOICE, "metadata": metadata}, headers=merchant.auth)
        )
        assert [d["field"] for d in found] == ["metadata"]


async def test_a_nul_in_a_query_string_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    found = details(await client.get("/v1/invoices/search?q=caf%00e", headers=merchant.auth))
    assert found == [{"field": "q", "reason": "must not contain NUL (\\u0000) characters"}]
    found = details(await client.get("/v1/customers?email=a%00@b.c", headers=merchant.auth))
    assert [d["field"] for d in found] == ["email"]


async def test_a_nul_in_a_path_parameter_is_a_422_naming_it(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    found = details(await client.get("/v1/invoices/%00", headers=merchant.auth))
    assert found == [{"field": "id", "reason": "must be an id (a lowercase UUID string)"}]


async def test_a_nul_in_the_settings_of_a_merchant_is_a_422(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    body = {"business_name": "Shop", "contact_email": "nul@example.com", "settings": {"greeting": NUL}}
    found = details(await client.post("/v1/merchants", json=body, headers=operator))
    assert [d["field"] for d in found] == ["settings"]


async def test_quantities_and_whole_prices_may_be_json_integers(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    body = {**INVOICE, "items": [{"name": "Beans", "quantity": 2, "unit_price": 12}], "tax": 1}
    response = await client.post("/v1/invoices", json=body, headers=merchant.auth)
    assert response.status_code == 201, response.text
    invoice = response.json()
    assert invoice["items"][0]["quantity"] == "2"
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("24.00", "1.00", "25.00")


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"name": "x", "quantity": "1", "unit_price": 12.5}, "items[0].unit_price"),
        ({"name": "x", "quantity": 1.5, "unit_price": "1"}, "items[0].quantity"),
    ],
)
async def test_a_json_float_for_money_is_a_422_saying_to_send_a_string(
    client: httpx.AsyncClient, merchant: Merchant, item: dict[str, Any], field: str
) -> None:
    found = details(
        await client.post("/v1/invoices", json={**INVOICE, "items": [item]}, headers=merchant.auth)
    )
    assert found[0]["field"] == field
    assert found[0]["reason"].startswith('must be a decimal string (send "')


async def test_integer_amounts_beyond_the_platform_bounds_are_a_422(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    body = {**INVOICE, "items": [{"name": "x", "quantity": 10**18, "unit_price": "1"}]}
    found = details(await client.post("/v1/invoices", json=body, headers=merchant.auth))
    assert found == [{"field": "items[0].quantity", "reason": "must be between 1 and 1000000"}]
    body = {**INVOICE, "items": [{"name": "x", "quantity": "1000000000000000000", "unit_price": "1"}]}
    found = details(await client.post("/v1/invoices", json=body, headers=merchant.auth))
    assert [d["field"] for d in found] == ["items[0].quantity"]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
async def test_a_body_not_sent_as_json_is_a_415(
    client: httpx.AsyncClient, merchant: Merchant, content_type: str | None
) -> None:
    headers = {**merchant.auth, **({"Content-Type": content_type} if content_type else {})}
    response = await client.post("/v1/invoices", content=b'{"title": "x"}', headers=headers)
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["details"] == [{"field": "Content-Type", "reason": "must be application/json"}]


async def test_json_with_a_charset_or_a_json_suffix_is_accepted(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    import json

    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = await client.post(
            "/v1/invoices",
            content=json.dumps(INVOICE).encode(),
            headers={**merchant.auth, "Content-Type": content_type},
        )
        assert response.status_code == 201, response.text


async def test_a_percent_encoded_line_break_in_the_path_cannot_forge_a_log_line(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "/v1/x%0D%0AGET /v1/admin/shards 200 0.1ms request_id=forged"
    with caplog.at_level(logging.INFO, logger="checkout.gateway.access"):
        await client.get(forged)
    [record] = [r for r in caplog.records if r.name == "checkout.gateway.access"]
    line = record.getMessage()
    assert "\n" not in line and "\r" not in line
    assert "\\r\\nGET /v1/admin/shards" in line


async def test_a_payer_event_stream_is_not_logged_as_a_slow_request(
    client: httpx.AsyncClient,
    merchant: Merchant,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.gateway import middleware

    created = await client.post("/v1/invoices", json=INVOICE, headers=merchant.auth)
    invoice_id = created.json()["id"]
    cancelled = await client.post(f"/v1/invoices/{invoice_id}/cancel", headers=merchant.auth)
    assert cancelled.status_code == 200, cancelled.text
    # Every request is "slow" now: the status read is logged, the stream (which ends at once for
    # a cancelled invoice, however long it would stay open otherwise) is not.
    monkeypatch.setattr(middleware, "SLOW_SECONDS", -1.0)
    with caplog.at_level(logging.INFO, logger="checkout.gateway.access"):
        stream = await client.get(f"/pay/{invoice_id}/events")
        status = await client.get(f"/pay/{invoice_id}/status")
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert status.status_code == 200
    logged = [r.getMessage() for r in caplog.records if r.name == "checkout.gateway.access"]
    assert any(f"/pay/{invoice_id}/status" in line for line in logged), logged
    assert not any(f"/pay/{invoice_id}/events" in line for line in logged), logged
