from __future__ import annotations

import uuid

import httpx

from libs.common import ids
from libs.common.shardmap import slot_for_email
from tests.gateway.conftest import Merchant, bearer, new_merchant, operator
from tests.gateway.fakes import FakeServices


async def test_creating_a_merchant_mints_an_id_in_the_emails_slot(
    client: httpx.AsyncClient, services: FakeServices
) -> None:
    response = await client.post(
        "/v1/merchants",
        json={
            "business_name": "Shop",
            "contact_email": "a@example.com",
            "plan_type": "pro",
            "settings": {"theme": "dark", "retries": 3},
            "wallets": {"ethereum": "xpub123"},
        },
        headers=operator(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id", "business_name", "contact_email", "status", "plan_type", "settings", "wallets",
        "shard", "created_at", "updated_at",
    }  # fmt: skip
    assert body["settings"] == {"theme": "dark", "retries": 3}
    assert body["wallets"] == {"ethereum": "xpub123"}
    assert body["created_at"].endswith("Z")
    assert ids.slot_of(uuid.UUID(body["id"])) == slot_for_email("a@example.com")
    assert services.recorder.last("CreateMerchant")["x-actor"] == "operator"


async def test_a_duplicate_email_is_a_409(client: httpx.AsyncClient) -> None:
    body = {"business_name": "Shop", "contact_email": "dup@example.com"}
    assert (await client.post("/v1/merchants", json=body, headers=operator())).status_code == 201
    again = await client.post("/v1/merchants", json=body, headers=operator())
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_exists"


async def test_the_idempotency_key_and_body_hash_reach_the_service_and_the_replay_is_a_201(
    client: httpx.AsyncClient, services: FakeServices
) -> None:
    headers = {**operator(), "Idempotency-Key": "signup-1"}
    first = await client.post(
        "/v1/merchants", json={"business_name": "S", "contact_email": "i@example.com"}, headers=headers
    )
    metadata = services.recorder.last("CreateMerchant")
    again = await client.post(
        "/v1/merchants",
        content=b'{"contact_email":"i@example.com",  "business_name":"S"}',
        headers=headers,
    )
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert metadata["x-idempotency-key"] == "signup-1"
    assert services.recorder.last("CreateMerchant")["x-idempotency-hash"] == metadata["x-idempotency-hash"]


async def test_the_request_id_reaches_the_service_as_metadata(
    client: httpx.AsyncClient, services: FakeServices
) -> None:
    await client.post(
        "/v1/merchants",
        json={"business_name": "S", "contact_email": "r@example.com"},
        headers={**operator(), "X-Request-Id": "trace-me"},
    )
    assert services.recorder.last("CreateMerchant")["x-request-id"] == "trace-me"


async def test_a_merchant_key_cannot_create_merchants(client: httpx.AsyncClient, merchant: Merchant) -> None:
    response = await client.post(
        "/v1/merchants",
        json={"business_name": "S", "contact_email": "x@example.com"},
        headers=bearer(merchant.key),
    )
    assert response.status_code == 403


async def test_a_merchant_reads_itself_but_another_merchant_is_404(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    other = await new_merchant(client, "other@example.com")
    own = await client.get(f"/v1/merchants/{merchant.id}", headers=bearer(merchant.key))
    assert own.status_code == 200
    assert own.json()["id"] == merchant.id
    foreign = await client.get(f"/v1/merchants/{other.id}", headers=bearer(merchant.key))
    assert foreign.status_code == 404


async def test_a_key_without_merchants_read_gets_403_on_its_own_merchant(
    client: httpx.AsyncClient,
) -> None:
    merchant = await new_merchant(client, "scoped@example.com", permissions=["invoices:read"])
    response = await client.get(f"/v1/merchants/{merchant.id}", headers=bearer(merchant.key))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


async def test_patch_replaces_settings_and_wallets_and_the_next_get_sees_it(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    await client.get(f"/v1/merchants/{merchant.id}", headers=operator())  # warm the cache
    patched = await client.patch(
        f"/v1/merchants/{merchant.id}",
        json={"business_name": "New", "wallets": {"bitcoin": "zpub1"}, "settings": {"a": 1}},
        headers=bearer(merchant.key),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["wallets"] == {"bitcoin": "zpub1"}
    again = await client.get(f"/v1/merchants/{merchant.id}", headers=operator())
    assert again.json()["business_name"] == "New"
    assert again.json()["settings"] == {"a": 1}


async def test_patch_with_an_unknown_field_is_a_422(client: httpx.AsyncClient, merchant: Merchant) -> None:
    response = await client.patch(
        f"/v1/merchants/{merchant.id}", json={"status": "suspended"}, headers=operator()
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "status"


async def test_a_publishable_key_cannot_change_the_merchants_wallets(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    issued = await client.post(
        f"/v1/merchants/{merchant.id}/api-keys",
        json={"name": "web", "key_type": "publishable"},
        headers=operator(),
    )
    assert issued.status_code == 201, issued.text
    response = await client.patch(
        f"/v1/merchants/{merchant.id}",
        json={"wallets": {"ethereum": "xpub-attacker"}},
        headers=bearer(issued.json()["key"]),
    )
    assert response.status_code == 403


async def test_listing_merchants_pages_newest_first_with_a_cursor(
    client: httpx.AsyncClient,
) -> None:
    created = []
    for n in range(3):
        response = await client.post(
            "/v1/merchants",
            json={"business_name": "S", "contact_email": f"page{n}@example.com"},
            headers=operator(),
        )
        created.append(response.json()["id"])
    newest_first = sorted(created, key=lambda i: uuid.UUID(i).int, reverse=True)
    first = (await client.get("/v1/merchants?limit=2", headers=operator())).json()
    assert [m["id"] for m in first["data"]] == newest_first[:2]
    assert first["next_cursor"] == newest_first[1]
    rest = (
        await client.get(f"/v1/merchants?limit=2&cursor={first['next_cursor']}", headers=operator())
    ).json()
    assert [m["id"] for m in rest["data"]] == newest_first[2:]
    assert rest["next_cursor"] is None


async def test_api_keys_issued_by_a_key_cannot_exceed_its_own_permissions(
    client: httpx.AsyncClient,
) -> None:
    merchant = await new_merchant(
        client, "grant@example.com", permissions=["api_keys:write", "invoices:read"]
    )
    escalate = await client.post(
        f"/v1/merchants/{merchant.id}/api-keys",
        json={"name": "more", "permissions": ["invoices:write"]},
        headers=bearer(merchant.key),
    )
    assert escalate.status_code == 403
    default = await client.post(
        f"/v1/merchants/{merchant.id}/api-keys", json={"name": "same"}, headers=bearer(merchant.key)
    )
    assert default.status_code == 201
    assert sorted(default.json()["permissions"]) == ["api_keys:write", "invoices:read"]


async def test_a_revoked_key_stops_working_at_once(client: httpx.AsyncClient, merchant: Merchant) -> None:
    listed = await client.get("/v1/api-keys", headers=bearer(merchant.key))
    assert listed.status_code == 200
    key_id = listed.json()["data"][0]["id"]
    revoked = await client.delete(f"/v1/api-keys/{key_id}", headers=bearer(merchant.key))
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    after = await client.get("/v1/api-keys", headers=bearer(merchant.key))
    assert after.status_code == 401


async def test_api_key_creation_returns_the_plaintext_once(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    response = await client.post(
        f"/v1/merchants/{merchant.id}/api-keys",
        json={"name": "ci", "expires_at": "2030-01-01T00:00:00Z"},
        headers=operator(),
    )
    body = response.json()
    assert response.status_code == 201
    assert body["key"].startswith("ck_sk_")
    assert body["expires_at"] == "2030-01-01T00:00:00.000000Z"
    assert {"id", "key", "name", "key_type", "permissions", "status", "created_at"} <= set(body)
    listed = await client.get("/v1/api-keys", headers=bearer(merchant.key))
    assert all("key" not in k for k in listed.json()["data"])
