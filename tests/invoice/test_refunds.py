"""Refunds in the Invoice aggregate, decided from events alone (no I/O): never more back than
was received, late payments count, a cancelled refund gives its amount back, and one transfer
to a claimed address completes one refund, once."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from checkout.invoice.v1 import events_pb2 as ev

from libs.common import addresses, ids
from libs.common.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from services.invoice import pricing, refunds
from services.invoice.domain import Invoice
from services.invoice.inputs import LockedRate, Sighting
from tests.invoice.test_lifecycle import T0, new_invoice, seen, types

PAYER = "0x" + "ab" * 20
TOKEN = "f" * 80


def paid_invoice(paid: str = "1.0") -> Invoice:
    """A 1 ETH invoice at 2400 USD (test_lifecycle's), with `paid` received."""
    invoice = new_invoice()
    if paid != "0":
        invoice.observe(seen(paid), T0)
    invoice.pending = []
    return invoice


def ask(amount: str = "", crypto_amount: str = "", basis: str = "invoice") -> refunds.RefundAsk:
    return refunds.check_request(
        amount, crypto_amount, basis, "", currency="USD", asset=pricing.CRYPTO["ETH"]
    )


def refund(invoice: Invoice, request: refunds.RefundAsk, rate: LockedRate | None = None) -> str:
    refund_id = ids.new_id(7)
    invoice.refund(refund_id, request, rate=rate, token_sha256=refunds.token_sha256(TOKEN), now=T0)
    return str(refund_id)


def to(address: str, amount: str, tx: str = "0xrefund") -> Sighting:
    return Sighting(
        network="ethereum",
        tx_hash=tx,
        output_index=-1,
        asset="ETH",
        amount=Decimal(amount),
        from_address="0x" + "2" * 40,
        to_address=address.lower(),
        block_number=20,
        block_hash="0xc",
        confirmations=1,
        required_confirmations=3,
    )


def test_a_fiat_refund_at_the_invoice_rate_is_priced_up_to_the_wei_and_capped_at_what_was_received() -> None:
    invoice = paid_invoice()
    refund(invoice, ask(amount="1200.00"))
    [created] = invoice.pending
    assert isinstance(created, ev.RefundCreated)
    assert (created.amount, created.crypto_amount, created.rate_basis) == (
        "1200.00",
        "0.500000000000000000",
        "invoice",
    )
    assert invoice.refundable() == Decimal("0.5")
    with pytest.raises(InvalidArgument) as over:
        refund(invoice, ask(amount="1200.01"))
    assert over.value.details[0].field == "amount" and "1200.00 USD" in over.value.details[0].reason
    with pytest.raises(InvalidArgument) as over_crypto:
        refund(invoice, ask(crypto_amount="0.500000000000000001"))
    assert over_crypto.value.details[0].field == "crypto_amount"


def test_neither_amount_refunds_all_that_is_left_exactly_and_then_nothing_is() -> None:
    invoice = paid_invoice(paid="1.000000000000000007")  # overpaid by 7 wei: those go back too
    refund(invoice, ask(crypto_amount="0.25"))
    refund(invoice, ask())
    assert invoice.refundable() == 0
    assert invoice.pending[-1].crypto_amount == "0.750000000000000007"
    with pytest.raises(FailedPrecondition):
        refund(invoice, ask(crypto_amount="0.000000000000000001"))


def test_at_the_current_rate_the_same_fiat_buys_other_crypto() -> None:
    invoice = paid_invoice()
    today = LockedRate(Decimal("3000"), "coinbase", T0, "ETH-USD")
    refund(invoice, ask(amount="300.00", basis="current"), today)
    assert invoice.pending[-1].crypto_amount == "0.100000000000000000"
    assert (invoice.pending[-1].rate, invoice.pending[-1].rate_source) == ("3000", "coinbase")
    # All of it at today's rate: what the 0.9 ETH left cost the payer (2160 USD at 2400), at 3000.
    refund(invoice, ask(basis="current"), today)
    assert (
        invoice.pending[-1].amount == "2160.00"
        and invoice.pending[-1].crypto_amount == "0.720000000000000000"
    )


def test_an_unpaid_invoice_cannot_be_refunded_but_one_paid_late_can() -> None:
    with pytest.raises(FailedPrecondition) as unpaid:
        refund(paid_invoice(paid="0"), ask())
    assert unpaid.value.details[0].field == "status"
    late = paid_invoice(paid="0")
    late.expire(T0 + dt.timedelta(hours=1))
    late.observe(seen("0.4", tx="0xlate"), T0 + dt.timedelta(hours=2))
    assert late.status == "expired" and late.paid_late
    refund(late, ask())
    assert late.pending[-1].crypto_amount == "0.400000000000000000"


def test_bad_requests_name_their_fields() -> None:
    for amount, crypto, basis, field in (
        ("1.001", "", "invoice", "amount"),
        ("-1", "", "invoice", "amount"),
        ("", "0.0000000000000000001", "invoice", "crypto_amount"),
        ("1", "1", "invoice", "crypto_amount"),
        ("", "", "yesterday", "rate"),
    ):
        with pytest.raises(InvalidArgument) as bad:
            ask(amount, crypto, basis)
        assert [d.field for d in bad.value.details] == [field], (amount, crypto, basis)


def test_a_claim_is_taken_once_with_the_right_token_and_an_address_of_the_network() -> None:
    invoice = paid_invoice()
    refund_id = refund(invoice, ask(crypto_amount="0.5"))
    with pytest.raises(NotFound):
        invoice.claim_refund(refund_id, refunds.token_sha256("0" * 80), PAYER, addresses.payout_address, T0)
    with pytest.raises(InvalidArgument) as bad:
        invoice.claim_refund(
            refund_id,
            refunds.token_sha256(TOKEN),
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            addresses.payout_address,
            T0,
        )
    assert bad.value.details[0].field == "address"
    invoice.claim_refund(refund_id, refunds.token_sha256(TOKEN), PAYER, addresses.payout_address, T0)
    claimed = invoice.pending[-1]
    assert isinstance(claimed, ev.RefundClaimed) and claimed.address == addresses.payout_address(
        "ethereum", PAYER
    )
    with pytest.raises(Conflict):
        invoice.claim_refund(refund_id, refunds.token_sha256(TOKEN), PAYER, addresses.payout_address, T0)


def test_one_transfer_of_at_least_the_amount_completes_one_refund_once() -> None:
    invoice = paid_invoice()
    first, second = refund(invoice, ask(crypto_amount="0.3")), refund(invoice, ask(crypto_amount="0.3"))
    for refund_id in (first, second):
        invoice.claim_refund(refund_id, refunds.token_sha256(TOKEN), PAYER, addresses.payout_address, T0)
    invoice.pending = []
    invoice.observe(to(PAYER, "0.29"), T0)  # short: completes nothing, and is no payment of the invoice
    assert invoice.pending == [] and invoice.amount_paid == Decimal("1.0")
    invoice.observe(to(PAYER, "0.3", tx="0xone"), T0)
    invoice.observe(to(PAYER, "0.3", tx="0xone"), T0)  # seen again by a restarted watcher
    assert types(invoice) == ["refund.completed"]
    assert invoice.refunds[first].status == "completed" and invoice.refunds[second].status == "claimed"
    invoice.observe(to(PAYER, "0.31", tx="0xtwo"), T0)
    assert types(invoice) == ["refund.completed"] and invoice.refunded() == Decimal("0.6")
    with pytest.raises(FailedPrecondition):
        invoice.cancel_refund(first, "", T0)


def test_a_cancelled_refund_gives_its_amount_back_and_cannot_be_claimed() -> None:
    invoice = paid_invoice()
    refund_id = refund(invoice, ask())
    assert invoice.refundable() == 0
    invoice.cancel_refund(refund_id, "", T0)
    invoice.cancel_refund(refund_id, "", T0)  # again: nothing more happens
    assert types(invoice) == ["refund.created", "refund.cancelled"] and invoice.refundable() == Decimal("1.0")
    with pytest.raises(FailedPrecondition):
        invoice.claim_refund(refund_id, refunds.token_sha256(TOKEN), PAYER, addresses.payout_address, T0)
    with pytest.raises(NotFound):
        invoice.cancel_refund(str(uuid.uuid4()), "", T0)


def test_a_snapshot_keeps_refunds() -> None:
    invoice = paid_invoice()
    refund_id = refund(invoice, ask(crypto_amount="0.5"))
    invoice.claim_refund(refund_id, refunds.token_sha256(TOKEN), PAYER, addresses.payout_address, T0)
    copy = Invoice(invoice.id)
    copy.restore(invoice.snapshot())
    assert copy.snapshot() == invoice.snapshot() and copy.refundable() == Decimal("0.5")
    copy.observe(to(PAYER, "0.5"), T0)
    assert types(copy) == ["refund.completed"]


def test_a_claim_token_names_its_refund() -> None:
    refund_id = ids.new_id(3)
    assert refunds.refund_id_of_token(refund_id.hex + "a" * 48) == str(refund_id)
    assert refunds.refund_id_of_token(refund_id.hex) is None
    assert refunds.refund_id_of_token(refund_id.hex.upper() + "a" * 48) is None
