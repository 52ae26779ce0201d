"""A payment end to end, as a merchant and a payer see it: an invoice created over HTTP, paid by a
real signed transaction on the local EVM chain, followed to `confirmed`; the customer's payment
history and the day's analytics follow."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx

from tests.common.support import ethereum_account_xpub, poll_for
from tests.e2e.test_checkout_flow import bearer, invoice_body
from tools.devchain.testing import EvmChain

log = logging.getLogger("tests.e2e.payments")
# An account of its own (the e2e merchants share the demo key, and so its addresses).
XPUB = ethereum_account_xpub("test test test test test test test test test test test junk", 7)


async def test_an_invoice_paid_on_chain_is_confirmed_and_customers_and_analytics_follow(
    http: httpx.AsyncClient, operator: dict[str, str], evm_chain: EvmChain
) -> None:
    tag = uuid.uuid4().hex[:6]
    created = await http.post(
        "/v1/merchants",
        json={
            "business_name": "Chain shop",
            "contact_email": f"chain-{tag}@shop.test",
            "wallets": {"ethereum": XPUB},
        },
        headers=operator,
    )
    assert created.status_code == 201, created.text
    merchant = created.json()
    issued = await http.post(
        f"/v1/merchants/{merchant['id']}/api-keys", json={"name": "server"}, headers=operator
    )
    key = issued.json()["key"]
    email = f"payer-{tag}@example.com"
    response = await http.post("/v1/invoices", json=invoice_body(f"Beans {tag}", email), headers=bearer(key))
    assert response.status_code == 201, response.text
    invoice = response.json()
    wei = int(Decimal(invoice["crypto_amount"]).scaleb(18))
    assert f"value={wei}" in invoice["payment_uri"]

    tx = await evm_chain.send_eth(evm_chain.accounts[8], invoice["payment_address"], wei)
    await evm_chain.wait_receipt(tx)
    mined = time.monotonic()

    async def status_in(*statuses: str) -> dict[str, Any] | None:
        view = (await http.get(f"/v1/invoices/{invoice['id']}", headers=bearer(key))).json()
        return view if view["status"] in statuses else None

    paid = await poll_for(lambda: status_in("paid", "confirmed"), timeout=30, what="the invoice to be paid")
    log.info(
        "detection latency over HTTP (receipt -> paid visible): %.0f ms", (time.monotonic() - mined) * 1000
    )
    assert paid["amount_paid"] == invoice["crypto_amount"] and paid["paid_at"] is not None

    await evm_chain.mine(1)  # two confirmations required
    confirmed = await poll_for(lambda: status_in("confirmed"), timeout=30, what="the invoice to be confirmed")
    assert confirmed["overpaid"] is False and confirmed["paid_late"] is False

    payments = (await http.get(f"/v1/invoices/{invoice['id']}/payments", headers=bearer(key))).json()["data"]
    assert [(p["tx_hash"], p["status"], p["amount"]) for p in payments] == [
        (tx.lower(), "confirmed", invoice["crypto_amount"])
    ]
    trail = (await http.get(f"/v1/invoices/{invoice['id']}/audit", headers=bearer(key))).json()["data"]
    events = [e["event"] for e in trail]
    assert events[0] == "invoice.created" and events[-1] == "invoice.confirmed"
    assert "invoice.paid" in events and trail[-1]["actor"] == "system:watcher"

    checkout = (await http.get(f"/v1/checkout/{invoice['id']}")).json()
    assert checkout["status"] == "confirmed" and checkout["payments"][0]["tx_hash"] == tx.lower()

    async def history() -> dict[str, Any] | None:
        customers = (await http.get(f"/v1/customers?email={email}", headers=bearer(key))).json()["data"]
        if not customers:
            return None
        rows = (await http.get(f"/v1/customers/{customers[0]['id']}/payments", headers=bearer(key))).json()[
            "data"
        ]
        return rows[0] if rows and rows[0]["status"] == "confirmed" else None

    row = await poll_for(history, timeout=30, what="the customer's payment history to show the payment")
    assert row["invoice_id"] == invoice["id"] and row["paid_at"] is not None

    today = dt.datetime.now(dt.UTC).date().isoformat()

    async def metrics() -> dict[str, Any] | None:
        got = await http.get(f"/v1/analytics/daily?from={today}&to={today}", headers=bearer(key))
        data = got.json()["data"]
        return data[0] if data and data[0]["invoices_paid"] == 1 else None

    day = await poll_for(metrics, timeout=30, what="the day's analytics to count the payment")
    assert day["invoices_created"] == 1 and Decimal(day["amount_paid"]) == Decimal(invoice["total"])
    assert day["currency"] == invoice["currency"]
    assert Decimal(day["conversion_rate"]) == Decimal(100)
