"""Dashboard sessions over plain HTTP, as an attacker would try them: forms without the session's
token or from another site, sign-in with the wrong kind of credential, a revoked key, a stolen
cookie after sign-out, a sign-in link pointing elsewhere."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.pages.conftest import Shop
from tests.pages.test_dashboard import key_id
from tools.devstack import Stack

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(html: str) -> str:
    found = TOKEN.search(html)
    assert found, "the page has no form token"
    return found.group(1)


@asynccontextmanager
async def browser_like(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=15, follow_redirects=False) as client:
        yield client


async def sign_in(client: httpx.AsyncClient, key: str, next_url: str = "/dashboard") -> httpx.Response:
    form = await client.get("/dashboard/login")
    return await client.post(
        "/dashboard/login", data={"csrf_token": form_token(form.text), "api_key": key, "next": next_url}
    )


async def key_count(http: httpx.AsyncClient, shop: Shop) -> int:
    return len((await http.get("/v1/api-keys", headers=shop.auth)).json()["data"])


async def test_a_form_without_the_sessions_token_or_from_another_site_changes_nothing(
    stack: Stack, http: httpx.AsyncClient, shop: Shop
) -> None:
    async with browser_like(stack) as client:
        assert (await sign_in(client, shop.key)).status_code == 303
        page = await client.get("/dashboard/api-keys")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        token = form_token(page.text)
        before = await key_count(http, shop)

        forged = await client.post("/dashboard/api-keys", data={"csrf_token": "guessed", "name": "forged"})
        assert forged.status_code == 403 and "security token" in forged.text
        missing = await client.post("/dashboard/api-keys", data={"name": "forged"})
        assert missing.status_code == 403
        elsewhere = await client.post(
            "/dashboard/api-keys",
            data={"csrf_token": token, "name": "forged"},
            headers={"Origin": "https://evil.example"},
        )
        assert elsewhere.status_code == 403 and "another site" in elsewhere.text
        as_json = await client.post("/dashboard/api-keys", json={"csrf_token": token, "name": "forged"})
        assert as_json.status_code == 403
        assert await key_count(http, shop) == before

        made = await client.post("/dashboard/api-keys", data={"csrf_token": token, "name": "genuine"})
        assert made.status_code == 200 and 'id="new-key"' in made.text
        assert await key_count(http, shop) == before + 1


async def test_signing_in_needs_the_sign_in_forms_own_token(stack: Stack, shop: Shop) -> None:
    async with browser_like(stack) as client:
        refused = await client.post("/dashboard/login", data={"csrf_token": "x", "api_key": shop.key})
        assert refused.status_code == 403
        assert "checkout_session" not in refused.cookies


async def test_only_a_merchants_secret_key_opens_the_dashboard(
    stack: Stack, http: httpx.AsyncClient, shop: Shop
) -> None:
    issued = await http.post(
        f"/v1/merchants/{shop.merchant['id']}/api-keys",
        json={"name": "web", "key_type": "publishable"},
        headers={"Authorization": f"Bearer {stack.admin_token}"},
    )
    publishable = issued.json()["key"]
    async with browser_like(stack) as client:
        for credential in (stack.admin_token, publishable):
            refused = await sign_in(client, credential)
            assert refused.status_code == 403 and "secret API keys" in refused.text
            assert "checkout_session" not in refused.cookies
        wrong = await sign_in(client, "ck_sk_" + "0" * 32 + "_" + "x" * 43)
        assert wrong.status_code == 401


async def test_a_key_revoked_through_the_api_ends_its_dashboard_session_at_once(
    stack: Stack, http: httpx.AsyncClient, shop: Shop
) -> None:
    async with browser_like(stack) as client:
        await sign_in(client, shop.key)
        assert (await client.get("/dashboard")).status_code == 200
        revoked = await http.delete(f"/v1/api-keys/{key_id(shop.key)}", headers=shop.auth)
        assert revoked.status_code == 200, revoked.text
        after = await client.get("/dashboard")
        assert after.status_code == 303 and after.headers["location"] == "/dashboard/login?next=%2Fdashboard"
        # The ended session's cookie is dropped: the browser stops sending what opens nothing.
        assert "checkout_session" not in client.cookies


async def test_a_signed_out_sessions_cookie_no_longer_opens_anything(stack: Stack, shop: Shop) -> None:
    async with browser_like(stack) as client:
        await sign_in(client, shop.key)
        stolen = client.cookies["checkout_session"]
        page = await client.get("/dashboard")
        out = await client.post("/dashboard/logout", data={"csrf_token": form_token(page.text)})
        assert out.status_code == 303 and "checkout_session" not in client.cookies
    async with browser_like(stack) as thief:
        thief.cookies.set("checkout_session", stolen, path="/dashboard")
        assert (await thief.get("/dashboard")).status_code == 303


async def test_a_sign_in_link_never_sends_anyone_off_the_dashboard(stack: Stack, shop: Shop) -> None:
    for target in (
        "https://evil.example/",
        "//evil.example/dashboard",
        "/dashboard/../v1",
        "/dashboard\\@evil.example",
    ):
        async with browser_like(stack) as client:
            landed = await sign_in(client, shop.key, next_url=target)
            assert landed.status_code == 303 and landed.headers["location"] == "/dashboard", target
    async with browser_like(stack) as client:
        landed = await sign_in(client, shop.key, next_url="/dashboard/invoices?status=paid")
        assert landed.headers["location"] == "/dashboard/invoices?status=paid"
