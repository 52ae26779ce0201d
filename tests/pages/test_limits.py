"""The pages go through the API's own doors: the payer's page is limited per client address like
`GET /v1/checkout/{id}`, the dashboard counts against its key's plan limit, its sign-in against
the address's failed authentication, and its session ends with its key on any gateway replica.

Each test runs a gateway of its own in this process, in front of the package stack's services,
with limits low enough to reach; each such gateway's client has an address of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from libs.common.config import Config
from services.gateway.app import create_app
from tests.common.support import poll
from tests.gateway.conftest import serve
from tests.pages.conftest import Shop
from tests.pages.test_checkout_page import create
from tests.pages.test_dashboard import key_id
from tests.pages.test_dashboard_session import sign_in
from tools.devstack import Stack


@asynccontextmanager
async def gateway(stack: Stack, **env: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway of its own on the stack's services, with `env` on top of the
    stack's settings. Windows of a day: a limit window cannot turn over inside a test."""
    config = Config.from_env({**stack.env(), **env})
    async with serve(create_app(config)) as client:
        yield client


async def test_the_payers_page_its_status_and_its_stream_are_limited_per_client_address(
    stack: Stack, http: httpx.AsyncClient, shop: Shop
) -> None:
    invoice = await create(http, shop)
    page = f"/pay/{invoice['id']}"
    async with gateway(stack, CHECKOUT_RATE_LIMIT_CHECKOUT="3/day") as payer:
        first = await payer.get(page)
        assert first.status_code == 200 and first.headers["ratelimit-remaining"] == "2"
        assert (await payer.get(f"{page}/status")).status_code == 200
        assert (await payer.get(f"/v1/checkout/{invoice['id']}")).status_code == 200  # one limit for all

        refused = await payer.get(page)
        assert refused.status_code == 429 and refused.headers["content-type"].startswith("text/html")
        assert "Too many requests" in refused.text
        assert int(refused.headers["retry-after"]) >= 1 and refused.headers["ratelimit-remaining"] == "0"
        for live in (f"{page}/status", f"{page}/events"):
            response = await payer.get(live)
            assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limited", live
    async with gateway(stack, CHECKOUT_RATE_LIMIT_CHECKOUT="3/day") as other_payer:
        assert (await other_payer.get(page)).status_code == 200


async def test_dashboard_pages_count_against_the_keys_plan_limit_as_its_api_calls_do(
    stack: Stack, shop: Shop
) -> None:
    async with gateway(stack, CHECKOUT_RATE_LIMIT_FREE="5/day") as client:
        assert (await sign_in(client, shop.key)).status_code == 303  # 1: the key is checked once
        keys = await client.get("/dashboard/api-keys")  # 2: the page's one API call
        assert keys.status_code == 200 and keys.headers["ratelimit-remaining"] == "3"
        assert (await client.get("/v1/api-keys", headers=shop.auth)).status_code == 200  # 3
        assert (await client.get("/dashboard/api-keys")).headers["ratelimit-remaining"] == "1"  # 4
        assert (await client.get("/v1/api-keys", headers=shop.auth)).status_code == 200  # 5

        over = await client.get("/dashboard/api-keys")
        assert over.status_code == 429 and over.headers["content-type"].startswith("text/html")
        assert "too many requests for this API key" in over.text and int(over.headers["retry-after"]) >= 1
        assert (await client.get("/v1/api-keys", headers=shop.auth)).status_code == 429


async def test_wrong_keys_at_sign_in_are_limited_per_address_like_failed_api_authentication(
    stack: Stack, shop: Shop
) -> None:
    wrong = "ck_sk_" + "0" * 32 + "_" + "x" * 43
    async with gateway(stack, CHECKOUT_RATE_LIMIT_AUTH_FAILURES="3/day") as guesser:
        assert [(await sign_in(guesser, wrong)).status_code for _ in range(3)] == [401, 401, 401]
        # Over the limit, the address is refused before any key it sends is looked at.
        refused = await sign_in(guesser, shop.key)
        assert refused.status_code == 429 and "checkout_session" not in refused.cookies
        assert int(refused.headers["retry-after"]) >= 1
        assert (await guesser.get("/v1/api-keys", headers=shop.auth)).status_code == 429
        # A cookie that opens no session is a failed authentication too, and is refused likewise.
        guesser.cookies.set("checkout_session", "guessed", path="/dashboard")
        assert (await guesser.get("/dashboard")).status_code == 429
    async with gateway(stack, CHECKOUT_RATE_LIMIT_AUTH_FAILURES="3/day") as merchant:
        assert (await sign_in(merchant, shop.key)).status_code == 303


async def test_a_key_revoked_on_another_gateway_ends_its_dashboard_session_here_at_once(
    stack: Stack, http: httpx.AsyncClient, shop: Shop
) -> None:
    async with gateway(stack) as client:
        await sign_in(client, shop.key)
        assert (await client.get("/dashboard")).status_code == 200  # its key now in this one's memory
        revoked = await http.delete(f"/v1/api-keys/{key_id(shop.key)}", headers=shop.auth)  # the stack's
        assert revoked.status_code == 200, revoked.text

        async def signed_out() -> bool:
            after = await client.get("/dashboard")
            return after.status_code == 303 and after.headers["location"].startswith("/dashboard/login")

        # The revoking gateway tells its peers before it answers; hearing it takes milliseconds.
        await poll(signed_out, timeout=2, what="the session to end with its key")
