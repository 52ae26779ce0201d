"""Page latency: from the block with a payment being mined to the payer's hosted page saying
`paid`, measured three ways on the same payment, interleaved:

- `browser`: the real page in headless Chromium (its status heading changes, no reload);
- `stream`: a client of the page's server-sent events (`/pay/{id}/events`);
- `poll` (the peer): the invoice service's GetCheckout over gRPC every 10 ms, which sees the
  change as soon as the service has committed it, so `stream - poll` is what the live path adds
  (relay, NATS, the gateway's listener, the re-read, the event). Not `GET /v1/checkout/{id}`:
  the gateway serves that from memory until it hears the same event, so it would wait as long.

`python -m tools.bench_pages` runs it alone; `make bench` runs it with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
from checkout.invoice.v1 import invoice_pb2, invoice_pb2_grpc

from libs.common.evm_rpc import EvmRpc
from tools.bench_http import UNLIMITED
from tools.bench_stack import account_xpub
from tools.devchain import tx
from tools.devchain.accounts import dev_accounts
from tools.devchain.chain import CHAIN_ID, DevChain, networks_json
from tools.devchain.install import ensure_installed
from tools.devservers import DevServers
from tools.devstack import Stack, free_stack_ports

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
MAKE_UP_POLL_SECONDS = 1.0
PAGES_ACCOUNT = 98  # of the demo mnemonic; bench.py's detection merchant has 99, the creates 1-16


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def _poll(invoices: invoice_pb2_grpc.InvoiceServiceAsyncStub, invoice_id: str) -> float:
    request = invoice_pb2.GetCheckoutRequest(invoice_id=invoice_id)
    while (await invoices.GetCheckout(request, timeout=10)).status != "paid":
        await asyncio.sleep(0.01)
    return time.perf_counter()


async def _stream(http: httpx.AsyncClient, invoice_id: str, opened: asyncio.Event) -> float:
    async with http.stream("GET", f"/pay/{invoice_id}/events") as response:
        async for line in response.aiter_lines():
            opened.set()
            if line.startswith("data: ") and json.loads(line[6:])["status"] == "paid":
                return time.perf_counter()
    raise RuntimeError("the stream ended before the invoice was paid")


async def bench_page_latency(stack: Stack, rpc_url: str, payments: int) -> dict[str, Any]:
    base_url = stack.base_url
    operator = {"Authorization": f"Bearer {stack.admin_token}"}
    samples: dict[str, list[float]] = {"poll": [], "stream": [], "browser": []}
    browser_note = ""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=60) as http,
        EvmRpc(rpc_url) as rpc,
        grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_ports['invoice']}") as channel,
    ):
        invoices = invoice_pb2_grpc.InvoiceServiceStub(channel)
        merchant = (await http.post("/v1/merchants", headers=operator, json={
            "business_name": "Bench", "contact_email": f"page-{uuid.uuid4().hex[:6]}@example.com",
            # A key of its own: addresses shared with another bench's merchant may be credited there.
            "wallets": {"ethereum": account_xpub(PAGES_ACCOUNT)}})).json()  # fmt: skip
        key = (await http.post(f"/v1/merchants/{merchant['id']}/api-keys", headers=operator,
                               json={"name": "bench"})).json()["key"]  # fmt: skip
        auth = {"Authorization": f"Bearer {key}"}
        body = {"title": "Bench", "items": [{"name": "x", "quantity": "1", "unit_price": "10.00"}],
                "currency": "USD", "crypto_currency": "ETH"}  # fmt: skip
        payer = dev_accounts()[1]
        page = None
        playwright = None
        if shutil.which(CHROMIUM):
            from playwright.async_api import async_playwright

            playwright = await async_playwright().start()
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic"],
            )
            # The page's CSP forbids string evaluation, which wait_for_function's polling uses.
            page = await (await browser.new_context(bypass_csp=True)).new_page()
        else:
            browser_note = f"no Chromium at {CHROMIUM} (apt-get install chromium): browser not measured"
        try:
            for _ in range(payments):
                invoice = (await http.post("/v1/invoices", headers=auth, json=body)).json()
                opened = asyncio.Event()
                stream = asyncio.create_task(_stream(http, invoice["id"], opened))
                if page is not None:
                    await page.goto(f"{base_url}/pay/{invoice['id']}")
                    await page.wait_for_selector("[data-live-connected]")
                await opened.wait()
                # Pay at a random point of the watcher's poll cycle, as bench_detection does.
                await asyncio.sleep(random.uniform(0, MAKE_UP_POLL_SECONDS))
                wei = int(Decimal(invoice["crypto_amount"]).scaleb(18))
                await tx.wait_receipt(
                    rpc, await tx.send_eth(rpc, payer.private_key, invoice["payment_address"], wei)
                )
                mined = time.perf_counter()
                observers = [asyncio.create_task(_poll(invoices, invoice["id"])), stream]
                if page is not None:

                    async def shown() -> float:
                        assert page is not None
                        await page.wait_for_function(
                            "document.getElementById('status-label').textContent === 'Payment received'",
                            polling="raf",
                        )
                        return time.perf_counter()

                    observers.append(asyncio.create_task(shown()))
                done = await asyncio.wait_for(asyncio.gather(*observers), timeout=30)
                for name, at in zip(("poll", "stream", "browser"), done, strict=False):
                    samples[name].append((at - mined) * 1000)
        finally:
            if playwright is not None:
                await playwright.stop()
    result: dict[str, Any] = {
        "payments": payments,
        "watcher_poll_seconds": MAKE_UP_POLL_SECONDS,
        **{name: _summary(values) for name, values in samples.items() if values},
    }
    result["stream_over_poll_p50"] = round(result["stream"]["p50_ms"] / result["poll"]["p50_ms"], 3)
    # Per payment, what the live path adds to the moment the invoice service has the change.
    result["stream_minus_poll_ms"] = _summary(
        [s - p for s, p in zip(samples["stream"], samples["poll"], strict=True)]
    )
    if samples["browser"]:
        result["browser_over_poll_p50"] = round(result["browser"]["p50_ms"] / result["poll"]["p50_ms"], 3)
        result["browser_minus_poll_ms"] = _summary(
            [b - p for b, p in zip(samples["browser"], samples["poll"], strict=True)]
        )
    if browser_note:
        result["note"] = browser_note
    return result


async def _deploy(rpc_url: str) -> str:
    async with EvmRpc(rpc_url) as rpc:
        return await tx.setup_token(rpc, dev_accounts())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_pages")
    parser.add_argument("--payments", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "pages.json"))
    args = parser.parse_args()
    ensure_installed()
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevServers(Path(tmp) / "servers") as servers,
        DevChain() as chain,
    ):
        token = asyncio.run(_deploy(chain.rpc_url))
        env = {"CHECKOUT_NETWORKS": networks_json(chain.rpc_url, token, poll_seconds=MAKE_UP_POLL_SECONDS),
               "CHECKOUT_ETHEREUM_CHAIN_ID": str(CHAIN_ID),
               # The peer polls every 10 ms from one address, far above a payer's rate.
               **UNLIMITED}  # fmt: skip
        http_port, grpc_ports = free_stack_ports()
        stack = Stack(servers, http_port=http_port, grpc_ports=grpc_ports,
                      admin_token=uuid.uuid4().hex, log_dir=Path(tmp) / "logs", extra_env=env)  # fmt: skip
        stack.start()
        try:
            result = asyncio.run(bench_page_latency(stack, chain.rpc_url, args.payments))
        finally:
            stack.stop()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
