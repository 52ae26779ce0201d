"""/v1/webhook-endpoints, /v1/webhook-deliveries and /v1/notification-templates through the
gateway, against the fake merchant service: validation, permissions, ownership, the shapes."""

from __future__ import annotations

import uuid

import httpx
import pytest
from checkout.merchant.v1 import merchant_pb2

from tests.gateway.conftest import Merchant, bearer, new_merchant
from tests.gateway.fakes import FakeServices, now

ENDPOINT = {"url": "https://hooks.shop.test/checkout", "events": ["invoice.paid", "invoice.created"]}


async def create(client: httpx.AsyncClient, merchant: Merchant, **body: object) -> httpx.Response:
    return await client.post("/v1/webhook-endpoints", json={**ENDPOINT, **body}, headers=bearer(merchant.key))


def details(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {d["field"]: d["reason"] for d in response.json()["error"]["details"]}


async def test_creating_an_endpoint_returns_201_with_the_secret_once(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    response = await create(
        client, merchant, max_retries=3, retry_backoff="linear", allowed_ips=["203.0.113.0/24"]
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["secret"] == "whsec_fake"
    assert (body["url"], body["events"], body["status"]) == (ENDPOINT["url"], ENDPOINT["events"], "active")
    assert (body["max_retries"], body["retry_backoff"], body["timeout_seconds"]) == (3, "linear", 10)
    assert body["allowed_ips"] == ["203.0.113.0/24"] and body["last_error"] is None
    fetched = await client.get(f"/v1/webhook-endpoints/{body['id']}", headers=bearer(merchant.key))
    assert fetched.status_code == 200 and "secret" not in fetched.json()
    listed = await client.get("/v1/webhook-endpoints", headers=bearer(merchant.key))
    assert [e["id"] for e in listed.json()["data"]] == [body["id"]]
    assert listed.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"events": ["invoice.paid"]}, {"url": "is required"}),
        ({"url": "https://x.test/"}, {"events": "is required"}),
        ({**ENDPOINT, "events": []}, {"events": "must name at least one event type"}),
        ({**ENDPOINT, "events": "invoice.paid"}, {"events": "must be a JSON array of strings"}),
        ({**ENDPOINT, "max_retries": 21}, {"max_retries": "must be between 0 and 20"}),
        ({**ENDPOINT, "max_retries": "3"}, {"max_retries": "must be a JSON integer"}),
        ({**ENDPOINT, "timeout_seconds": 0}, {"timeout_seconds": "must be between 1 and 30"}),
        ({**ENDPOINT, "retry_backoff": "fibonacci"}, {"retry_backoff": "must be one of exponential, linear"}),
        ({**ENDPOINT, "allowed_ips": [1]}, {"allowed_ips[0]": "must be a string"}),
        ({**ENDPOINT, "secret": "mine"}, {"secret": "is not a known field"}),
        ({**ENDPOINT, "status": "disabled"}, {"status": "is not a known field"}),
    ],
)
async def test_a_malformed_endpoint_is_a_422_naming_the_field(
    client: httpx.AsyncClient, merchant: Merchant, body: dict[str, object], expected: dict[str, str]
) -> None:
    response = await client.post("/v1/webhook-endpoints", json=body, headers=bearer(merchant.key))
    assert details(response) == expected


