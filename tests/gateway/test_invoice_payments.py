"""Cancel, payments and audit of an invoice, and the payer's view of its payments, over HTTP."""

from __future__ import annotations

import uuid

import httpx
from checkout.invoice.v1 import invoice_pb2
from google.protobuf import struct_pb2

from services.gateway.idempotency import request_hash
from tests.gateway.conftest import Merchant, bearer, new_merchant
from tests.gateway.fakes import FakeServices, now
from tests.gateway.test_invoices import create

TX = "0x" + "ab" * 32


async def new_invoice(client: httpx.AsyncClient, merchant: Merchant) -> str:
    response = await create(client, merchant)
    assert response.status_code == 201, response.text
    invoice_id = response.json()["id"]
    assert isinstance(invoice_id, str)
    return invoice_id


def mempool_payment(invoice_id: str) -> invoice_pb2.Payment:
    return invoice_pb2.Payment(
        id=str(uuid.uuid4()),
        invoice_id=invoice_id,
        network="ethereum",
        tx_hash=TX,
        output_index=-1,
        asset="ETH",
        amount="0.004166666666666667",
        from_address="0x00000000000000000000000000000000000000aa",
        to_address="0x0000000000000000000000000000000000000001",
        status="detected",
        confirmations=0,
        required_confirmations=12,
        detected_at=now(),
    )


def confirmed_payment(invoice_id: str) -> invoice_pb2.Payment:
    payment = mempool_payment(invoice_id)
    payment.tx_hash = "0x" + "cd" * 32
    payment.output_index = 3
    payment.asset = "USDC"
    payment.amount = "12.500000"
    payment.status = "confirmed"
    payment.confirmations = 12
    payment.block_number = 0  # genesis-adjacent, but set: must render as 0, not null
    payment.block_hash = "0x" + "11" * 32
    payment.confirmed_at.CopyFrom(now())
    return payment


# ---- cancel -------------------------------------------------------------------------------


