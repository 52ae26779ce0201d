"""Refunds as a merchant and a payer go through them over HTTP against the whole stack: an invoice
paid on the local EVM chain is refunded in part, the payer claims it through the link, the
merchant pays the claimed address from its own wallet and the watcher completes it, with the
webhooks; what is refused on the way, and what another merchant cannot do."""

from __future__ import annotations

import io
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
from checkout_client import AsyncClient

from tests.common.support import ethereum_account_xpub, poll, poll_for
from tests.e2e.test_checkout_flow import bearer, invoice_body
from tests.merchant.webhook_support import receiver
from tools.devchain.testing import EvmChain
from tools.devstack import Stack
from tools.pay import pay

# An account of its own: refunds are paid to addresses no other test's invoices use.
XPUB = ethereum_account_xpub("test test test test test test test test test test test junk", 17)
PAYER_ADDRESS = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]  # all lower case: no checksum to fail
REFUND_EVENTS = ["refund.created", "refund.claimed", "refund.completed", "refund.cancelled"]


async def _merchant(http: httpx.AsyncClient, operator: dict[str, str], name: str) -> dict[str, str]:
    created = await http.post(
        "/v1/merchants",
        json={
            "business_name": f"Refund shop {name}",
            "contact_email": f"{name}-{uuid.uuid4().hex[:6]}@shop.test",
            "wallets": {"ethereum": XPUB},
        },
        headers=operator,
    )
    assert created.status_code == 201, created.text
    issued = await http.post(
        f"/v1/merchants/{created.json()['id']}/api-keys", json={"name": "server"}, headers=operator
    )
    assert issued.status_code == 201, issued.text
    return bearer(issued.json()["key"])


async def paid_invoice(http: httpx.AsyncClient, key: dict[str, str], evm_chain: EvmChain) -> dict[str, Any]:
    """A new invoice of the merchant whose key is `key`, paid in full on the dev chain."""
    response = await http.post("/v1/invoices", json=invoice_body("Refundable beans"), headers=key)
    assert response.status_code == 201, response.text
    invoice = response.json()
    wei = int(Decimal(invoice["crypto_amount"]).scaleb(18))
    await evm_chain.wait_receipt(
        await evm_chain.send_eth(evm_chain.accounts[8], invoice["payment_address"], wei)
    )

    async def paid() -> dict[str, Any] | None:
        view = (await http.get(f"/v1/invoices/{invoice['id']}", headers=key)).json()
        return view if view["status"] in ("paid", "confirmed") else None

    return await poll_for(paid, timeout=30, what="the invoice to be paid")


def _error(response: httpx.Response, status: int) -> tuple[str, set[str]]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    return error["code"], {d["field"] for d in error["details"]}


