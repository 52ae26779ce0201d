"""The merchant's dashboard in a real browser: sign in with an API key, find invoices, read an
invoice's story, see the day charted, redeliver a webhook, manage API keys, sign out."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.common.support import poll, poll_for
from tests.merchant.webhook_support import receiver
from tests.pages.conftest import DESKTOP, Shop, screenshot
from tests.pages.test_checkout_page import create
from tools.devchain.testing import EvmChain
from tools.devstack import Stack


@pytest.fixture
async def desk(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    """A desktop-sized page in a fresh context (no session yet)."""
    context = await browser.new_context(base_url=stack.base_url, viewport=DESKTOP)
    yield await context.new_page()
    await context.close()


def key_id(key: str) -> uuid.UUID:
    """The id inside a plaintext key (`ck_sk_<id hex>_<secret>`), as the API lists keys."""
    return uuid.UUID(hex=key.split("_")[2])


async def sign_in(page: Page, key: str, path: str = "/dashboard") -> None:
    await page.goto(path)
    await expect(page).to_have_url(
        f"{page.url.split('/dashboard')[0]}/dashboard/login?next={path.replace('/', '%2F')}"
    )
    await page.get_by_label("Secret API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("h1").first).not_to_have_text("Sign in to your dashboard")


async def test_a_merchant_signs_in_with_an_api_key_and_holds_only_a_short_lived_http_only_cookie(
    desk: Page, shop: Shop, stack: Stack
) -> None:
    await desk.goto("/dashboard")
    await expect(desk).to_have_url(f"{stack.base_url}/dashboard/login?next=%2Fdashboard")
    await desk.get_by_label("Secret API key").fill(shop.key[:-2] + "xx")
    await desk.get_by_role("button", name="Sign in").click()
    await expect(desk.locator("#sign-in-error")).to_have_text("That API key is not valid, or it was revoked.")

    await desk.get_by_label("Secret API key").fill(shop.key)
    await desk.get_by_role("button", name="Sign in").click()
    await expect(desk).to_have_url(f"{stack.base_url}/dashboard")
    await expect(desk.locator("h1")).to_have_text("Overview")

    cookies = await desk.context.cookies()
    [session] = [c for c in cookies if c["name"] == "checkout_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict" and session["path"] == "/dashboard"
    assert 0 < session["expires"] - time.time() <= 1800
    assert all(shop.key not in c["value"] and shop.key.split("_")[2] not in c["value"] for c in cookies)
    assert await desk.evaluate("document.cookie") == ""  # HttpOnly: no script can read it

    await desk.get_by_role("button", name="Sign out").click()
    await expect(desk).to_have_url(f"{stack.base_url}/dashboard/login")
    assert [c for c in await desk.context.cookies() if c["name"] == "checkout_session"] == []
    await desk.goto("/dashboard/invoices")
    await expect(desk).to_have_url(f"{stack.base_url}/dashboard/login?next=%2Fdashboard%2Finvoices")


async def test_invoices_are_listed_newest_first_searched_filtered_paged_and_shown_with_their_audit_trail(
    desk: Page, http: httpx.AsyncClient, shop: Shop
) -> None:
    titles = ["Green tea", "Black tea", "Coffee grinder"]
    made = [await create(http, shop, title=title) for title in titles]
    cancelled = await http.post(f"/v1/invoices/{made[2]['id']}/cancel", json={}, headers=shop.auth)
    assert cancelled.status_code == 200

    await sign_in(desk, shop.key, "/dashboard/invoices")
    rows = desk.locator("#invoices tbody tr")
    await expect(rows).to_have_count(3)
    await expect(rows.locator("td:nth-child(2)")).to_have_text(["Coffee grinder", "Black tea", "Green tea"])

    await desk.get_by_label("Search title and description").fill("tea")
    await desk.get_by_role("button", name="Find").click()
    await expect(rows.locator("td:nth-child(2)")).to_have_text(["Black tea", "Green tea"])

    await desk.goto("/dashboard/invoices")
    await desk.get_by_label("Status").select_option("cancelled")
    await desk.get_by_role("button", name="Find").click()
    await expect(rows.locator("td:nth-child(2)")).to_have_text(["Coffee grinder"])

    await desk.goto("/dashboard/invoices?limit=2")
    await expect(rows.locator("td:nth-child(2)")).to_have_text(["Coffee grinder", "Black tea"])
    await desk.get_by_role("link", name="Next page").click()
    await expect(rows.locator("td:nth-child(2)")).to_have_text(["Green tea"])
    await expect(desk.get_by_role("link", name="Next page")).to_have_count(0)

    await desk.goto("/dashboard/invoices")
    await desk.get_by_role("link", name="Coffee grinder").click()
    await expect(desk.locator("h1")).to_contain_text("Coffee grinder")
    await expect(desk.locator("#payments tbody")).to_have_text("No payment seen yet.")
    audit = desk.locator("#audit tbody tr")
    await expect(audit.locator("td:nth-child(2)")).to_have_text(["invoice.created", "invoice.cancelled"])
    await expect(audit.nth(1).locator("td:nth-child(3)")).to_have_text(f"merchant:{key_id(shop.key)}")
    await screenshot(desk, "dashboard-invoice")


async def test_the_overview_charts_the_days_invoices_revenue_and_conversion(
    desk: Page, http: httpx.AsyncClient, shop: Shop, evm_chain: EvmChain
) -> None:
    paid = await create(http, shop, title="Paid order")
    await create(http, shop, title="Open order")
    wei = int(Decimal(paid["crypto_amount"]).scaleb(18))
    await evm_chain.wait_receipt(
        await evm_chain.send_eth(evm_chain.accounts[4], paid["payment_address"], wei)
    )
    today = dt.datetime.now(dt.UTC).date().isoformat()

    async def counted() -> dict[str, Any] | None:
        got = await http.get(f"/v1/analytics/daily?from={today}&to={today}", headers=shop.auth)
        data = got.json()["data"]
        return (
            data[0] if data and data[0]["invoices_paid"] == 1 and data[0]["invoices_created"] == 2 else None
        )

    await poll_for(counted, timeout=30, what="the day's analytics to count the payment")
    await sign_in(desk, shop.key)
    invoices = desk.locator("#chart-invoices svg")
    await expect(invoices).to_have_attribute("role", "img")
    await expect(invoices.locator(f'rect.created[data-date="{today}"]')).to_have_attribute("data-value", "2")
    await expect(invoices.locator(f'rect.paid[data-date="{today}"]')).to_have_attribute("data-value", "1")
    revenue = desk.locator("#chart-revenue-USD svg")
    await expect(revenue.locator(f'rect.paid[data-date="{today}"]')).to_have_attribute("data-value", "24")
    await expect(desk.locator(f'#chart-conversion circle[data-date="{today}"]')).to_have_attribute(
        "data-value", "50"
    )
    await expect(desk.locator("#summary-created")).to_have_text("2")
    await expect(desk.locator("#summary-conversion")).to_have_text("50.00%")
    # Every day of the default range is drawn, today last.
    await expect(invoices.locator("rect.created")).to_have_count(30)
    await screenshot(desk, "dashboard-overview")


async def test_a_webhook_delivery_is_redelivered_from_the_dashboard(
    desk: Page, http: httpx.AsyncClient, shop: Shop
) -> None:
    async with receiver() as hook:
        registered = await http.post(
            "/v1/webhook-endpoints",
            json={"url": hook.url(), "events": ["invoice.created"]},
            headers=shop.auth,
        )
        assert registered.status_code == 201, registered.text
        invoice = await create(http, shop)
        await poll(lambda: len(hook.received) == 1, timeout=20, what="the first delivery")
        event_id = hook.received[0].headers["checkout-event-id"]

        await sign_in(desk, shop.key, "/dashboard/webhooks")
        await desk.get_by_role("link", name=hook.url()).click()
        row = desk.locator("#deliveries tbody tr")
        await expect(row).to_have_count(1)
        await expect(row.locator("td a")).to_have_text(invoice["id"][:8] + "…" + invoice["id"][-8:])
        await row.get_by_role("button", name="Redeliver").click()
        await expect(desk.locator("#notice")).to_contain_text("Redelivery scheduled")
        await poll(lambda: len(hook.received) == 2, timeout=20, what="the redelivery")
        assert hook.received[1].headers["checkout-event-id"] == event_id

        async def two_attempts() -> bool:
            await desk.reload()
            return (await desk.locator("#deliveries td.attempts").inner_text()) == "2"

        await poll(two_attempts, timeout=20, what="the delivery log to show the second attempt")


async def test_api_keys_are_created_shown_once_and_revoked_and_revoking_the_sessions_own_key_ends_it(
    desk: Page, http: httpx.AsyncClient, shop: Shop
) -> None:
    await sign_in(desk, shop.key, "/dashboard/api-keys")
    await desk.get_by_label("Name").fill("till " + uuid.uuid4().hex[:4])
    await desk.get_by_label("invoices:read").check()
    await desk.get_by_role("button", name="Create key").click()
    new_key = await desk.locator("#new-key").input_value()
    assert new_key.startswith("ck_sk_")
    assert (await http.get("/v1/invoices", headers={"Authorization": f"Bearer {new_key}"})).status_code == 200
    assert (
        await http.get("/v1/customers", headers={"Authorization": f"Bearer {new_key}"})
    ).status_code == 403
    await screenshot(desk, "dashboard-api-key-created")

    await desk.goto("/dashboard/api-keys")
    await expect(desk.locator("#new-key")).to_have_count(0)  # shown once, never again
    await desk.locator(f'tr[data-key-id="{key_id(new_key)}"]').get_by_role("button", name="Revoke").click()
    await expect(desk.locator("#notice")).to_contain_text("API key revoked")
    assert (await http.get("/v1/invoices", headers={"Authorization": f"Bearer {new_key}"})).status_code == 401

    own = desk.locator("tr", has=desk.locator("text=this session"))
    await own.get_by_role("button", name="Revoke").click()
    await expect(desk).to_have_url(re.compile(r"/dashboard/login\?next=%2Fdashboard%2Fapi-keys"))
    await expect(desk.locator("h1")).to_have_text("Sign in to your dashboard")


async def test_customers_are_found_by_email_and_open_on_their_invoices(
    desk: Page, http: httpx.AsyncClient, shop: Shop
) -> None:
    email = f"buyer-{uuid.uuid4().hex[:6]}@example.com"
    invoice = await create(http, shop, customer_email=email)

    async def listed() -> bool:
        found = (await http.get(f"/v1/customers?email={email}", headers=shop.auth)).json()["data"]
        return len(found) == 1

    await poll(listed, timeout=20, what="the customer projection to hold the buyer")
    await sign_in(desk, shop.key, "/dashboard/customers")
    await desk.get_by_label("Email").fill(email)
    await desk.get_by_role("button", name="Find").click()
    await expect(desk.locator("#customers tbody tr")).to_have_count(1)
    await desk.get_by_role("link", name=email).click()
    await expect(desk.locator("h1")).to_have_text(email)
    await desk.goto(f"/dashboard/invoices/{invoice['id']}")
    await expect(desk.get_by_role("link", name=email)).to_have_attribute(
        "href", re.compile(r"^/dashboard/customers/")
    )
