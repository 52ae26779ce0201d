"""Merchants and their API keys over HTTP, against the real merchant service."""

from __future__ import annotations

import uuid

import httpx

from libs.common import ids
from libs.common.shardmap import slot_for_email
from tests.gateway.conftest import Merchant, bearer, new_key, new_merchant, unique_email
from tools.devstack import DEMO_ETHEREUM_XPUB


async def test_creating_a_merchant_mints_an_id_in_the_emails_slot(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    email = unique_email()
    response = await client.post(
        "/v1/merchants",
        json={
            "business_name": "Shop",
            "contact_email": email,
            "plan_type": "pro",
            "settings": {"theme": "dark", "retries": 3, "rate_spread_percent": "0.5"},
            "wallets": {"ethereum": DEMO_ETHEREUM_XPUB},
        },
        headers=operator,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id", "business_name", "contact_email", "status", "plan_type", "settings", "wallets",
        "shard", "created_at", "updated_at",
    }  # fmt: skip
    assert body["settings"] == {"theme": "dark", "retries": 3, "rate_spread_percent": "0.5"}
    assert (body["plan_type"], body["wallets"]) == ("pro", {"ethereum": DEMO_ETHEREUM_XPUB})
    assert body["created_at"].endswith("Z")
    assert ids.slot_of(uuid.UUID(body["id"])) == slot_for_email(email)


async def test_a_duplicate_email_is_a_409(client: httpx.AsyncClient, operator: dict[str, str]) -> None:
    body = {"business_name": "Shop", "contact_email": unique_email()}
    assert (await client.post("/v1/merchants", json=body, headers=operator)).status_code == 201
    again = await client.post("/v1/merchants", json=body, headers=operator)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_exists"


async def test_an_idempotent_replay_returns_the_first_201_and_says_it_is_a_replay(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    email = unique_email()
    headers = {**operator, "Idempotency-Key": f"signup-{email}"}
    first = await client.post(
        "/v1/merchants", json={"business_name": "S", "contact_email": email}, headers=headers
    )
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    # The same body with its keys in another order and other spacing is the same request.
    again = await client.post(
        "/v1/merchants",
        content=f'{{"contact_email":"{email}",  "business_name":"S"}}'.encode(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = await client.post(
        "/v1/merchants", json={"business_name": "T", "contact_email": email}, headers=headers
    )
    assert other.status_code == 409


async def test_a_merchant_key_cannot_create_merchants(client: httpx.AsyncClient, merchant: Merchant) -> None:
    response = await client.post(
        "/v1/merchants", json={"business_name": "X", "contact_email": unique_email()}, headers=merchant.auth
    )
    assert response.status_code == 403


async def test_a_merchant_reads_itself_but_another_merchant_is_404(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant
) -> None:
    other = await new_merchant(client, operator)
    own = await client.get(f"/v1/merchants/{merchant.id}", headers=merchant.auth)
    assert own.status_code == 200 and own.json()["id"] == merchant.id
    assert (await client.get(f"/v1/merchants/{other.id}", headers=merchant.auth)).status_code == 404
    assert (await client.get(f"/v1/merchants/{other.id}", headers=operator)).status_code == 200


async def test_a_key_without_merchants_read_gets_403_on_its_own_merchant(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    merchant = await new_merchant(client, operator, permissions=["invoices:read"])
    assert (await client.get(f"/v1/merchants/{merchant.id}", headers=merchant.auth)).status_code == 403


async def test_patch_replaces_settings_and_wallets_and_the_next_get_sees_it(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.patch(
        f"/v1/merchants/{merchant.id}",
        json={"business_name": "Renamed", "settings": {"payment_tolerance": {"underpaid_percent": "2"}}},
        headers=merchant.auth,
    )
    assert response.status_code == 200, response.text
    seen = (await client.get(f"/v1/merchants/{merchant.id}", headers=merchant.auth)).json()
    assert seen["business_name"] == "Renamed"
    assert seen["settings"] == {"payment_tolerance": {"underpaid_percent": "2"}}


async def test_patch_with_an_unknown_field_or_a_bad_setting_is_a_422(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.patch(
        f"/v1/merchants/{merchant.id}",
        json={"status": "suspended", "settings": {"rate_spread_percent": "11"}},
        headers=merchant.auth,
    )
    assert response.status_code == 422
    assert {d["field"] for d in response.json()["error"]["details"]} == {
        "status",
        "settings.rate_spread_percent",
    }


async def test_a_publishable_key_cannot_change_the_merchants_wallets(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant
) -> None:
    key = await new_key(client, operator, merchant.id, key_type="publishable")
    response = await client.patch(
        f"/v1/merchants/{merchant.id}",
        json={"wallets": {"ethereum": DEMO_ETHEREUM_XPUB}},
        headers=bearer(key),
    )
    assert response.status_code == 403


async def test_listing_merchants_pages_newest_first_with_a_cursor(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    created = []
    for _ in range(3):
        body = {"business_name": "S", "contact_email": unique_email("page")}
        created.append((await client.post("/v1/merchants", json=body, headers=operator)).json()["id"])
    newest_first = sorted(created, key=lambda i: uuid.UUID(i).int, reverse=True)
    first = (await client.get("/v1/merchants?limit=2", headers=operator)).json()
    assert [m["id"] for m in first["data"]] == newest_first[:2]
    assert first["next_cursor"] == newest_first[1]
    rest = (await client.get(f"/v1/merchants?limit=1&cursor={first['next_cursor']}", headers=operator)).json()
    assert [m["id"] for m in rest["data"]] == newest_first[2:]


async def test_api_keys_issued_by_a_key_cannot_exceed_its_own_permissions(
    client: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    merchant = await new_merchant(client, operator, permissions=["api_keys:write", "invoices:read"])
    escalate = await client.post(
        f"/v1/merchants/{merchant.id}/api-keys",
        json={"name": "more", "permissions": ["invoices:write"]},
        headers=merchant.auth,
    )
    assert escalate.status_code == 403
    default = await client.post(
        f"/v1/merchants/{merchant.id}/api-keys", json={"name": "same"}, headers=merchant.auth
    )
    assert default.status_code == 201
    assert sorted(default.json()["permissions"]) == ["api_keys:write", "invoices:read"]


async def test_api_key_creation_returns_the_plaintext_once(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant
) -> None:
    response = await client.post(
        f"/v1/merchants/{merchant.id}/api-keys",
        json={"name": "ci", "expires_at": "2030-01-01T00:00:00Z"},
        headers=operator,
    )
    body = response.json()
    assert response.status_code == 201
    assert body["key"].startswith("ck_sk_")
    assert body["expires_at"] == "2030-01-01T00:00:00.000000Z"
    assert {"id", "key", "name", "key_type", "permissions", "status", "created_at"} <= set(body)
    listed = await client.get("/v1/api-keys", headers=merchant.auth)
    assert listed.status_code == 200
    assert all("key" not in k for k in listed.json()["data"])


async def test_a_replayed_key_creation_says_the_key_cannot_be_shown_again(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant
) -> None:
    headers = {**operator, "Idempotency-Key": f"key-{merchant.id}"}
    url = f"/v1/merchants/{merchant.id}/api-keys"
    first = await client.post(url, json={"name": "deploy"}, headers=headers)
    assert first.status_code == 201 and first.json()["key"].startswith("ck_sk_")
    again = await client.post(url, json={"name": "deploy"}, headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["key"] is None
    assert again.json()["id"] == first.json()["id"]
    # The first response's key is the one that works.
    assert (await client.get("/v1/api-keys", headers=bearer(first.json()["key"]))).status_code == 200