async def test_a_refund_is_claimed_by_the_payer_paid_by_the_merchant_and_completed_with_webhooks(
    http: httpx.AsyncClient, operator: dict[str, str], evm_chain: EvmChain, stack: Stack
) -> None:
    key = await _merchant(http, operator, "refunds")
    async with receiver() as hook:
        registered = await http.post(
            "/v1/webhook-endpoints", json={"url": hook.url(), "events": REFUND_EVENTS}, headers=key
        )
        assert registered.status_code == 201, registered.text
        invoice = await paid_invoice(http, key, evm_chain)
        path = f"/v1/invoices/{invoice['id']}/refunds"
        assert invoice["amount_refundable"] == invoice["crypto_amount"] and invoice["refunds"] == []

        created = await http.post(
            path,
            json={"amount": "10.00", "rate": "invoice", "reason": "one bag arrived damaged"},
            headers={**key, "Idempotency-Key": "refund-1"},
        )
        assert created.status_code == 201, created.text
        refund = created.json()
        rate = Decimal(invoice["exchange_rate"]["rate"])
        assert refund["status"] == "awaiting_claim" and refund["amount"] == "10.00"
        assert refund["rate_basis"] == "invoice" and Decimal(refund["rate"]) == rate
        # The crypto is the fiat at the invoice's rate, rounded up to the wei; units are exact.
        assert Decimal(refund["crypto_amount"]) - Decimal("10.00") / rate < Decimal("1e-18")
        assert int(refund["amount_units"]) == int(Decimal(refund["crypto_amount"]).scaleb(18))
        claim_url = refund["claim_url"]
        assert claim_url.startswith("http") and f"/refund/{refund['id']}?token=" in claim_url
        token = claim_url.split("token=")[1]

        # A retry answers with the first refund (no second one), without the link: it was shown once.
        retried = await http.post(
            path,
            json={"amount": "10.00", "rate": "invoice", "reason": "one bag arrived damaged"},
            headers={**key, "Idempotency-Key": "refund-1"},
        )
        assert retried.status_code == 201 and retried.json()["id"] == refund["id"]
        assert retried.json()["claim_url"] is None

        # More than is left (received less this refund) is refused in the field given.
        left = Decimal(invoice["crypto_amount"]) - Decimal(refund["crypto_amount"])
        too_much = await http.post(
            path, json={"crypto_amount": str(left + Decimal("0.000001")), "rate": "invoice"}, headers=key
        )
        assert _error(too_much, 422) == ("invalid_argument", {"crypto_amount"})
        assert "must be at most" in too_much.json()["error"]["message"]

        claim = f"/v1/refunds/{refund['id']}/claim"
        seen = await http.get(claim, params={"token": token})
        assert seen.status_code == 200, seen.text
        assert (
            seen.json()["status"] == "awaiting_claim"
            and seen.json()["crypto_amount"] == refund["crypto_amount"]
        )
        assert (
            await http.get(claim, params={"token": token[:-1] + ("0" if token[-1] != "0" else "1")})
        ).status_code == 404

        bad = await http.post(
            claim, json={"token": token, "address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"}
        )
        assert _error(bad, 422) == ("invalid_argument", {"address"})
        typo = PAYER_ADDRESS[:2] + PAYER_ADDRESS[2:].upper()[:1] + PAYER_ADDRESS[3:]
        if typo != PAYER_ADDRESS:  # a mixed-case spelling whose checksum is (almost surely) wrong
            assert (await http.post(claim, json={"token": token, "address": typo})).status_code == 422
        claimed = await http.post(claim, json={"token": token, "address": PAYER_ADDRESS})
        assert claimed.status_code == 200, claimed.text
        assert claimed.json()["status"] == "claimed"
        assert claimed.json()["address"].lower() == PAYER_ADDRESS
        again = await http.post(claim, json={"token": token, "address": PAYER_ADDRESS})
        assert _error(again, 409)[0] == "conflict"

        # The merchant sees the claim and pays it from its own wallet, from any address.
        view = (await http.get(f"/v1/invoices/{invoice['id']}", headers=key)).json()
        [shown] = view["refunds"]
        assert shown["status"] == "claimed" and shown["address"] == claimed.json()["address"]
        # `make pay INVOICE=… REFUND=…` as the merchant: sends the claimed amount, waits for completed.
        out = io.StringIO()
        paid = await pay(
            invoice["id"],
            gateway=stack.base_url,
            rpc_url=evm_chain.rpc_url,
            refund=refund["id"],
            account=3,
            out=out,
        )
        assert paid == "completed", out.getvalue()
        assert f"paying {refund['crypto_amount']} ETH to {shown['address']}" in out.getvalue()

        async def completed() -> dict[str, Any] | None:
            view = (await http.get(f"/v1/invoices/{invoice['id']}", headers=key)).json()
            return view if view["refunds"][0]["status"] == "completed" else None

        done = await poll_for(completed, timeout=30, what="the refund to be completed")
        assert done["amount_refunded"] == refund["crypto_amount"] and done["refunds"][0]["tx_hash"]
        assert Decimal(done["amount_refundable"]) == left
        assert (await http.post(f"{path}/{refund['id']}/cancel", headers=key)).status_code == 409
        # The payer's public view shows it too, without the merchant's own words.
        [public] = (await http.get(f"/v1/checkout/{invoice['id']}")).json()["refunds"]
        assert public["status"] == "completed" and public["tx_hash"] == done["refunds"][0]["tx_hash"]
        assert "reason" not in public

        await poll(lambda: len(hook.received) >= 3, timeout=20, what="the refund webhooks")
        bodies = [json.loads(r.body) for r in hook.received]
        # Deliveries run concurrently: each event once, in whatever order they arrive.
        assert sorted(b["type"] for b in bodies) == ["refund.claimed", "refund.completed", "refund.created"]
        assert {b["data"]["refund_id"] for b in bodies} == {refund["id"]}
        assert all("token" not in key_ for b in bodies for key_ in b["data"] if key_ != "claim_token_sha256")
        assert token not in json.dumps(bodies)

    trail = (await http.get(f"/v1/invoices/{invoice['id']}/audit", headers=key)).json()["data"]
    refund_entries = [(e["event"], e["actor"]) for e in trail if e["event"].startswith("refund.")]
    assert refund_entries[0][0] == "refund.created" and refund_entries[0][1].startswith("merchant:")
    assert refund_entries[1:] == [("refund.claimed", "payer"), ("refund.completed", "system:watcher")]