async def test_cancelling_returns_the_invoice_with_its_new_status_and_reason(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    invoice_id = await new_invoice(client, merchant)
    response = await client.post(
        f"/v1/invoices/{invoice_id}/cancel", json={"reason": "customer left"}, headers=bearer(merchant.key)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["status"], body["status_reason"]) == (invoice_id, "cancelled", "customer left")
    assert (body["overpaid"], body["paid_late"]) == (False, False)
    assert services.recorder.last("CancelInvoice")["x-actor"].startswith("merchant:")
    # The next GET reads the write, not a cached pending copy.
    again = await client.get(f"/v1/invoices/{invoice_id}", headers=bearer(merchant.key))
    assert again.json()["status"] == "cancelled"


async def test_cancelling_needs_no_body(client: httpx.AsyncClient, merchant: Merchant) -> None:
    invoice_id = await new_invoice(client, merchant)
    response = await client.post(f"/v1/invoices/{invoice_id}/cancel", headers=bearer(merchant.key))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"


async def test_a_cancel_body_is_validated_field_by_field(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice_id = await new_invoice(client, merchant)
    response = await client.post(
        f"/v1/invoices/{invoice_id}/cancel", json={"reason": 7, "why": "x"}, headers=bearer(merchant.key)
    )
    assert response.status_code == 422
    assert {d["field"] for d in response.json()["error"]["details"]} == {"reason", "why"}


async def test_cancelling_twice_with_one_idempotency_key_replays_the_first_answer(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    invoice_id = await new_invoice(client, merchant)
    path = f"/v1/invoices/{invoice_id}/cancel"
    headers = {**bearer(merchant.key), "Idempotency-Key": "cancel-1"}
    first = await client.post(path, json={"reason": "dup"}, headers=headers)
    second = await client.post(path, json={"reason": "dup"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    sent = services.recorder.last("CancelInvoice")
    assert sent["x-idempotency-key"] == "cancel-1"
    assert sent["x-idempotency-hash"] == request_hash("POST", path, {"reason": "dup"})
    # Without a key, the retry reaches the service, which refuses a second cancel.
    third = await client.post(path, json={"reason": "dup"}, headers=bearer(merchant.key))
    assert third.status_code == 409
    assert third.json()["error"]["code"] == "failed_precondition"


async def test_cancelling_needs_invoices_write(client: httpx.AsyncClient, merchant: Merchant) -> None:
    invoice_id = await new_invoice(client, merchant)
    reader = await new_merchant(client, "reader@example.com", permissions=["invoices:read"])
    response = await client.post(f"/v1/invoices/{invoice_id}/cancel", headers=bearer(reader.key))
    assert response.status_code == 403


async def test_another_merchants_invoice_or_a_bad_id_cannot_be_cancelled(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    invoice_id = await new_invoice(client, merchant)
    other = await new_merchant(client, "other@example.com")
    stolen = await client.post(f"/v1/invoices/{invoice_id}/cancel", headers=bearer(other.key))
    assert stolen.status_code == 404
    assert services.invoices.invoices[invoice_id].status == "pending"
    for bad in ("nope", str(uuid.uuid4()).upper()):
        response = await client.post(f"/v1/invoices/{bad}/cancel", headers=bearer(merchant.key))
        assert response.status_code == 404


# ---- payments -----------------------------------------------------------------------------


async def test_payments_are_listed_with_null_block_and_confirmation_while_in_the_mempool(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    invoice_id = await new_invoice(client, merchant)
    services.invoices.payments[invoice_id] = [mempool_payment(invoice_id), confirmed_payment(invoice_id)]
    response = await client.get(f"/v1/invoices/{invoice_id}/payments", headers=bearer(merchant.key))
    assert response.status_code == 200, response.text
    pending, settled = response.json()["data"]
    assert set(pending) == {
        "id", "invoice_id", "network", "tx_hash", "output_index", "asset", "amount", "from_address",
        "to_address", "status", "confirmations", "required_confirmations", "block_number",
        "block_hash", "late", "status_reason", "detected_at", "confirmed_at",
    }  # fmt: skip
    assert (pending["block_number"], pending["block_hash"], pending["confirmed_at"]) == (None, None, None)
    assert (pending["tx_hash"], pending["output_index"], pending["amount"]) == (
        TX,
        -1,
        "0.004166666666666667",
    )
    assert pending["detected_at"].endswith("Z")
    assert (settled["block_number"], settled["status"], settled["confirmations"]) == (0, "confirmed", 12)
    assert settled["amount"] == "12.500000" and settled["confirmed_at"].endswith("Z")


async def test_an_invoice_without_payments_lists_none(client: httpx.AsyncClient, merchant: Merchant) -> None:
    invoice_id = await new_invoice(client, merchant)
    response = await client.get(f"/v1/invoices/{invoice_id}/payments", headers=bearer(merchant.key))
    assert response.json() == {"data": []}


async def test_payments_need_invoices_read_and_the_merchants_own_invoice(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    invoice_id = await new_invoice(client, merchant)
    services.invoices.payments[invoice_id] = [mempool_payment(invoice_id)]
    writer = await new_merchant(client, "writer@example.com", permissions=["invoices:write"])
    other = await new_merchant(client, "other@example.com")
    assert (
        await client.get(f"/v1/invoices/{invoice_id}/payments", headers=bearer(writer.key))
    ).status_code == 403
    assert (
        await client.get(f"/v1/invoices/{invoice_id}/payments", headers=bearer(other.key))
    ).status_code == 404
    assert (await client.get("/v1/invoices/42/payments", headers=bearer(merchant.key))).status_code == 404
    assert (await client.get(f"/v1/invoices/{invoice_id}/payments")).status_code == 401


# ---- audit --------------------------------------------------------------------------------


def entry(invoice_id: str, n: int, event: str, actor: str) -> invoice_pb2.AuditEntry:
    data = struct_pb2.Struct()
    data.update({"n": n, "amount_paid": "0.004166666666666667"})
    return invoice_pb2.AuditEntry(
        id=str(uuid.uuid4()),
        invoice_id=invoice_id,
        event=event,
        actor=actor,
        timestamp=now(),
        request_id="req-1" if actor.startswith("merchant:") else "",
        data=data,
    )


async def test_the_audit_trail_is_paged_oldest_first(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    invoice_id = await new_invoice(client, merchant)
    services.invoices.audit[invoice_id] = [
        entry(invoice_id, 0, "invoice.created", "merchant:k"),
        entry(invoice_id, 1, "invoice.payment_detected", "system:watcher"),
        entry(invoice_id, 2, "invoice.paid", "system:watcher"),
    ]
    path = f"/v1/invoices/{invoice_id}/audit"
    first = await client.get(f"{path}?limit=2", headers=bearer(merchant.key))
    assert first.status_code == 200, first.text
    body = first.json()
    assert [e["event"] for e in body["data"]] == ["invoice.created", "invoice.payment_detected"]
    assert set(body["data"][0]) == {"id", "invoice_id", "event", "actor", "timestamp", "request_id", "data"}
    assert body["data"][0]["request_id"] == "req-1" and body["data"][1]["request_id"] is None
    assert body["data"][1]["data"] == {"n": 1, "amount_paid": "0.004166666666666667"}
    second = await client.get(f"{path}?limit=2&cursor={body['next_cursor']}", headers=bearer(merchant.key))
    assert [e["event"] for e in second.json()["data"]] == ["invoice.paid"]
    assert second.json()["next_cursor"] is None


async def test_the_audit_trail_needs_invoices_read_the_merchants_own_invoice_and_a_sane_limit(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    invoice_id = await new_invoice(client, merchant)
    writer = await new_merchant(client, "writer@example.com", permissions=["invoices:write"])
    other = await new_merchant(client, "other@example.com")
    path = f"/v1/invoices/{invoice_id}/audit"
    assert (await client.get(path, headers=bearer(writer.key))).status_code == 403
    assert (await client.get(path, headers=bearer(other.key))).status_code == 404
    assert (await client.get("/v1/invoices/x/audit", headers=bearer(merchant.key))).status_code == 404
    bad = await client.get(f"{path}?limit=0", headers=bearer(merchant.key))
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "limit"


# ---- invoice fields and the payer's view ---------------------------------------------------


async def test_every_status_of_the_lifecycle_is_a_valid_list_filter(
    client: httpx.AsyncClient, merchant: Merchant
) -> None:
    for status in ("pending", "partial", "paid", "confirmed", "expired", "cancelled", "invalid"):
        response = await client.get(f"/v1/invoices?status={status}", headers=bearer(merchant.key))
        assert response.status_code == 200, (status, response.text)


async def test_an_invoice_shows_its_flags_and_status_reason(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    invoice_id = await new_invoice(client, merchant)
    body = (await client.get(f"/v1/invoices/{invoice_id}", headers=bearer(merchant.key))).json()
    assert (body["overpaid"], body["paid_late"], body["status_reason"]) == (False, False, None)


async def test_the_checkout_view_shows_the_payers_transactions_and_flags_only(
    client: httpx.AsyncClient, merchant: Merchant, services: FakeServices
) -> None:
    invoice_id = await new_invoice(client, merchant)
    stored = services.invoices.invoices[invoice_id]
    stored.status, stored.overpaid, stored.paid_late = "paid", True, True
    services.invoices.payments[invoice_id] = [confirmed_payment(invoice_id)]
    response = await client.get(f"/v1/checkout/{invoice_id}")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["overpaid"], body["paid_late"]) == ("paid", True, True)
    assert body["payments"] == [
        {
            "tx_hash": "0x" + "cd" * 32,
            "amount": "12.500000",
            "status": "confirmed",
            "confirmations": 12,
            "required_confirmations": 12,
        }
    ]
    assert "merchant_id" not in body and "metadata" not in body
