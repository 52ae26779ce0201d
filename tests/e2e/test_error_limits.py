"""An error too large for gRPC's trailers still reaches the client as itself: a 422 whose details
are capped and say how many were left out, never a transport error dressed as 429 or 500."""

from __future__ import annotations

import uuid

import httpx

from tests.e2e.test_checkout_flow import bearer, invoice_body, onboard


async def test_an_invoice_with_hundreds_of_bad_items_gets_a_capped_422(
    http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    _, key = await onboard(http, operator, f"many-{uuid.uuid4().hex[:6]}@shop.test")
    bad = invoice_body()
    # Three problems per item, each named by the invoice service: 300 field violations.
    bad["items"] = [{"name": "", "quantity": "0", "unit_price": "-1"}] * 100
    response = await http.post("/v1/invoices", json=bad, headers=bearer(key))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_argument"
    details = error["details"]
    assert details[0]["field"].startswith("items[")
    *named, more = details
    assert len(named) >= 10 and more["field"] == "*"
    assert more["reason"] == f"and {300 - len(named)} more problems"
    assert len(error["message"]) <= 1000
    assert "metadata" not in error["message"].lower() and "grpc" not in error["message"].lower()
