"""Webhooks as a merchant uses them over HTTP: register an endpoint against a receiver on this
machine, create an invoice, receive a signed delivery and read its log; another merchant sees 404."""

from __future__ import annotations

import json
import uuid

import httpx

from services.merchant.webhooks import signing
from tests.common.support import poll
from tests.e2e.test_checkout_flow import bearer, invoice_body, onboard
from tests.merchant.webhook_support import receiver


async def test_a_registered_endpoint_gets_a_signed_delivery_and_its_log_is_readable(
    http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    _, key = await onboard(http, operator, f"hooks-{tag}@shop.test")
    _, thief = await onboard(http, operator, f"thief-{tag}@shop.test")
    async with receiver() as hook:
        refused = await http.post(
            "/v1/webhook-endpoints",
            json={"url": "http://169.254.169.254/latest/meta-data/", "events": ["*"]},
            headers=bearer(key),
        )
        assert refused.status_code == 422 and refused.json()["error"]["details"][0]["field"] == "url"

        registered = await http.post(
            "/v1/webhook-endpoints",
            json={"url": hook.url(), "events": ["invoice.created"]},
            headers=bearer(key),
        )
        assert registered.status_code == 201, registered.text
        endpoint = registered.json()
        invoice = await http.post("/v1/invoices", json=invoice_body(), headers=bearer(key))
        assert invoice.status_code == 201, invoice.text

        await poll(lambda: len(hook.received) == 1, timeout=20, what="the webhook POST")
        got = hook.received[0]
        signing.verify(endpoint["secret"], got.body, got.headers["checkout-signature"])
        body = json.loads(got.body)
        assert body["type"] == "invoice.created" and body["data"]["invoice_id"] == invoice.json()["id"]
        assert body["id"] == got.headers["checkout-event-id"]

        path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"

        async def logged() -> bool:
            listed = await http.get(path, headers=bearer(key))
            data = listed.json()["data"]
            return len(data) == 1 and data[0]["status"] == "succeeded"

        await poll(logged, what="the delivery logged as succeeded")
        [delivery] = (await http.get(path, headers=bearer(key))).json()["data"]
        assert delivery["event_id"] == body["id"] and delivery["attempt_log"][0]["response_code"] == 200

        assert (await http.get(path, headers=bearer(thief))).status_code == 404
        stolen = await http.post(f"/v1/webhook-deliveries/{delivery['id']}/redeliver", headers=bearer(thief))
        assert stolen.status_code == 404
        again = await http.post(f"/v1/webhook-deliveries/{delivery['id']}/redeliver", headers=bearer(key))
        assert again.status_code == 202
        await poll(lambda: len(hook.received) == 2, what="the redelivery")
        assert hook.received[1].headers["checkout-event-id"] == body["id"]
