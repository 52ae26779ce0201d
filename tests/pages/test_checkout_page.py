"""The payer's hosted page in a real browser: what it shows, its QR code read back, and its status
following payments on the dev chain (and the clock) without a reload."""

from __future__ import annotations

import io
import logging
import re
import time
from decimal import Decimal
from typing import Any

import httpx
import zxingcpp
from PIL import Image
from playwright.async_api import Page, expect

from tests.pages.conftest import MIN_EXPIRY_SECONDS, Shop, screenshot
from tools.devchain.testing import EvmChain
from tools.devstack import Stack

log = logging.getLogger("tests.pages")


def order(crypto: str = "ETH", **extra: Any) -> dict[str, Any]:
    return {
        "title": "Espresso machine",
        "items": [{"name": "Lever espresso machine", "quantity": "1", "unit_price": "24.00"}],
        "currency": "USD",
        "crypto_currency": crypto,
        **extra,
    }


async def create(http: httpx.AsyncClient, shop: Shop, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/invoices", json=order(**body), headers=shop.auth)
    assert response.status_code == 201, response.text
    invoice: dict[str, Any] = response.json()
    return invoice


async def open_page(page: Page, invoice: dict[str, Any]) -> None:
    """Opens the invoice's `checkout_url` and waits for its live stream to be connected."""
    outside: list[str] = []
    page.on(
        "request",
        lambda r: (
            None if r.url.startswith(invoice["checkout_url"].split("/pay/")[0]) else outside.append(r.url)
        ),
    )
    await page.goto(invoice["checkout_url"])
    await expect(page.locator("#checkout")).to_have_attribute("data-live-connected", "true")
    assert outside == [], f"the page fetched from elsewhere: {outside}"


async def fits_the_screen(page: Page) -> bool:
    """Nothing sticks out sideways: a phone shows the page without scrolling left and right."""
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def read_qr(page: Page) -> str:
    png = await page.locator("#qr svg").screenshot()
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, f"expected one QR code in the screenshot, decoded {len(found)}"
    return str(found[0].text)


async def test_the_payers_page_shows_what_to_pay_where_and_a_qr_code_of_the_payment_uri(
    page: Page, http: httpx.AsyncClient, shop: Shop, stack: Stack
) -> None:
    invoice = await create(http, shop)
    assert invoice["checkout_url"] == f"{stack.base_url}/pay/{invoice['id']}"

    await open_page(page, invoice)
    await expect(page.locator("#merchant")).to_have_text(shop.merchant["business_name"])
    await expect(page.locator("h1")).to_have_text("Espresso machine")
    # The exact amount, without the trailing zeros of its 18 decimals.
    await expect(page.locator("#crypto-amount")).to_have_text(
        invoice["crypto_amount"].rstrip("0").rstrip(".")
    )
    await expect(page.locator(".fiat")).to_have_text("24.00 USD")
    await expect(page.locator("#address")).to_have_text(invoice["payment_address"])
    await expect(page.locator("#asset-instruction")).to_have_text(
        "Send ETH on Ethereum (chain id 1337). Tokens sent to this address do not pay this invoice."
    )
    await expect(page.locator("#status-label")).to_have_text("Awaiting payment")
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^1[45]:\d\d$"))  # 15 minutes
    assert await read_qr(page) == invoice["payment_uri"]
    assert await fits_the_screen(page)

    # The copy buttons are real buttons a keyboard reaches, and they copy the exact text.
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = page.locator('button[data-copy-target="address"]')
    await expect(copy).to_have_accessible_name("Copy address")
    await copy.focus()
    await page.keyboard.press("Enter")
    await expect(copy).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == invoice["payment_address"]
    await screenshot(page, "checkout-pending-phone")


async def test_a_payment_on_chain_turns_the_page_paid_then_confirmed_without_a_reload(
    page: Page, http: httpx.AsyncClient, shop: Shop, evm_chain: EvmChain
) -> None:
    invoice = await create(http, shop)
    await open_page(page, invoice)
    loaded_at = await page.evaluate("window.checkoutPage.loadedAt")

    wei = int(Decimal(invoice["crypto_amount"]).scaleb(18))
    await evm_chain.wait_receipt(
        await evm_chain.send_eth(evm_chain.accounts[2], invoice["payment_address"], wei)
    )
    mined = time.monotonic()
    await expect(page.locator("#status-label")).to_have_text("Payment received", timeout=15_000)
    shown = time.monotonic() - mined
    log.info("block mined -> the browser page says paid: %.0f ms", shown * 1000)
    print(f"block mined -> page shows paid: {shown * 1000:.0f} ms")
    await expect(page.locator("#status-detail")).to_contain_text("1 of 2 confirmations")
    await expect(page.locator("#pay-instructions")).to_be_hidden()
    await expect(page.get_by_role("button", name="Copy amount")).to_be_hidden()  # nothing left to pay
    await screenshot(page, "checkout-paid-phone")

    await evm_chain.mine(1)
    await expect(page.locator("#status-label")).to_have_text("Paid and confirmed", timeout=15_000)
    await expect(page.locator("#status-detail")).to_contain_text("2 of 2 confirmations")
    await expect(page.locator("#payments-rows .confirmations")).to_have_text(["2 of 2 confirmations"])
    assert await page.evaluate("window.checkoutPage.loadedAt") == loaded_at, "the page was reloaded"
    assert await fits_the_screen(page)
    await screenshot(page, "checkout-confirmed-phone")


async def test_a_partial_usdc_payment_shows_what_is_still_owed_and_names_the_token(
    page: Page, http: httpx.AsyncClient, shop: Shop, evm_chain: EvmChain
) -> None:
    invoice = await create(http, shop, crypto="USDC")
    assert invoice["crypto_amount"] == "24.000000"
    await open_page(page, invoice)
    await expect(page.locator("#asset-instruction")).to_contain_text(
        f"Send USDC, the ERC-20 token at {evm_chain.token}, on Ethereum (chain id 1337)."
    )
    assert await read_qr(page) == invoice["payment_uri"]

    await evm_chain.wait_receipt(
        await evm_chain.send_token(evm_chain.accounts[3], invoice["payment_address"], 10_000_000)
    )
    await expect(page.locator("#status-label")).to_have_text("Partly paid", timeout=15_000)
    await expect(page.locator("#status-detail")).to_have_text(
        "10 USDC received; 14 USDC is still owed. Send the rest to the same address."
    )
    await expect(page.locator("#amount-owed")).to_have_text("14")
    await expect(page.locator("#pay-instructions")).to_be_visible()
    assert await fits_the_screen(page)
    await screenshot(page, "checkout-partial-phone")


async def test_an_unpaid_invoice_runs_out_of_time_on_the_page(
    page: Page, http: httpx.AsyncClient, shop: Shop
) -> None:
    invoice = await create(http, shop, expires_in_seconds=MIN_EXPIRY_SECONDS)
    await open_page(page, invoice)
    await expect(page.locator("#status-label")).to_have_text("Expired", timeout=15_000)
    await expect(page.locator("#status-detail")).to_have_text(
        "Time ran out before a payment arrived. Do not send a payment; ask the merchant for a new invoice."
    )
    await expect(page.locator("#pay-instructions")).to_be_hidden()
    await expect(page.locator("#countdown-row")).to_be_hidden()
    await screenshot(page, "checkout-expired-phone")
