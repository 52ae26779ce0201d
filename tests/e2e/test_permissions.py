"""API key permissions as a merchant meets them over HTTP, against the real services: a limited
key cannot mint a stronger one, and a publishable key creates invoices and does nothing else
(issue 9, items 3 and 4)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.e2e.test_checkout_flow import bearer, invoice_body, onboard


async def issue(
    http: httpx.AsyncClient, merchant_id: str, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await http.post(
        f"/v1/merchants/{merchant_id}/api-keys", json={"name": "k", **body}, headers=headers
    )


async def test_a_key_holding_only_api_keys_write_cannot_mint_a_stronger_key(
    http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    merchant, _ = await onboard(http, operator, f"mint-{uuid.uuid4().hex[:6]}@shop.test")
    limited = await issue(http, merchant["id"], operator, permissions=["api_keys:write"])
    assert limited.status_code == 201, limited.text
    as_limited = bearer(limited.json()["key"])

    empty = await issue(http, merchant["id"], as_limited, permissions=[])
    assert empty.status_code == 201, empty.text
    assert empty.json()["permissions"] == []
    refused = await http.post("/v1/invoices", json=invoice_body(), headers=bearer(empty.json()["key"]))
    assert refused.status_code == 403

    web = await issue(
        http, merchant["id"], as_limited, key_type="publishable", permissions=["invoices:write"]
    )
    assert web.status_code == 403 and web.json()["error"]["code"] == "permission_denied"
    default_web = await issue(http, merchant["id"], as_limited, key_type="publishable")
    assert default_web.status_code == 201 and default_web.json()["permissions"] == []


async def test_a_publishable_key_creates_invoices_and_cannot_cancel_or_read_them(
    http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    merchant, secret = await onboard(http, operator, f"web-{uuid.uuid4().hex[:6]}@shop.test")
    leaky = await issue(
        http, merchant["id"], operator, key_type="publishable", permissions=["invoices:cancel"]
    )
    assert leaky.status_code == 422 and leaky.json()["error"]["details"][0]["field"] == "permissions"
    issued = await issue(http, merchant["id"], operator, key_type="publishable")
    assert issued.status_code == 201 and issued.json()["permissions"] == ["invoices:write"]
    web = bearer(issued.json()["key"])

    created = await http.post("/v1/invoices", json=invoice_body(), headers=web)
    assert created.status_code == 201, created.text
    invoice_id = created.json()["id"]
    cancel = await http.post(f"/v1/invoices/{invoice_id}/cancel", json={}, headers=web)
    assert cancel.status_code == 403 and "invoices:cancel" in cancel.json()["error"]["message"]
    assert (await http.get(f"/v1/invoices/{invoice_id}", headers=web)).status_code == 403
    # The merchant's secret key (invoices:cancel among its defaults) still cancels.
    cancelled = await http.post(f"/v1/invoices/{invoice_id}/cancel", json={}, headers=bearer(secret))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
