"""Cancel, payments and the audit trail of an invoice, and the payer's view of its payments,
over HTTP: invoices paid on the session's dev chain and seen by the real invoice service's
watcher."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import httpx

from tests.common.support import ethereum_account_xpub, poll_for
from tests.gateway.conftest import Merchant, create_invoice, new_merchant
from tools.devchain.testing import EvmChain

# A mnemonic of our own and an account of it per test: every merchant gets addresses nobody
# else in the session is paid at.
MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"


async def paying_merchant(client: httpx.AsyncClient, operator: dict[str, str]) -> Merchant:
    merchant = await new_merchant(client, operator, wallet=False)
    xpub = ethereum_account_xpub(MNEMONIC, account=random.randrange(1, 2**30))
    patched = await client.patch(
        f"/v1/merchants/{merchant.id}", json={"wallets": {"ethereum": xpub}}, headers=operator
    )
    assert patched.status_code == 200, patched.text
    return merchant


async def pay(evm_chain: EvmChain, invoice: dict[str, Any]) -> str:
    wei = int(Decimal(invoice["crypto_amount"]).scaleb(18))
    tx_hash = await evm_chain.send_eth(evm_chain.accounts[1], invoice["payment_address"], wei)
    await evm_chain.wait_receipt(tx_hash)
    return tx_hash


async def test_cancelling_returns_the_invoice_with_its_new_status_and_reason(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice_id = (await create_invoice(client, merchant))["id"]
    response = await client.post(
        f"/v1/invoices/{invoice_id}/cancel", json={"reason": "customer left"}, headers=merchant.auth
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["status"], body["status_reason"]) == (invoice_id, "cancelled", "customer left")
    again = await client.get(f"/v1/invoices/{invoice_id}", headers=merchant.auth)
    assert again.json()["status"] == "cancelled"  # the next GET reads the write, not a cached copy


async def test_cancelling_needs_no_body(client: httpx.AsyncClient, merchant: Merchant) -> None:
    invoice_id = (await create_invoice(client, merchant))["id"]
    response = await client.post(f"/v1/invoices/{invoice_id}/cancel", headers=merchant.auth)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"


async def test_a_cancel_body_is_validated_field_by_field(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice_id = (await create_invoice(client, merchant))["id"]
    response = await client.post(
        f"/v1/invoices/{invoice_id}/cancel", json={"reason": 5, "force": True}, headers=merchant.auth
    )
    assert response.status_code == 422
    assert {d["field"] for d in response.json()["error"]["details"]} == {"reason", "force"}


async def test_cancelling_twice_with_one_idempotency_key_replays_the_first_answer(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice_id = (await create_invoice(client, merchant))["id"]
    headers = {**merchant.auth, "Idempotency-Key": f"cancel-{invoice_id}"}
    first = await client.post(f"/v1/invoices/{invoice_id}/cancel", json={"reason": "r"}, headers=headers)
    again = await client.post(f"/v1/invoices/{invoice_id}/cancel", json={"reason": "r"}, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()


async def test_another_merchants_invoice_cannot_be_cancelled(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant
) -> None:
    other = await new_merchant(client, operator)
    invoice_id = (await create_invoice(client, merchant))["id"]
    assert (await client.post(f"/v1/invoices/{invoice_id}/cancel", headers=other.auth)).status_code == 404
    reader = await new_merchant(client, operator, permissions=["invoices:read"])
    assert (await client.post(f"/v1/invoices/{invoice_id}/cancel", headers=reader.auth)).status_code == 403


async def test_a_paid_invoice_lists_its_payment_and_the_payer_sees_it_without_the_merchants_data(
    client: httpx.AsyncClient, operator: dict[str, str], evm_chain: EvmChain
) -> None:
    merchant = await paying_merchant(client, operator)
    invoice = await create_invoice(client, merchant)
    assert (await client.get(f"/v1/invoices/{invoice['id']}/payments", headers=merchant.auth)).json() == {
        "data": [],
        "next_cursor": None,
    }
    tx_hash = await pay(evm_chain, invoice)

    async def listed() -> list[dict[str, Any]] | None:
        response = await client.get(f"/v1/invoices/{invoice['id']}/payments", headers=merchant.auth)
        data: list[dict[str, Any]] = response.json()["data"]
        return data or None

    [payment] = await poll_for(listed, what="the payment in the invoice's list")
    assert (payment["tx_hash"], payment["asset"], payment["amount"]) == (
        tx_hash,
        "ETH",
        invoice["crypto_amount"],
    )
    assert payment["output_index"] == -1 and isinstance(payment["block_number"], int)
    await evm_chain.mine(2)

    async def confirmed() -> dict[str, Any] | None:
        view: dict[str, Any] = (await client.get(f"/v1/checkout/{invoice['id']}")).json()
        return view if view["status"] == "confirmed" else None

    view = await poll_for(confirmed, what="the checkout view to say confirmed")
    assert view["amount_paid"] == invoice["crypto_amount"]
    assert [set(p) for p in view["payments"]] == [
        {"tx_hash", "amount", "status", "confirmations", "required_confirmations"}
    ]
    assert "merchant_id" not in view and "metadata" not in view

    trail = (await client.get(f"/v1/invoices/{invoice['id']}/audit?limit=2", headers=merchant.auth)).json()
    assert trail["data"][0]["event"] == "invoice.created" and trail["next_cursor"] is not None
    assert set(trail["data"][0]) == {"id", "invoice_id", "event", "actor", "timestamp", "request_id", "data"}
    rest = (
        await client.get(
            f"/v1/invoices/{invoice['id']}/audit?cursor={trail['next_cursor']}", headers=merchant.auth
        )
    ).json()
    events = [e["event"] for e in trail["data"] + rest["data"]]
    assert events.index("invoice.paid") < events.index("invoice.confirmed")


async def test_payments_and_the_audit_trail_need_invoices_read_and_the_merchants_own_invoice(
    client: httpx.AsyncClient, operator: dict[str, str], merchant: Merchant
) -> None:
    invoice_id = (await create_invoice(client, merchant))["id"]
    writer = await new_merchant(client, operator, permissions=["invoices:write"])
    other = await new_merchant(client, operator)
    for path in (f"/v1/invoices/{invoice_id}/audit", f"/v1/invoices/{invoice_id}/payments"):
        assert (await client.get(path, headers=writer.auth)).status_code == 403
        assert (await client.get(path, headers=other.auth)).status_code == 404
    bad = await client.get(f"/v1/invoices/{invoice_id}/audit?limit=0", headers=merchant.auth)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "limit"
