"""The hosted pages as people use them: the whole stack (service processes and the gateway, as
`make up` runs them, watching the session's dev chain), and one headless Chromium for the
session, driven by Playwright. Each test gets a fresh browser context (no cookies carried over);
screenshots go to test-artifacts/pages/."""

from __future__ import annotations

import itertools
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright

from tests.common.support import ethereum_account_xpub
from tests.conftest import running_stack
from tests.e2e.test_checkout_flow import bearer
from tools.devchain.testing import EvmChain
from tools.devservers import Servers
from tools.devstack import Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "pages"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
MNEMONIC = "test test test test test test test test test test test junk"
# BIP44 accounts of the test mnemonic, one per merchant (the e2e tests use low numbers).
ACCOUNTS = itertools.count(100)
# Invoices in these tests may expire this soon, so one can be watched running out.
MIN_EXPIRY_SECONDS = 3


@pytest.fixture(scope="package")
def stack(servers: Servers, evm_chain: EvmChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = Path(tmp_path_factory.mktemp("pages-stack-logs"))
    extra_env = {
        "CHECKOUT_INVOICE_MIN_EXPIRY_SECONDS": str(MIN_EXPIRY_SECONDS),
        "CHECKOUT_WEBHOOK_POLL_SECONDS": "0.2",
    }
    with running_stack(servers, evm_chain, log_dir, "pages", extra_env) as running:
        yield running


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=15) as client:
        yield client


@dataclass(frozen=True)
class Shop:
    merchant: dict[str, Any]
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.key)


@pytest.fixture
async def shop(stack: Stack, http: httpx.AsyncClient) -> Shop:
    """A merchant of its own, with a secret key and an xpub no other merchant here has: merchants
    sharing an xpub share addresses, and a payment would be credited to another's invoice."""
    operator = {"Authorization": f"Bearer {stack.admin_token}"}
    tag = uuid.uuid4().hex[:8]
    created = await http.post(
        "/v1/merchants",
        json={
            "business_name": f"Roastery {tag}",
            "contact_email": f"pages-{tag}@shop.test",
            "wallets": {"ethereum": ethereum_account_xpub(MNEMONIC, next(ACCOUNTS))},
        },
        headers=operator,
    )
    assert created.status_code == 201, created.text
    merchant = created.json()
    issued = await http.post(
        f"/v1/merchants/{merchant['id']}/api-keys", json={"name": "server"}, headers=operator
    )
    assert issued.status_code == 201, issued.text
    return Shop(merchant, issued.json()["key"])


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: install Debian's package with "
            "`apt-get install chromium` (Playwright is told never to download a browser)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        # launch() gives every run a fresh, throw-away profile directory of its own.
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    fresh = await browser.new_context(base_url=stack.base_url, viewport=PHONE)
    yield fresh
    await fresh.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    opened = await context.new_page()
    yield opened


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ARTIFACTS.exists() and any(ARTIFACTS.iterdir()):
        terminalreporter.write_line(f"browser screenshots: {ARTIFACTS}")