async def test_refunds_refuse_bad_requests_and_another_merchant_cannot_see_or_refund(
    http: httpx.AsyncClient, operator: dict[str, str], evm_chain: EvmChain, stack: Stack
) -> None:
    key = await _merchant(http, operator, "strict")
    thief = await _merchant(http, operator, "thief")
    unpaid = (await http.post("/v1/invoices", json=invoice_body(), headers=key)).json()
    refused = await http.post(f"/v1/invoices/{unpaid['id']}/refunds", json={"rate": "invoice"}, headers=key)
    assert _error(refused, 409) == ("failed_precondition", {"status"})

    invoice = await paid_invoice(http, key, evm_chain)
    path = f"/v1/invoices/{invoice['id']}/refunds"
    floats = await http.post(path, json={"amount": 1.5, "rate": "invoice"}, headers=key)
    assert _error(floats, 422) == ("invalid_argument", {"amount"})
    assert _error(await http.post(path, json={"rate": "yesterday"}, headers=key), 422)[1] == {"rate"}
    both = await http.post(
        path, json={"amount": "1.00", "crypto_amount": "0.001", "rate": "current"}, headers=key
    )
    assert _error(both, 422)[1] == {"crypto_amount"}
    over = await http.post(path, json={"amount": "1000.00", "rate": "invoice"}, headers=key)
    assert _error(over, 422)[1] == {"amount"}

    assert (await http.post(path, json={"rate": "invoice"}, headers=thief)).status_code == 404
    assert (await http.get(f"/v1/invoices/{invoice['id']}", headers=thief)).status_code == 404

    # In full at today's rate; cancelled before it is paid, its amount can be refunded again.
    full = await http.post(path, json={"rate": "current"}, headers=key)
    assert full.status_code == 201, full.text
    refund = full.json()
    assert refund["rate_basis"] == "current"
    assert Decimal(refund["crypto_amount"]) <= Decimal(invoice["crypto_amount"])
    cancel = f"{path}/{refund['id']}/cancel"
    assert (await http.post(cancel, headers=thief)).status_code == 404
    # The merchant's client cancels it (its own Idempotency-Key, as for every POST).
    async with AsyncClient(stack.base_url, key["Authorization"].removeprefix("Bearer ")) as client:
        cancelled = await client.cancel_refund(invoice["id"], refund["id"])
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"]
    token = refund["claim_url"].split("token=")[1]
    late = await http.post(
        f"/v1/refunds/{refund['id']}/claim", json={"token": token, "address": PAYER_ADDRESS}
    )
    assert _error(late, 409)[0] == "failed_precondition"
    again = await http.post(path, json={"rate": "invoice"}, headers=key)
    assert again.status_code == 201 and again.json()["crypto_amount"] == invoice["crypto_amount"]
    view = (await http.get(f"/v1/invoices/{invoice['id']}", headers=key)).json()
    assert [r["status"] for r in view["refunds"]] == ["cancelled", "awaiting_claim"]
    assert view["amount_refundable"] == "0.000000000000000000"
