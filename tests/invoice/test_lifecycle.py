"""The Invoice aggregate's payment lifecycle, decided from events alone (no I/O)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal

import pytest
from checkout.invoice.v1 import events_pb2 as ev
from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common import events, ids
from libs.common.errors import FailedPrecondition
from libs.common.protoconv import timestamp
from services.invoice.domain import Invoice
from services.invoice.inputs import Sighting
from services.invoice.state import STATUSES

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
ADDRESS = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"


def new_invoice(amount: str = "1.0", *, tolerance: str = "0", expires_in: int = 900) -> Invoice:
    invoice_id = ids.new_id(7)
    invoice = Invoice(invoice_id)
    invoice.replay(
        ev.InvoiceCreated(
            invoice_id=str(invoice_id),
            merchant_id=str(ids.new_id(7)),
            title="t",
            total="2400.00",
            currency="USD",
            crypto_currency="ETH",
            crypto_amount=amount,
            network="ethereum",
            payment_address=ADDRESS,
            exchange_rate=pb.ExchangeRate(rate="2400", source="fixed"),
            payment_tolerance=pb.PaymentTolerance(underpaid_percent=tolerance),
            expires_at=timestamp(T0 + dt.timedelta(seconds=expires_in)),
            created_at=timestamp(T0),
        ),
        1,
    )
    return invoice


def seen(
    amount: str, tx: str = "0xaa", *, block: int | None = 10, confirmations: int = 1, asset: str = "ETH"
) -> Sighting:
    return Sighting(
        network="ethereum",
        tx_hash=tx,
        output_index=-1,
        asset=asset,
        amount=Decimal(amount),
        from_address="0x" + "1" * 40,
        to_address=ADDRESS.lower(),
        block_number=block,
        block_hash="0xb" if block is not None else "",
        confirmations=confirmations,
        required_confirmations=3,
    )


def types(invoice: Invoice) -> list[str]:
    names = [events.type_of(e) for e in invoice.pending]
    invoice.pending = []
    return names


def test_exact_payment_makes_the_invoice_paid_then_confirmed_as_blocks_come() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.0"), T0)
    assert types(invoice) == ["invoice.payment_detected", "invoice.paid"]
    assert invoice.status == "paid" and invoice.amount_paid == Decimal("1.0")
    invoice.recount(11, T0)
    assert types(invoice) == ["invoice.payment_updated"]
    invoice.recount(12, T0)
    assert types(invoice) == ["invoice.payment_updated", "invoice.payment_confirmed", "invoice.confirmed"]
    assert invoice.status == "confirmed"
    invoice.recount(13, T0)
    assert types(invoice) == []


def test_seeing_the_same_payment_again_changes_nothing() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.0"), T0)
    types(invoice)
    invoice.observe(seen("1.0"), T0)
    assert types(invoice) == []
    assert invoice.amount_paid == Decimal("1.0")


def test_underpayment_is_partial_until_topped_up() -> None:
    invoice = new_invoice()
    invoice.observe(seen("0.4"), T0)
    assert types(invoice) == ["invoice.payment_detected", "invoice.partially_paid"]
    invoice.observe(seen("0.6", tx="0xbb"), T0)
    assert types(invoice) == ["invoice.payment_detected", "invoice.paid"]
    assert invoice.amount_paid == Decimal("1.0") and not invoice.overpaid


def test_underpayment_within_tolerance_is_paid() -> None:
    invoice = new_invoice(tolerance="1.5")
    invoice.observe(seen("0.985"), T0)
    assert invoice.status == "paid"
    invoice = new_invoice(tolerance="1.5")
    invoice.observe(seen("0.98"), T0)
    assert invoice.status == "partial"


def test_overpayment_is_a_flag_not_a_status() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.2"), T0)
    assert invoice.status == "paid" and invoice.overpaid
    status_event = invoice.pending[-1]
    assert events.type_of(status_event) == "invoice.paid" and status_event.overpaid


def test_another_asset_to_the_address_does_not_pay_the_invoice() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.0", asset="USDC"), T0)
    assert types(invoice) == [] and invoice.status == "pending"


def test_expiry_closes_an_unpaid_invoice_and_a_later_payment_is_recorded_late() -> None:
    invoice = new_invoice()
    assert not invoice.expire(T0)
    later = T0 + dt.timedelta(seconds=901)
    assert invoice.expire(later)
    assert types(invoice) == ["invoice.expired"]
    invoice.observe(seen("1.0"), later)
    detected = invoice.pending[0]
    assert isinstance(detected, ev.PaymentDetected) and detected.late
    assert types(invoice) == ["invoice.payment_detected"]
    assert invoice.status == "expired" and invoice.paid_late and invoice.amount_paid == 0


def test_a_payment_mined_before_the_deadline_counts_even_if_seen_after_it() -> None:
    invoice = new_invoice()
    on_time = seen("1.0")
    on_time = Sighting(**{**on_time.__dict__, "mined_at": T0 + dt.timedelta(seconds=10)})
    invoice.observe(on_time, T0 + dt.timedelta(seconds=2000))
    assert invoice.status == "paid" and not invoice.paid_late


def test_a_reorged_payment_reopens_the_invoice_and_says_why() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.0"), T0)
    types(invoice)
    invoice.retract("0xaa", -1, "block 10 was replaced", T0)
    pending = list(invoice.pending)
    assert types(invoice) == ["invoice.payment_reorged", "invoice.reopened"]
    assert invoice.status == "pending" and invoice.amount_paid == 0
    reopened = pending[-1]
    assert events.type_of(reopened) == "invoice.reopened" and "block 10 was replaced" in reopened.reason
    # The same transaction mined again counts again, under the same payment id.
    invoice.observe(seen("1.0", block=12), T0)
    assert types(invoice) == ["invoice.payment_detected", "invoice.paid"]


def test_a_reorg_with_another_payment_left_goes_back_to_partial() -> None:
    invoice = new_invoice()
    invoice.observe(seen("0.5"), T0)
    invoice.observe(seen("0.5", tx="0xbb"), T0)
    assert invoice.status == "paid"
    invoice.retract("0xbb", -1, "reorg", T0)
    assert invoice.status == "partial" and invoice.amount_paid == Decimal("0.5")


def test_a_reorg_after_expiry_makes_a_paid_invoice_invalid() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.0"), T0)
    invoice.retract("0xaa", -1, "reorg", T0 + dt.timedelta(seconds=1000))
    assert invoice.status == "invalid"


def test_cancel_only_while_nothing_is_paid() -> None:
    invoice = new_invoice()
    invoice.cancel("", T0)
    assert types(invoice) == ["invoice.cancelled"]
    paid = new_invoice()
    paid.observe(seen("0.1"), T0)
    with pytest.raises(FailedPrecondition):
        paid.cancel("", T0)


def test_snapshot_restores_payments_and_flags() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.2"), T0)
    copy = Invoice(invoice.id)
    copy.restore(invoice.snapshot())
    assert copy.snapshot() == invoice.snapshot()
    copy.observe(seen("1.2"), T0)
    assert copy.pending == []
    assert isinstance(uuid.UUID(next(iter(copy.payments.values())).payment_id), uuid.UUID)


def test_a_snapshot_written_before_refunds_restores_and_still_takes_payments() -> None:
    # The keys a snapshot had before refunds (no network, rate, refunds, decimals): what the
    # coin says fills them in, and the invoice goes on being paid as if never snapshotted.
    invoice = new_invoice()
    invoice.observe(seen("0.4"), T0)
    old = {
        key: value
        for key, value in invoice.snapshot().items()
        if key not in ("network", "rate", "refunds", "decimals")
    }
    copy = Invoice(invoice.id)
    copy.restore(old)
    assert (copy.network, copy.decimals, copy.rate, copy.refunds) == ("ethereum", 18, Decimal(0), {})
    assert (copy.status, copy.amount_paid, copy.expires_at) == ("partial", Decimal("0.4"), invoice.expires_at)
    copy.observe(seen("0.6", tx="0xbb"), T0)
    assert copy.status == "paid"


# -- no status transition is skipped by a jump (issue 9, item 8) ---------------------------------


def statuses(invoice: Invoice) -> list[tuple[str, str]]:
    """(previous_status, status) of each status event emitted since the last call."""
    found = [(e.previous_status, e.status) for e in invoice.pending if isinstance(e, ev.StatusChange)]
    invoice.pending = []
    return found


def test_a_payment_first_seen_already_confirmed_is_paid_before_it_is_confirmed() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.0", confirmations=3), T0)
    assert types(invoice) == [
        "invoice.payment_detected",
        "invoice.payment_confirmed",
        "invoice.paid",
        "invoice.confirmed",
    ]
    assert invoice.status == "confirmed"


def test_a_top_up_first_seen_confirmed_goes_through_partial_then_paid_then_confirmed() -> None:
    invoice = new_invoice()
    invoice.observe(seen("0.4", confirmations=5), T0)
    assert statuses(invoice) == [("pending", "partial")]
    invoice.observe(seen("0.6", tx="0xbb", confirmations=3), T0)
    assert statuses(invoice) == [("partial", "paid"), ("paid", "confirmed")]


def test_a_confirmed_invoice_stays_confirmed_when_more_money_arrives() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.0", confirmations=3), T0)
    statuses(invoice)
    invoice.observe(seen("0.1", tx="0xcc", confirmations=0, block=None), T0)
    assert statuses(invoice) == []
    assert invoice.status == "confirmed" and invoice.overpaid
    invoice.recount(20, T0)
    assert statuses(invoice) == []


def test_an_expired_invoice_paid_again_after_a_reorg_is_paid_before_it_is_confirmed() -> None:
    invoice = new_invoice()
    invoice.observe(seen("1.0"), T0)
    late = T0 + dt.timedelta(seconds=1000)
    invoice.retract("0xaa", -1, "reorg", late)
    assert invoice.status == "invalid"
    statuses(invoice)
    invoice.observe(seen("1.0", block=12, confirmations=3), late)
    assert statuses(invoice) == [("invalid", "paid"), ("paid", "confirmed")]


def test_every_status_event_sequence_is_a_documented_transition_and_paid_precedes_confirmed() -> None:
    """Random sightings, recounts and reorgs (a fixed seed, so a failure is reproducible): each
    status event starts where the last one ended, confirmed always comes straight from paid, and
    the paid and confirmed events of an invoice that is never reorged are emitted once each."""
    rng = random.Random(9)
    for _ in range(300):
        invoice = new_invoice()
        txs: list[str] = []
        trail: list[tuple[str, str]] = []
        reorged = False
        for step in range(rng.randint(1, 8)):
            roll = rng.random()
            if roll < 0.55 or not txs:
                tx = f"0x{step:02x}{rng.randint(0, 1 << 30):08x}"
                txs.append(tx)
                invoice.observe(
                    seen(rng.choice(["0.3", "0.5", "1.0"]), tx, confirmations=rng.randint(0, 4)), T0
                )
            elif roll < 0.9:
                invoice.recount(10 + rng.randint(0, 4), T0)
            else:
                invoice.retract(rng.choice(txs), -1, "reorg", T0)
                reorged = True
            trail += statuses(invoice)
        current = "pending"
        for previous, status in trail:
            assert previous == current, trail
            assert previous != status, trail
            if status == "confirmed":
                assert previous == "paid", trail
            current = status
        assert current == invoice.status
        if not reorged:
            assert [s for _, s in trail].count("paid") <= 1, trail
            assert [s for _, s in trail].count("confirmed") <= 1, trail


def test_an_invoice_is_pending_or_in_a_status_a_status_event_moves_it_to() -> None:
    """The statuses are read from the protos' status events, so a new one needs no list here."""
    assert STATUSES == ("pending", "partial", "paid", "confirmed", "expired", "cancelled", "invalid")
    assert set(STATUSES) == {"pending", *events.STATUS_EVENTS.values()}