async def test_the_services_refusal_of_a_private_url_is_a_422_on_url(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await create(client, merchant, url="http://10.0.0.1/hook")
    assert details(response) == {"url": "address 10.0.0.1 is private"}


async def test_patch_disables_and_checks_its_fields(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    endpoint_id = (await create(client, merchant)).json()["id"]
    path = f"/v1/webhook-endpoints/{endpoint_id}"
    bad = await client.patch(path, json={"status": "paused", "events": []}, headers=bearer(merchant.key))
    assert details(bad) == {
        "status": "must be one of active, disabled",
        "events": "must name at least one event type",
    }
    disabled = await client.patch(
        path, json={"status": "disabled", "allowed_ips": []}, headers=bearer(merchant.key)
    )
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    sent = services.merchants.updates[-1]
    assert sent.status == "disabled" and sent.replace_allowed_ips and not sent.replace_events
    assert not sent.HasField("url")


async def test_another_merchants_endpoint_and_deliveries_are_404(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    endpoint_id = (await create(client, merchant)).json()["id"]
    delivery_id = str(uuid.uuid4())
    services.merchants.deliveries[delivery_id] = merchant_pb2.WebhookDelivery(
        id=delivery_id, endpoint_id=endpoint_id, merchant_id=merchant.id, status="failed", created_at=now()
    )
    thief = await new_merchant(client, "thief@example.com")
    for method, path in [
        ("GET", f"/v1/webhook-endpoints/{endpoint_id}"),
        ("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        ("POST", f"/v1/webhook-deliveries/{delivery_id}/redeliver"),
        ("PATCH", f"/v1/webhook-endpoints/{endpoint_id}"),
    ]:
        response = await client.request(
            method, path, json={} if method == "PATCH" else None, headers=bearer(thief.key)
        )
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    own = await client.post(f"/v1/webhook-deliveries/{delivery_id}/redeliver", headers=bearer(merchant.key))
    assert own.status_code == 202 and own.json()["status"] == "pending"
    listed = await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=bearer(merchant.key))
    assert [d["id"] for d in listed.json()["data"]] == [delivery_id]


async def test_the_deliveries_list_passes_its_filters_and_checks_them(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    endpoint_id = (await create(client, merchant)).json()["id"]
    path = f"/v1/webhook-endpoints/{endpoint_id}/deliveries"
    bad = await client.get(path, params={"status": "lost", "limit": "0"}, headers=bearer(merchant.key))
    assert set(details(bad)) == {"status", "limit"}
    ok = await client.get(
        path,
        params={"status": "failed", "event_type": "invoice.paid", "limit": "5", "cursor": "abc"},
        headers=bearer(merchant.key),
    )
    assert ok.status_code == 200
    sent = services.merchants.delivery_queries[-1]
    assert (sent.status, sent.event_type, sent.limit, sent.cursor) == ("failed", "invoice.paid", 5, "abc")


async def test_webhooks_need_their_permissions(client: httpx.AsyncClient) -> None:
    reader = await new_merchant(client, "reader@example.com", permissions=["webhooks:read"])
    assert (await create(client, reader)).status_code == 403
    assert (await client.get("/v1/webhook-endpoints", headers=bearer(reader.key))).status_code == 200
    nobody = await new_merchant(client, "nobody@example.com", permissions=["invoices:read"])
    assert (await client.get("/v1/webhook-endpoints", headers=bearer(nobody.key))).status_code == 403
    assert (await client.get("/v1/notification-templates", headers=bearer(nobody.key))).status_code == 403


async def test_templates_are_validated_and_a_services_field_error_is_a_422(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    missing = await client.post(
        "/v1/notification-templates", json={"is_active": "yes"}, headers=bearer(merchant.key)
    )
    assert details(missing) == {
        "event_type": "is required",
        "subject": "is required",
        "body_template": "is required",
        "is_active": "must be true or false",
    }
    template = {"event_type": "invoice.paid", "subject": "Paid: ${title}", "body_template": "Thanks"}
    unknown = await client.post(
        "/v1/notification-templates",
        json={**template, "body_template": "Hi ${oops}", "recipient": "merchant"},
        headers=bearer(merchant.key),
    )
    assert details(unknown) == {"body_template": "unknown field ${oops}"}
    created = await client.post("/v1/notification-templates", json=template, headers=bearer(merchant.key))
    assert created.status_code == 201, created.text
    assert (created.json()["recipient"], created.json()["is_active"]) == ("customer", True)
