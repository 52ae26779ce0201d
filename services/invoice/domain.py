"""The Invoice aggregate: the events an invoice is born with and lives through, and the rules
that decide them (what a payment, a reorg, the expiry, a cancel or a refund does to it).

Stdlib plus the generated event messages and pricing (services/invoice/pricing.py). What a
merchant may ask for, and its checks, are in requests.py; `Invoice.create` takes their `Draft`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from checkout.invoice.v1 import events_pb2 as ev
from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common import ids
from libs.common.aggregate import Aggregate
from libs.common.errors import Conflict, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from libs.common.limits import CANCEL_REASON_MAX_CHARS
from libs.common.protoconv import datetime_of, struct, timestamp
from services.invoice import pricing
from services.invoice.refunds import RefundAsk, RefundState, price
from services.invoice.requests import Draft

STATUSES = ("pending", "partial", "paid", "confirmed", "expired", "cancelled", "invalid")
# Statuses in which payments count towards the invoice; after these it is closed and a payment
# is recorded as late (never lost, never counted).
OPEN_STATUSES = frozenset({"pending", "partial"})
CLOSED_STATUSES = frozenset({"expired", "cancelled"})
PAYMENT_STATUSES = ("detected", "confirming", "confirmed", "failed", "reorged")
# What a payment's confirmations make of it, before it is confirmed.
LIVE_PAYMENT_STATUSES = frozenset({"detected", "confirming", "confirmed"})
# Statuses whose money can be refunded (and any invoice that was paid late, whatever its status).
REFUNDABLE_STATUSES = frozenset({"paid", "confirmed"})
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class LockedRate:
    rate: Decimal
    source: str
    fetched_at: dt.datetime
    pair: str


@dataclass(frozen=True)
class PaymentTarget:
    network: str
    address_index: int
    address: str
    uri: str


@dataclass(frozen=True)
class Sighting:
    """A transfer to the invoice's address as a watcher saw it (amount in the asset's units)."""

    network: str
    tx_hash: str
    output_index: int
    asset: str
    amount: Decimal
    from_address: str
    to_address: str
    block_number: int | None
    block_hash: str
    confirmations: int
    required_confirmations: int
    mined_at: dt.datetime | None = None  # the block's time; None while unconfirmed


@dataclass(frozen=True)
class PaymentState:
    payment_id: str
    network: str
    tx_hash: str
    output_index: int
    amount: Decimal
    status: str
    block_number: int | None
    block_hash: str
    confirmations: int
    required: int
    late: bool

    @property
    def counted(self) -> bool:
        return self.status in LIVE_PAYMENT_STATUSES and not self.late

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "amount": str(self.amount)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PaymentState:
        return cls(**{**data, "amount": Decimal(data["amount"])})


def payment_status(confirmations: int, required: int) -> str:
    if confirmations >= required:
        return "confirmed"
    return "confirming" if confirmations > 0 else "detected"


def payment_id_for(invoice_id: uuid.UUID, network: str, tx_hash: str, output_index: int) -> uuid.UUID:
    """The same transaction output is the same payment, also when a reorg takes it away and it
    comes back: the id is derived from it (and carries the invoice's slot)."""
    return ids.derived_id(ids.slot_of(invoice_id), "payment", network, tx_hash.lower(), str(output_index))


class Invoice(Aggregate):
    aggregate_type = "Invoice"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.merchant_id = ""
        self.status = "pending"
        self.crypto_currency = ""
        self.crypto_amount = Decimal(0)
        self.amount_paid = Decimal(0)
        self.payment_address = ""
        self.expires_at: dt.datetime | None = None
        self.customer_id = ""
        self.total = ""
        self.currency = ""
        self.decimals = 0
        self.underpaid_percent = Decimal(0)
        self.overpaid = False
        self.paid_late = False
        self.payments: dict[tuple[str, int], PaymentState] = {}
        self.network = ""
        self.rate = Decimal(0)  # the locked exchange rate, fiat per coin
        self.refunds: dict[str, RefundState] = {}  # in the order they were made

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

    # -- refunds -----------------------------------------------------------------------------
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

    # -- state -------------------------------------------------------------------------------
    def _apply(self, event: Any) -> None:
        if isinstance(event, ev.InvoiceCreated):
            self.merchant_id = event.merchant_id
            self.status = "pending"
            self.crypto_currency = event.crypto_currency
            self.crypto_amount = Decimal(event.crypto_amount)
            self.payment_address = event.payment_address
            self.expires_at = datetime_of(event.expires_at)
            self.customer_id = event.customer_id
            self.total = event.total
            self.currency = event.currency
            self.decimals = pricing.CRYPTO[event.crypto_currency].decimals
            self.underpaid_percent = Decimal(event.payment_tolerance.underpaid_percent or "0")
            self.network = event.network
            self.rate = Decimal(event.exchange_rate.rate or "0")
        elif isinstance(event, ev.RefundCreated):
            self.refunds[event.refund_id] = RefundState(
                event.refund_id, Decimal(event.crypto_amount), "awaiting_claim", event.claim_token_sha256
            )
        elif isinstance(event, ev.RefundClaimed):
            self.refunds[event.refund_id] = self.refunds[event.refund_id].with_status(
                "claimed", address=event.address
            )
        elif isinstance(event, ev.RefundCompleted):
            self.refunds[event.refund_id] = self.refunds[event.refund_id].with_status(
                "completed", tx_hash=event.tx_hash, output_index=event.output_index
            )
        elif isinstance(event, ev.RefundCancelled):
            self.refunds[event.refund_id] = self.refunds[event.refund_id].with_status("cancelled")
        elif isinstance(event, ev.PaymentDetected):
            key = (event.tx_hash, event.output_index)
            self.payments[key] = PaymentState(
                payment_id=event.payment_id,
                network=event.network,
                tx_hash=event.tx_hash,
                output_index=event.output_index,
                amount=Decimal(event.amount),
                status=event.status if event.status != "confirmed" else "confirming",
                block_number=event.block_number if event.HasField("block_number") else None,
                block_hash=event.block_hash,
                confirmations=event.confirmations,
                required=event.required_confirmations,
                late=event.late,
            )
            self._totals(event.amount_paid, event.overpaid)
            self.paid_late = self.paid_late or event.late
        elif isinstance(event, ev.PaymentUpdated):
            key = (event.tx_hash, event.output_index)
            self.payments[key] = replace(
                self.payments[key],
                block_number=event.block_number if event.HasField("block_number") else None,
                block_hash=event.block_hash,
                confirmations=event.confirmations,
                status=event.status,
            )
        elif isinstance(event, ev.PaymentConfirmed):
            key = (event.tx_hash, event.output_index)
            self.payments[key] = replace(self.payments[key], status="confirmed")
        elif isinstance(event, ev.PaymentReorged):
            key = (event.tx_hash, event.output_index)
            self.payments[key] = replace(self.payments[key], status="reorged")
            self._totals(event.amount_paid, event.overpaid)
        elif isinstance(event, ev.StatusChange):
            self.status = event.status
            self.overpaid = event.overpaid

    def _totals(self, amount_paid: str, overpaid: bool) -> None:
        self.amount_paid = Decimal(amount_paid)
        self.overpaid = overpaid

    def snapshot(self) -> dict[str, Any]:
        return {
            "merchant_id": self.merchant_id,
            "status": self.status,
            "crypto_currency": self.crypto_currency,
            "crypto_amount": str(self.crypto_amount),
            "amount_paid": str(self.amount_paid),
            "payment_address": self.payment_address,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "customer_id": self.customer_id,
            "total": self.total,
            "currency": self.currency,
            "decimals": self.decimals,
            "underpaid_percent": str(self.underpaid_percent),
            "overpaid": self.overpaid,
            "paid_late": self.paid_late,
            "payments": [p.to_json() for p in self.payments.values()],
            "network": self.network,
            "rate": str(self.rate),
            "refunds": [r.to_json() for r in self.refunds.values()],
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.merchant_id = data["merchant_id"]
        self.status = data["status"]
        self.crypto_currency = data["crypto_currency"]
        self.crypto_amount = Decimal(data["crypto_amount"])
        self.amount_paid = Decimal(data["amount_paid"])
        self.payment_address = data["payment_address"]
        self.expires_at = dt.datetime.fromisoformat(data["expires_at"]) if data["expires_at"] else None
        self.customer_id = data.get("customer_id", "")
        self.total = data.get("total", "")
        self.currency = data.get("currency", "")
        self.decimals = data.get("decimals", pricing.CRYPTO[self.crypto_currency].decimals)
        self.underpaid_percent = Decimal(data.get("underpaid_percent", "0"))
        self.overpaid = data.get("overpaid", False)
        self.paid_late = data.get("paid_late", False)
        payments = (PaymentState.from_json(p) for p in data.get("payments", []))
        self.payments = {(p.tx_hash, p.output_index): p for p in payments}
        # Snapshots from before refunds lack these; the next snapshot has them.
        self.network = data.get("network", pricing.CRYPTO[self.crypto_currency].network)
        self.rate = Decimal(data.get("rate", "0"))
        refunds = (RefundState.from_json(r) for r in data.get("refunds", []))
        self.refunds = {r.refund_id: r for r in refunds}


# The status `_settle` lands on → the reason its status event gives when the caller has none.
_DEFAULT_REASONS: dict[str, str] = {
    "pending": "no counted payment is left; the invoice is open again",
    "partial": "payments so far are short of the amount due",
    "paid": "payments cover the amount due; waiting for confirmations",
    "confirmed": "every counted payment has the required confirmations",
    "expired": "expired before the amount due was paid",
    "invalid": "a counted payment was lost after the invoice expired",
}
