"""The payer's refund claim page in a real browser: the link a refund answers with opens a page
that says what is refunded, refuses an address of another network in words, takes the payer's
address once, and says the refund was sent once the merchant's payment is seen on chain."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Page, expect

from tests.common.support import poll_for
from tests.pages.conftest import Shop, screenshot
from tests.refunds.test_refunds import paid_invoice
from tools.devchain.testing import EvmChain


async def test_the_payer_claims_a_refund_on_its_page_and_sees_it_sent(
    page: Page, http: httpx.AsyncClient, shop: Shop, evm_chain: EvmChain
) -> None:
    invoice = await paid_invoice(http, shop.auth, evm_chain)
    created = await http.post(
        f"/v1/invoices/{invoice['id']}/refunds", json={"amount": "5.00", "rate": "invoice"}, headers=shop.auth
    )
    assert created.status_code == 201, created.text
    refund = created.json()

    await page.goto(refund["claim_url"])
    await expect(page.locator("#crypto-amount")).to_have_text(refund["crypto_amount"])
    await expect(page.locator("#status-label")).to_have_text("Tell us where to send your refund.")

    await page.get_by_label("Your Ethereum address for ETH").fill(
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
    )
    await page.get_by_role("button", name="Send my refund here").click()
    await expect(page.locator("#claim-error")).to_contain_text("That address cannot be used")

    address = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    await page.get_by_label("Your Ethereum address for ETH").fill(address)
    await page.get_by_role("button", name="Send my refund here").click()
    await expect(page.locator("#status-label")).to_contain_text("The merchant will send the refund")
    shown = (await page.locator("#refund-address").text_content()) or ""
    assert shown.lower() == address
    await expect(page.locator("#claim-form")).to_have_count(0)
    await screenshot(page, "refund-claimed-phone")
    await page.goto(f"/pay/{invoice['id']}")
    await expect(page.locator("#status-notes")).to_contain_text(f"the merchant will send it to {shown}.")

    await evm_chain.wait_receipt(
        await evm_chain.send_eth(evm_chain.accounts[4], shown, int(refund["amount_units"]))
    )

    async def sent() -> bool | None:
        await page.goto(refund["claim_url"])
        return True if await page.locator("#refund-tx").count() else None

    await poll_for(sent, timeout=30, what="the page to say the refund was sent")
    await expect(page.locator("#status-label")).to_have_text("Your refund has been sent.")
    await screenshot(page, "refund-sent-phone")

    # The checkout page the payer paid on says so as well.
    await page.goto(f"/pay/{invoice['id']}")
    await expect(page.locator("#status-notes")).to_contain_text(
        f"Refund of {refund['crypto_amount']} ETH (5.00 USD): sent to {shown} in transaction"
    )
