"""The Invoice aggregate: the events an invoice is born with and lives through, and the rules
that decide them (what a payment, a reorg, the expiry, a cancel or a refund does to it).

Stdlib plus the generated event messages and pricing (services/invoice/pricing.py). What a
merchant may ask for, and its checks, are in requests.py; `Invoice.create` takes their `Draft`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from checkout.invoice.v1 import events_pb2 as ev
from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common import ids
from libs.common.errors import FailedPrecondition, InvalidArgument
from libs.common.limits import CANCEL_REASON_MAX_CHARS
from libs.common.protoconv import struct, timestamp
from services.invoice import pricing
from services.invoice.inputs import LockedRate, PaymentTarget, Sighting
from services.invoice.refunding import RefundCommands
from services.invoice.requests import Draft
from services.invoice.state import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    payment_status,
)

_HUNDRED = Decimal(100)


def payment_id_for(invoice_id: uuid.UUID, network: str, tx_hash: str, output_index: int) -> uuid.UUID:
    """The same transaction output is the same payment, also when a reorg takes it away and it
    comes back: the id is derived from it (and carries the invoice's slot)."""
    return ids.derived_id(ids.slot_of(invoice_id), "payment", network, tx_hash.lower(), str(output_index))


class Invoice(RefundCommands):
    aggregate_type = "Invoice"

    @classmethod
    def create(
        cls,
        invoice_id: uuid.UUID,
        *,
        merchant_id: uuid.UUID,
        draft: Draft,
        rate: LockedRate,
        payment: PaymentTarget,
        default_underpaid_percent: Decimal,
        now: dt.datetime,
    ) -> Invoice:
        if payment.network != draft.network:
            raise ValueError(f"a {draft.asset.symbol} invoice needs a {draft.network} address")
        exponent = pricing.FIAT_MINOR_UNITS[draft.currency]
        underpaid = (
            draft.underpaid_percent if draft.underpaid_percent is not None else default_underpaid_percent
        )
        invoice = cls(invoice_id)
        invoice._emit(
            ev.InvoiceCreated(
                invoice_id=str(invoice_id),
                merchant_id=str(merchant_id),
                customer_id=str(draft.customer_id) if draft.customer_id else "",
                customer_email=draft.customer_email,
                title=draft.title,
                description=draft.description,
                items=[
                    pb.LineItem(
                        name=item.name,
                        quantity=str(item.quantity),
                        unit_price=pricing.format_money(item.unit_price, exponent),
                    )
                    for item in draft.items
                ],
                subtotal=pricing.format_money(draft.totals.subtotal, exponent),
                tax=pricing.format_money(draft.totals.tax, exponent),
                total=pricing.format_money(draft.totals.total, exponent),
                currency=draft.currency,
                crypto_currency=draft.asset.symbol,
                crypto_amount=pricing.format_money(draft.crypto_amount(rate.rate), draft.asset.decimals),
                network=payment.network,
                address_index=payment.address_index,
                payment_address=payment.address,
                payment_uri=payment.uri,
                exchange_rate=pb.ExchangeRate(
                    rate=format(rate.rate, "f"),
                    source=rate.source,
                    fetched_at=timestamp(rate.fetched_at),
                    pair=rate.pair,
                ),
                payment_tolerance=pb.PaymentTolerance(underpaid_percent=format(underpaid, "f")),
                metadata=struct(draft.metadata),
                expires_at=timestamp(now + dt.timedelta(seconds=draft.expires_in_seconds)),
                created_at=timestamp(now),
            )
        )
        return invoice

    # -- lifecycle commands ------------------------------------------------------------------
    # Each command emits payment events first, then at most one status event that `_settle`
    # derives from the payments: the status is a function of the payments, the expiry and the
    # merchant's tolerance, so a replay (or a reorg) always lands on the same answer.

    def observe(self, seen: Sighting, now: dt.datetime) -> None:
        """A watcher saw a transfer to this invoice's address (again, possibly in another block),
        or to an address a payer claimed a refund of it to."""
        if self._refund_paid(seen, now):
            return
        if seen.asset != self.crypto_currency or seen.to_address.lower() != self.payment_address.lower():
            return  # another asset to the same address (an ERC-20 to an ETH invoice) is not this invoice's
        key = (seen.tx_hash.lower(), seen.output_index)
        known = self.payments.get(key)
        status = payment_status(seen.confirmations, seen.required_confirmations)
        if known is None or known.status in ("reorged", "failed"):
            # On time if its block is older than the deadline, even when the watcher sees it later.
            arrived = seen.mined_at or now
            late = self.status in CLOSED_STATUSES or (
                self.expires_at is not None and arrived >= self.expires_at and self.status in OPEN_STATUSES
            )
            amount_paid = self.amount_paid + (seen.amount if not late else 0)
            self._emit(
                ev.PaymentDetected(
                    invoice_id=str(self.id),
                    merchant_id=self.merchant_id,
                    payment_id=str(payment_id_for(self.id, seen.network, key[0], key[1])),
                    network=seen.network,
                    tx_hash=key[0],
                    output_index=seen.output_index,
                    asset=seen.asset,
                    amount=pricing.format_money(seen.amount, self.decimals),
                    from_address=seen.from_address,
                    to_address=seen.to_address,
                    block_number=seen.block_number,
                    block_hash=seen.block_hash,
                    confirmations=seen.confirmations,
                    required_confirmations=seen.required_confirmations,
                    late=late,
                    status="confirming" if status == "confirmed" else status,
                    amount_paid=pricing.format_money(amount_paid, self.decimals),
                    overpaid=self.overpaid or amount_paid > self.crypto_amount,
                    detected_at=timestamp(now),
                )
            )
            if status == "confirmed":
                self._confirm_payment(key, now)
        elif known.status != "confirmed":
            self._track(key, seen.block_number, seen.block_hash, seen.confirmations, now)
        self._settle(now, "")

    def recount(self, tip: int, now: dt.datetime) -> None:
        """Confirmations of the open payments against the chain's tip height."""
        for key, payment in list(self.payments.items()):
            if payment.status in ("detected", "confirming") and payment.block_number is not None:
                confirmations = max(0, tip - payment.block_number + 1)
                if confirmations != payment.confirmations:
                    self._track(key, payment.block_number, payment.block_hash, confirmations, now)
        self._settle(now, "")

    def retract(self, tx_hash: str, output_index: int, reason: str, now: dt.datetime) -> None:
        """The chain no longer holds this payment: it stops counting, and the status follows."""
        key = (tx_hash.lower(), output_index)
        payment = self.payments.get(key)
        if payment is None or payment.status in ("reorged", "failed"):
            return
        amount_paid = self.amount_paid - (payment.amount if payment.counted else 0)
        self._emit(
            ev.PaymentReorged(
                invoice_id=str(self.id),
                merchant_id=self.merchant_id,
                payment_id=payment.payment_id,
                network=payment.network,
                tx_hash=key[0],
                output_index=output_index,
                amount=pricing.format_money(payment.amount, self.decimals),
                reason=reason,
                amount_paid=pricing.format_money(amount_paid, self.decimals),
                overpaid=amount_paid > self.crypto_amount,
                at=timestamp(now),
            )
        )
        short = f"payment {key[0]}:{output_index} is no longer on chain ({reason})"
        self._settle(now, short)

    def expire(self, now: dt.datetime) -> bool:
        """Closes an open invoice whose time is up; False when there is nothing to do."""
        if self.status not in OPEN_STATUSES or self.expires_at is None or now < self.expires_at:
            return False
        self._emit_status("expired", "expired before the amount due was paid", now)
        return True

    def cancel(self, reason: str, now: dt.datetime) -> None:
        if len(reason) > CANCEL_REASON_MAX_CHARS:
            raise InvalidArgument.field("reason", f"must be at most {CANCEL_REASON_MAX_CHARS} characters")
        if self.status == "cancelled":
            return
        if self.payments:
            raise FailedPrecondition("the invoice has payments and can no longer be cancelled")
        if self.status != "pending":
            raise FailedPrecondition(f"an invoice that is {self.status} cannot be cancelled")
        self._emit_status("cancelled", reason.strip() or "cancelled by the merchant", now)

    def _track(
        self,
        key: tuple[str, int],
        block_number: int | None,
        block_hash: str,
        confirmations: int,
        now: dt.datetime,
    ) -> None:
        payment = self.payments[key]
        status = payment_status(confirmations, payment.required)
        if (payment.block_number, payment.block_hash, payment.confirmations) == (
            block_number,
            block_hash,
            confirmations,
        ):
            return
        self._emit(
            ev.PaymentUpdated(
                invoice_id=str(self.id),
                merchant_id=self.merchant_id,
                payment_id=payment.payment_id,
                network=payment.network,
                tx_hash=key[0],
                output_index=key[1],
                block_number=block_number,
                block_hash=block_hash,
                confirmations=confirmations,
                status="confirming" if status == "confirmed" else status,
                at=timestamp(now),
            )
        )
        if status == "confirmed":
            self._confirm_payment(key, now)

    def _confirm_payment(self, key: tuple[str, int], now: dt.datetime) -> None:
        payment = self.payments[key]
        self._emit(
            ev.PaymentConfirmed(
                invoice_id=str(self.id),
                merchant_id=self.merchant_id,
                payment_id=payment.payment_id,
                network=payment.network,
                tx_hash=key[0],
                output_index=key[1],
                block_number=payment.block_number or 0,
                block_hash=payment.block_hash,
                confirmations=payment.confirmations,
                confirmed_at=timestamp(now),
            )
        )

    def due(self) -> Decimal:
        """What counts as paid: the amount less the tolerated shortfall."""
        return self.crypto_amount * (_HUNDRED - self.underpaid_percent) / _HUNDRED

    def _target(self, now: dt.datetime) -> str:
        """The status the payments, the tolerance and the expiry make of the invoice now.

        `confirmed` needs the confirmed payments alone to cover the amount due, so money that
        arrives after it (an overpayment, still unconfirmed) does not take it back to `paid` and
        announce a second `invoice.paid`."""
        counted = [p for p in self.payments.values() if p.counted]
        due = self.due()
        if self.amount_paid >= due and counted:
            confirmed = sum((p.amount for p in counted if p.status == "confirmed"), Decimal(0))
            return "confirmed" if confirmed >= due else "paid"
        if self.expires_at is not None and now >= self.expires_at and self.status != "invalid":
            # Expired while money was on its way back out (a reorg after expiry): it cannot reopen.
            return "invalid" if self.status in ("paid", "confirmed") else "expired"
        if self.status == "invalid":
            return "invalid"
        return "partial" if self.amount_paid > 0 else "pending"

    def _settle(self, now: dt.datetime, reason: str) -> None:
        """Moves the status to `_target`, one documented transition at a time: a watcher that
        first sees a payment with all its confirmations (it was down, or polls slower than
        blocks come) still makes the invoice `paid` before `confirmed`, so a merchant that
        fulfils on `invoice.paid` hears of every paid invoice, in order."""
        if self.status in CLOSED_STATUSES:
            return  # closed: late payments are recorded (and flagged) but change nothing
        target = self._target(now)
        if target == self.status:
            return
        steps = ["paid", target] if target == "confirmed" and self.status != "paid" else [target]
        for status in steps:
            self._emit_status(status, reason or _DEFAULT_REASONS[status], now)

    def _emit_status(self, status: str, reason: str, now: dt.datetime) -> None:
        """The status event that moves the invoice to `status`: which type it is follows from
        the status (events.proto, StatusChange)."""
        self._emit(
            ev.StatusChange(
                invoice_id=str(self.id),
                merchant_id=self.merchant_id,
                customer_id=self.customer_id,
                status=status,
                previous_status=self.status,
                crypto_amount=pricing.format_money(self.crypto_amount, self.decimals),
                amount_paid=pricing.format_money(self.amount_paid, self.decimals),
                crypto_currency=self.crypto_currency,
                total=self.total,
                currency=self.currency,
                overpaid=self.overpaid,
                paid_late=self.paid_late,
                reason=reason,
                at=timestamp(now),
            )
        )


# The status `_settle` lands on → the reason its status event gives when the caller has none.
_DEFAULT_REASONS: dict[str, str] = {
    "pending": "no counted payment is left; the invoice is open again",
    "partial": "payments so far are short of the amount due",
    "paid": "payments cover the amount due; waiting for confirmations",
    "confirmed": "every counted payment has the required confirmations",
    "expired": "expired before the amount due was paid",
    "invalid": "a counted payment was lost after the invoice expired",
}
