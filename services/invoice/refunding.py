"""The refund commands of an Invoice: what the merchant owes back, the payer's claim, and the
transfer that pays it.

They live in the aggregate (the `Invoice` in domain.py is a `RefundCommands`) because the one
rule that matters, "never more back than was received", needs the payments and every earlier
refund in one consistent place; they are a module of their own only to keep each one readable.
What a refund request may say and what it comes to are in refunds.py.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from collections.abc import Callable
from decimal import Decimal

from checkout.invoice.v1 import events_pb2 as ev

from libs.common.errors import Conflict, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from libs.common.protoconv import timestamp
from services.invoice import pricing
from services.invoice.inputs import LockedRate, Sighting
from services.invoice.refunds import RefundAsk, RefundState, price
from services.invoice.state import LIVE_PAYMENT_STATUSES, InvoiceState

# Statuses whose money can be refunded (and any invoice that was paid late, whatever its status).
REFUNDABLE_STATUSES = frozenset({"paid", "confirmed"})


class RefundCommands(InvoiceState):
    """What an invoice does about refunds; `Invoice` (domain.py) adds the payment lifecycle."""

    def received(self) -> Decimal:
        """Every payment the chain still holds, late ones included: what could be given back."""
        return sum(
            (p.amount for p in self.payments.values() if p.status in LIVE_PAYMENT_STATUSES), Decimal(0)
        )

    def refundable(self) -> Decimal:
        held = sum((r.crypto_amount for r in self.refunds.values() if r.holding), Decimal(0))
        return max(Decimal(0), self.received() - held)

    def refunded(self) -> Decimal:
        return sum((r.crypto_amount for r in self.refunds.values() if r.status == "completed"), Decimal(0))

    def refund(
        self,
        refund_id: uuid.UUID,
        ask: RefundAsk,
        *,
        rate: LockedRate | None,
        token_sha256: str,
        now: dt.datetime,
    ) -> None:
        """Records what the merchant owes back. `rate`: the current quote for `ask.basis ==
        "current"`; None for the invoice's own."""
        if self.status not in REFUNDABLE_STATUSES and not self.paid_late:
            raise FailedPrecondition(
                f"an invoice that is {self.status} cannot be refunded",
                [FieldViolation("status", f"is {self.status}: only a paid, overpaid or paid-late invoice")],
            )
        asset = pricing.CRYPTO[self.crypto_currency]
        refundable = self.refundable()
        if refundable <= 0:
            raise FailedPrecondition(
                "everything received has been refunded already",
                [FieldViolation(ask.field, "nothing is left to refund")],
            )
        used = rate.rate if rate is not None else self.rate
        if used <= 0:
            # Only an invoice restored from a snapshot taken before refunds existed lacks its rate.
            raise FailedPrecondition("this invoice's locked rate is not known: refund it at the current rate")
        priced = price(
            ask, refundable=refundable, invoice_rate=self.rate, rate=used, currency=self.currency, asset=asset
        )
        self._emit(
            ev.RefundCreated(
                invoice_id=str(self.id),
                merchant_id=self.merchant_id,
                refund_id=str(refund_id),
                amount=pricing.format_money(priced.amount, pricing.FIAT_MINOR_UNITS[self.currency]),
                currency=self.currency,
                crypto_amount=pricing.format_money(priced.crypto_amount, self.decimals),
                crypto_currency=self.crypto_currency,
                network=self.network,
                rate=format(used, "f"),
                rate_basis=ask.basis,
                rate_source=rate.source if rate is not None else "invoice",
                reason=ask.reason,
                claim_token_sha256=token_sha256,
                created_at=timestamp(now),
            )
        )

    def _refund_of(self, refund_id: str) -> RefundState:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise NotFound("refund not found")
        return refund

    def claim_refund(
        self,
        refund_id: str,
        token_sha256: str,
        address: str,
        spell: Callable[[str, str], str],
        now: dt.datetime,
    ) -> None:
        """The payer names where to be paid: once. `spell(network, address)`: the address as the
        watcher will report it, or ValueError saying why it is none on that network."""
        refund = self._refund_of(refund_id)
        if not hmac.compare_digest(refund.token_sha256, token_sha256):
            raise NotFound("refund not found")  # a wrong token learns nothing, not even that it exists
        if refund.status == "cancelled":
            raise FailedPrecondition("the merchant cancelled this refund")
        if refund.status != "awaiting_claim":
            raise Conflict("this refund has been claimed already")
        try:
            address = spell(self.network, address)
        except ValueError as error:
            raise InvalidArgument.field("address", f"{error} (on {self.network})") from None
        self._emit(
            ev.RefundClaimed(
                invoice_id=str(self.id),
                merchant_id=self.merchant_id,
                refund_id=refund_id,
                network=self.network,
                address=address,
                crypto_amount=pricing.format_money(refund.crypto_amount, self.decimals),
                crypto_currency=self.crypto_currency,
                claimed_at=timestamp(now),
            )
        )

    def cancel_refund(self, refund_id: str, reason: str, now: dt.datetime) -> None:
        refund = self._refund_of(refund_id)
        if refund.status == "cancelled":
            return
        if refund.status == "completed":
            raise FailedPrecondition("the refund has been paid and can no longer be cancelled")
        self._emit(
            ev.RefundCancelled(
                invoice_id=str(self.id),
                merchant_id=self.merchant_id,
                refund_id=refund_id,
                reason=reason.strip() or "cancelled by the merchant",
                cancelled_at=timestamp(now),
            )
        )

    def _refund_paid(self, seen: Sighting, now: dt.datetime) -> bool:
        """A mined transfer of at least a claimed refund's amount to its address, from anyone,
        completes it (the oldest such refund: one transfer pays one refund)."""
        if seen.block_number is None or seen.asset != self.crypto_currency:
            return False
        key = (seen.tx_hash.lower(), seen.output_index)
        if any((r.tx_hash, r.output_index) == key for r in self.refunds.values() if r.status == "completed"):
            return True  # seen again (a restarted watcher): already counted
        for refund in self.refunds.values():
            if (
                refund.status == "claimed"
                and refund.address.lower() == seen.to_address.lower()
                and seen.amount >= refund.crypto_amount
            ):
                self._emit(
                    ev.RefundCompleted(
                        invoice_id=str(self.id),
                        merchant_id=self.merchant_id,
                        refund_id=refund.refund_id,
                        network=seen.network,
                        address=refund.address,
                        tx_hash=key[0],
                        output_index=key[1],
                        amount_sent=pricing.format_money(seen.amount, self.decimals),
                        crypto_currency=self.crypto_currency,
                        block_number=seen.block_number,
                        completed_at=timestamp(now),
                    )
                )
                return True
        return False
