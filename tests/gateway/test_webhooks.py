"""/v1/webhook-endpoints, /v1/webhook-deliveries and /v1/notification-templates through the
gateway, against the real merchant service: validation, permissions, ownership, the shapes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.common.support import poll_for
from tests.gateway.conftest import Merchant, create_invoice, new_merchant

# Loopback is allowed for webhooks in this platform's config (never private networks).
ENDPOINT = {"url": "http://127.0.0.1:9/checkout", "events": ["invoice.paid", "invoice.created"]}


async def create(client: httpx.AsyncClient, merchant: Merchant, **body: object) -> httpx.Response:
    return await client.post("/v1/webhook-endpoints", json={**ENDPOINT, **body}, headers=merchant.auth)


def details(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {d["field"]: d["reason"] for d in response.json()["error"]["details"]}


async def test_creating_an_endpoint_returns_201_with_the_secret_once(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await create(
        client, merchant, max_retries=3, retry_backoff="linear", allowed_ips=["127.0.0.0/8"]
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert (body["url"], sorted(body["events"]), body["status"]) == (
        ENDPOINT["url"],
        sorted(ENDPOINT["events"]),
        "active",
    )
    assert (body["max_retries"], body["retry_backoff"], body["timeout_seconds"]) == (3, "linear", 10)
    assert body["allowed_ips"] == ["127.0.0.0/8"] and body["last_error"] is None
    fetched = await client.get(f"/v1/webhook-endpoints/{body['id']}", headers=merchant.auth)
    assert fetched.status_code == 200 and "secret" not in fetched.json()
    listed = await client.get("/v1/webhook-endpoints", headers=merchant.auth)
    assert [e["id"] for e in listed.json()["data"]] == [body["id"]]
    assert listed.json()["next_cursor"] is None


async def test_a_replayed_create_says_the_secret_cannot_be_shown_again(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    headers = {**merchant.auth, "Idempotency-Key": f"hook-{merchant.id}"}
    first = await client.post("/v1/webhook-endpoints", json=ENDPOINT, headers=headers)
    again = await client.post("/v1/webhook-endpoints", json=ENDPOINT, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["secret"].startswith("whsec_") and "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["secret"] is None and again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"events": ["invoice.paid"]}, {"url": "is required"}),
        ({"url": "https://x.test/"}, {"events": "is required"}),
        ({**ENDPOINT, "events": []}, {"events": "must not be empty"}),
        ({**ENDPOINT, "events": "invoice.paid"}, {"events": "must be a JSON array"}),
        ({**ENDPOINT, "events": ["invoice.lost"]}, {"events[0]": "must be one of *, " + "<any>"}),
        ({**ENDPOINT, "max_retries": 21}, {"max_retries": "must be at most 20"}),
        ({**ENDPOINT, "max_retries": "3"}, {"max_retries": "must be an integer"}),
        ({**ENDPOINT, "timeout_seconds": 0}, {"timeout_seconds": "must be at least 1"}),
        ({**ENDPOINT, "retry_backoff": "fibonacci"}, {"retry_backoff": "must be one of exponential, linear"}),
        ({**ENDPOINT, "allowed_ips": [1]}, {"allowed_ips[0]": "must be a string"}),
        ({**ENDPOINT, "secret": "mine"}, {"secret": "is not a known field"}),
        ({**ENDPOINT, "status": "disabled"}, {"status": "is not a known field"}),
    ],
)
async def test_a_malformed_endpoint_is_a_422_naming_the_field(
    client: httpx.AsyncClient, merchant: Merchant, body: dict[str, Any], expected: dict[str, str]
) -> None:
    response = await client.post("/v1/webhook-endpoints", json=body, headers=merchant.auth)
    found = details(response)
    assert set(found) == set(expected)
    for field, reason in expected.items():
        assert found[field].startswith(reason.replace("<any>", "").rstrip(", ")), (field, found[field])


async def test_the_services_refusal_of_a_private_url_is_a_422_on_url(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    found = details(await create(client, merchant, url="http://10.0.0.5/hook"))
    assert set(found) == {"url"} and "10.0.0.5" in found["url"]


async def test_patch_disables_and_checks_its_fields(client: httpx.AsyncClient, merchant: Merchant) -> None:
    endpoint_id = (await create(client, merchant)).json()["id"]
    response = await client.patch(
        f"/v1/webhook-endpoints/{endpoint_id}", json={"status": "disabled"}, headers=merchant.auth
    )
    assert response.status_code == 200 and response.json()["status"] == "disabled"
    bad = await client.patch(
        f"/v1/webhook-endpoints/{endpoint_id}",
        json={"status": "failing", "events": []},
        headers=merchant.auth,
    )
    assert set(details(bad)) == {"status", "events"}


async def test_another_merchants_endpoint_and_deliveries_are_404(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant
) -> None:
    other = await new_merchant(client, operator)
    endpoint_id = (await create(client, merchant)).json()["id"]
    for method, path in (
        ("GET", f"/v1/webhook-endpoints/{endpoint_id}"),
        ("DELETE", f"/v1/webhook-endpoints/{endpoint_id}"),
        ("POST", f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret"),
        ("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        ("GET", f"/v1/webhook-deliveries/{uuid.uuid4()}"),
        ("POST", f"/v1/webhook-deliveries/{uuid.uuid4()}/redeliver"),
    ):
        response = await client.request(method, path, headers=other.auth)
        assert response.status_code == 404, (method, path, response.text)


async def test_deliveries_are_listed_with_their_filters_and_the_filters_are_checked(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    endpoint_id = (await create(client, merchant, events=["invoice.created"], max_retries=0)).json()["id"]
    await create_invoice(client, merchant)
    path = f"/v1/webhook-endpoints/{endpoint_id}/deliveries"

    async def listed() -> list[dict[str, Any]] | None:
        data: list[dict[str, Any]] = (
            await client.get(f"{path}?event_type=invoice.created", headers=merchant.auth)
        ).json()["data"]
        return data or None

    [delivery] = await poll_for(listed, what="the invoice.created delivery")
    assert delivery["endpoint_id"] == endpoint_id and delivery["event_type"] == "invoice.created"
    one = await client.get(f"/v1/webhook-deliveries/{delivery['id']}", headers=merchant.auth)
    assert one.status_code == 200 and one.json()["id"] == delivery["id"]
    assert (await client.get(f"{path}?event_type=invoice.paid", headers=merchant.auth)).json()["data"] == []
    assert set(details(await client.get(f"{path}?status=lost&limit=500", headers=merchant.auth))) == {
        "status",
        "limit",
    }


async def test_webhooks_need_their_permissions(client: httpx.AsyncClient, operator: dict[str, str]) -> None:
    reader = await new_merchant(client, operator, permissions=["webhooks:read"])
    assert (await create(client, reader)).status_code == 403
    assert (await client.get("/v1/webhook-endpoints", headers=reader.auth)).status_code == 200
    nobody = await new_merchant(client, operator, permissions=["invoices:read"])
    assert (await client.get("/v1/webhook-endpoints", headers=nobody.auth)).status_code == 403


async def test_templates_are_validated_and_a_services_field_error_is_a_422(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    bad = await client.post(
        "/v1/notification-templates",
        json={"event_type": "invoice.lost", "subject": "", "body_template": "x", "is_active": "yes"},
        headers=merchant.auth,
    )
    assert set(details(bad)) == {"event_type", "subject", "is_active"}
    unknown = await client.post(
        "/v1/notification-templates",
        json={"event_type": "invoice.paid", "subject": "Paid", "body_template": "Hello ${no_such_thing}"},
        headers=merchant.auth,
    )
    assert set(details(unknown)) == {"body_template"}
    created = await client.post(
        "/v1/notification-templates",
        json={"event_type": "invoice.paid", "subject": "Paid", "body_template": "We got ${amount_paid}."},
        headers=merchant.auth,
    )
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    patched = await client.patch(
        f"/v1/notification-templates/{template_id}", json={"is_active": False}, headers=merchant.auth
    )
    assert patched.status_code == 200 and patched.json()["is_active"] is False
    listed = await client.get("/v1/notification-templates", headers=merchant.auth)
    assert [t["id"] for t in listed.json()["data"]] == [template_id]
    sent = await client.get(f"/v1/notification-deliveries?template_id={template_id}", headers=merchant.auth)
    assert sent.status_code == 200 and sent.json()["data"] == []
