"""What the payer's page says about an invoice: the words for each status, what is still owed,
which chain and asset to pay with. Both the HTML page and its live updates read this one model,
so the first render and every update after it agree word for word.

Amounts stay the decimal strings the invoice service computed; the one sum done here (what is
still owed) is exact Decimal arithmetic at the crypto amount's own precision.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from checkout.invoice.v1 import invoice_pb2

from services.gateway.schemas.payer import PayerPayment, PayerStatus

# A page stops following an invoice in these statuses: nothing the payer does changes them.
FINAL_STATUSES = frozenset({"confirmed", "invalid", "cancelled"})
# An expired invoice can still reopen for a payment mined before the deadline that the watcher
# sees a moment later, or be flagged paid late; the page keeps watching it this long.
EXPIRED_WATCH_SECONDS = 300
# Payment statuses that count towards the invoice (detected → confirming → confirmed).
LIVE_PAYMENT_STATUSES = frozenset({"detected", "confirming", "confirmed"})
NETWORK_NAMES = {"ethereum": "Ethereum", "bitcoin": "Bitcoin"}
MAINNET_CHAIN_IDS = {"ethereum": 1}
# A refund the merchant owes the payer, by its status, in a note (a cancelled one says nothing).
REFUND_WORDS = {
    "awaiting_claim": "claim it through the link the merchant sent you.",
    "claimed": "the merchant will send it to {address}.",
    "completed": "sent to {address} in transaction {tx}.",
}


@dataclass(frozen=True)
class Asset:
    """The coin or token to send, on which chain, in words a payer cannot misread."""

    symbol: str
    network: str  # "Ethereum"
    chain_id: int | None
    token_contract: str | None  # an ERC-20 token's contract; None for the chain's own coin

    @property
    def chain(self) -> str:
        if self.chain_id is None:
            return self.network
        return f"{self.network} (chain id {self.chain_id})"

    @property
    def instruction(self) -> str:
        if self.token_contract:
            return (
                f"Send {self.symbol}, the ERC-20 token at {self.token_contract}, on {self.chain}. "
                f"Do not send the chain's own coin or another token: only {self.symbol} pays this invoice."
            )
        return f"Send {self.symbol} on {self.chain}. Tokens sent to this address do not pay this invoice."


def asset_of(view: invoice_pb2.CheckoutView) -> Asset:
    network = NETWORK_NAMES.get(view.network, view.network.title() or "its network")
    chain_id: int | None = None
    contract: str | None = None
    uri = view.payment_uri
    if uri.startswith("ethereum:"):
        # EIP-681: ethereum:<target>[@<chain id>][/transfer]?...; a `transfer` targets a token.
        head = uri.removeprefix("ethereum:").partition("?")[0]
        target_chain, _, function = head.partition("/")
        target, _, chain = target_chain.partition("@")
        if chain.isdigit():
            chain_id = int(chain)
        if function == "transfer":
            contract = target
    if chain_id is not None and MAINNET_CHAIN_IDS.get(view.network) == chain_id:
        chain_id = None  # the main network needs no number
        network = f"{network} mainnet"
    return Asset(view.crypto_currency, network, chain_id, contract)


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text or "0")
    except InvalidOperation:
        return Decimal(0)


def plain(amount: str | Decimal) -> str:
    """An exact amount without trailing zeros, as a payer types it: "0.010000000000000000" is
    "0.01", "24.000000" is "24". Nothing is rounded."""
    value = _decimal(amount) if isinstance(amount, str) else amount
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def owed(view: invoice_pb2.CheckoutView) -> str:
    """What is still to pay ("0" once paid in full)."""
    return plain(max(_decimal(view.crypto_amount) - _decimal(view.amount_paid), Decimal(0)))


def overpaid_by(view: invoice_pb2.CheckoutView) -> str:
    return plain(_decimal(view.amount_paid) - _decimal(view.crypto_amount))


@dataclass(frozen=True)
class PaymentRow:
    tx_hash: str
    amount: str
    status: str
    confirmations: int
    required_confirmations: int
    late: bool

    @property
    def progress(self) -> str:
        shown = min(self.confirmations, self.required_confirmations)
        return f"{shown} of {self.required_confirmations}"

    def live(self) -> PayerPayment:
        return PayerPayment(
            tx_hash=self.tx_hash,
            amount=self.amount,
            status=self.status,
            confirmations=self.progress,
            late=self.late,
        )


@dataclass(frozen=True)
class PayerPage:
    view: invoice_pb2.CheckoutView
    business_name: str | None
    asset: Asset
    now: dt.datetime

    @classmethod
    def of(
        cls, view: invoice_pb2.CheckoutView, business_name: str | None, now: dt.datetime | None = None
    ) -> PayerPage:
        return cls(view, business_name, asset_of(view), now or dt.datetime.now(dt.UTC))

    @property
    def status(self) -> str:
        return self.view.status

    @property
    def expires_at(self) -> dt.datetime | None:
        return self.view.expires_at.ToDatetime(tzinfo=dt.UTC) if self.view.HasField("expires_at") else None

    @property
    def seconds_left(self) -> int:
        if self.expires_at is None:
            return 0
        return max(0, int((self.expires_at - self.now).total_seconds()))

    @property
    def owed(self) -> str:
        return owed(self.view)

    @property
    def amount(self) -> str:
        return plain(self.view.crypto_amount)

    @property
    def paid(self) -> str:
        return plain(self.view.amount_paid)

    @property
    def countdown(self) -> str:
        """What the countdown shows before its script runs (and without script)."""
        left = self.seconds_left
        if left <= 0:
            return "time is up"
        minutes, seconds = divmod(left, 60)
        if minutes >= 60:
            return f"{minutes // 60} h {minutes % 60} min"
        return f"{minutes}:{seconds:02d}"

    @property
    def expires_iso(self) -> str:
        return self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if self.expires_at else ""

    @property
    def expires_text(self) -> str:
        return self.expires_at.strftime("%Y-%m-%d %H:%M UTC") if self.expires_at else "no time limit"

    @property
    def payable(self) -> bool:
        """Whether to show where to pay: open, and not past its time."""
        return self.status in ("pending", "partial") and self.seconds_left > 0

    @property
    def payments(self) -> list[PaymentRow]:
        return [
            PaymentRow(
                p.tx_hash, plain(p.amount), p.status, p.confirmations, p.required_confirmations, p.late
            )
            for p in self.view.payments
        ]

    @property
    def final(self) -> bool:
        """Nothing more will happen that the page should follow."""
        if self.status in FINAL_STATUSES:
            return True
        if self.status == "expired" and self.expires_at is not None:
            return (self.now - self.expires_at).total_seconds() > EXPIRED_WATCH_SECONDS
        return False

    def _confirmations(self) -> str:
        counted = [p for p in self.payments if p.status in LIVE_PAYMENT_STATUSES and not p.late]
        if not counted:
            return ""
        slowest = min(counted, key=lambda p: p.confirmations / max(p.required_confirmations, 1))
        return slowest.progress

    @property
    def label(self) -> str:
        return {
            "pending": "Awaiting payment",
            "partial": "Partly paid",
            "paid": "Payment received",
            "confirmed": "Paid and confirmed",
            "expired": "Expired",
            "cancelled": "Cancelled",
            "invalid": "Payment reversed",
        }.get(self.status, self.status.title())

    @property
    def detail(self) -> str:
        symbol = self.asset.symbol
        paid = f"{self.paid} {symbol}"
        if self.status == "pending":
            return f"Send {self.amount} {symbol} to the address below before the time runs out."
        if self.status == "partial":
            return f"{paid} received; {owed(self.view)} {symbol} is still owed. Send the rest to the same address."
        if self.status == "paid":
            return f"{paid} received. Waiting for the network to confirm it: {self._confirmations()} confirmations."
        if self.status == "confirmed":
            return f"{paid} received and confirmed ({self._confirmations()} confirmations). You can close this page."
        if self.status == "expired":
            if _decimal(self.view.amount_paid) > 0:
                return f"Time ran out with {paid} received. Do not send more; contact the merchant about it."
            return "Time ran out before a payment arrived. Do not send a payment; ask the merchant for a new invoice."
        if self.status == "cancelled":
            return "The merchant cancelled this invoice. Do not send a payment."
        if self.status == "invalid":
            return "A payment was reversed on the chain after the invoice expired. Contact the merchant."
        return ""

    @property
    def notes(self) -> list[str]:
        """The flags, in words: paid more than asked, or paid after the invoice closed."""
        notes = []
        if self.view.overpaid:
            notes.append(
                f"Overpaid: {overpaid_by(self.view)} {self.asset.symbol} more than the invoice asked. "
                "The merchant can refund it."
            )
        if self.view.paid_late:
            notes.append(
                "Paid late: a payment arrived after the invoice closed. It is recorded but does not pay this "
                "invoice; contact the merchant."
            )
        for refund in self.view.refunds:
            what = f"Refund of {refund.crypto_amount} {refund.crypto_currency} ({refund.amount} {refund.currency})"
            words = REFUND_WORDS.get(refund.status)
            if words:
                notes.append(f"{what}: {words.format(address=refund.address, tx=refund.tx_hash)}")
        return notes

    def live(self) -> PayerStatus:
        """What a live update carries: every part of the page that can change."""
        return PayerStatus(
            status=self.status,
            label=self.label,
            detail=self.detail,
            notes=self.notes,
            amount_paid=self.paid,
            owed=self.owed,
            payable=self.payable,
            seconds_left=self.seconds_left,
            final=self.final,
            payments=[p.live() for p in self.payments],
        )
