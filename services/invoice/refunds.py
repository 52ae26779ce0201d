"""Refunds of an invoice: what a merchant asks for, what it comes to, and each refund's state.

Non-custodial: the platform records what the merchant owes back, the payer names an address, the
merchant pays it from its own wallet and the watcher sees it arrive. Refunds live in the Invoice
aggregate (domain.py) because the one rule that matters, "never more back than was received",
needs the payments and every earlier refund in one consistent place.

Stdlib plus pricing: the application fetches a current rate (I/O) and hands it in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from libs.common.errors import FieldViolation, InvalidArgument
from libs.common.limits import CANCEL_REASON_MAX_CHARS
from services.invoice import pricing

REFUND_STATUSES = ("awaiting_claim", "claimed", "completed", "cancelled")
# Refunds that hold part of what was received (a cancelled one gives it back).
HOLDING_STATUSES = frozenset({"awaiting_claim", "claimed", "completed"})
RATE_BASES = ("invoice", "current")
REFUND_REASON_MAX_CHARS = CANCEL_REASON_MAX_CHARS
# A claim token: 32 hex digits of the refund id, then 48 of secret (192 random bits).
CLAIM_TOKEN_LENGTH = 80


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def refund_id_of_token(token: str) -> str | None:
    """The refund id a claim token names (its first 32 hex digits), or None for no token of ours."""
    if len(token) != CLAIM_TOKEN_LENGTH or any(c not in "0123456789abcdef" for c in token):
        return None
    raw = token[:32]
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


@dataclass(frozen=True)
class RefundAsk:
    """A checked request: at most one of `amount` (fiat) and `crypto_amount`; neither: all of it."""

    amount: Decimal | None
    crypto_amount: Decimal | None
    basis: str
    reason: str

    @property
    def field(self) -> str:
        """The field an over-refund is reported against."""
        return "crypto_amount" if self.crypto_amount is not None else "amount"


def _decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _positive(
    raw: str, field: str, decimals: int, unit: str, problems: list[FieldViolation]
) -> Decimal | None:
    try:
        value = pricing.parse_decimal(raw, field)
    except (pricing.PricingError, TypeError, InvalidOperation) as error:
        problems.append(FieldViolation(field, getattr(error, "reason", str(error))))
        return None
    if value <= 0:
        problems.append(FieldViolation(field, "must be greater than 0"))
    elif _decimal_places(value) > decimals:
        problems.append(FieldViolation(field, f"must have at most {decimals} decimal places for {unit}"))
    else:
        return value
    return None


def check_request(
    amount: str, crypto_amount: str, basis: str, reason: str, *, currency: str, asset: pricing.CryptoAsset
) -> RefundAsk:
    """Every field of a refund request, reported together (InvalidArgument)."""
    problems: list[FieldViolation] = []
    fiat = crypto = None
    if amount and crypto_amount:
        problems.append(FieldViolation("crypto_amount", "give amount or crypto_amount, not both"))
    elif amount:
        fiat = _positive(amount, "amount", pricing.FIAT_MINOR_UNITS[currency], currency, problems)
    elif crypto_amount:
        crypto = _positive(crypto_amount, "crypto_amount", asset.decimals, asset.symbol, problems)
    if basis not in RATE_BASES:
        problems.append(FieldViolation("rate", f"must be one of {', '.join(RATE_BASES)}"))
    reason = reason.strip()
    if len(reason) > REFUND_REASON_MAX_CHARS:
        problems.append(FieldViolation("reason", f"must be at most {REFUND_REASON_MAX_CHARS} characters"))
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
    return RefundAsk(fiat, crypto, basis, reason)


@dataclass(frozen=True)
class Priced:
    amount: Decimal  # fiat, at the currency's minor unit
    crypto_amount: Decimal  # at the asset's decimals


def fiat_of(crypto: Decimal, rate: Decimal, exponent: int) -> Decimal:
    """What `crypto` is worth at `rate`, rounded down to the minor unit (never more than it is)."""
    return (crypto * rate).quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_DOWN)


def price(
    ask: RefundAsk,
    *,
    refundable: Decimal,
    invoice_rate: Decimal,
    rate: Decimal,
    currency: str,
    asset: pricing.CryptoAsset,
) -> Priced:
    """The refund in fiat and crypto at `rate`; InvalidArgument when it is more than `refundable`
    (received less every refund that still holds part of it), in the field the merchant gave."""
    exponent = pricing.FIAT_MINOR_UNITS[currency]
    if ask.crypto_amount is not None:
        crypto = ask.crypto_amount
        fiat = fiat_of(crypto, rate, exponent)
    elif ask.amount is not None:
        fiat = ask.amount
        crypto = pricing.crypto_amount(fiat, rate, asset)
    elif ask.basis == "invoice":
        crypto = refundable  # all of it, to the base unit
        fiat = fiat_of(crypto, rate, exponent)
    else:
        # All of it: what the payer paid in fiat (at the invoice's rate), at today's rate.
        fiat = fiat_of(refundable, invoice_rate, exponent)
        crypto = pricing.crypto_amount(fiat, rate, asset) if fiat > 0 else Decimal(0)
    if crypto > refundable:
        left = (
            f"{pricing.format_money(refundable, asset.decimals)} {asset.symbol}"
            if ask.crypto_amount is not None
            else f"{pricing.format_money(fiat_of(refundable, rate, exponent), exponent)} {currency} "
            f"({pricing.format_money(refundable, asset.decimals)} {asset.symbol}) at the {ask.basis} rate"
        )
        raise InvalidArgument.field(
            ask.field, f"must be at most {left}: what was received less what is already refunded"
        )
    return Priced(fiat, crypto)


@dataclass(frozen=True)
class RefundState:
    refund_id: str
    crypto_amount: Decimal
    status: str
    token_sha256: str
    address: str = ""
    tx_hash: str = ""
    output_index: int = 0

    @property
    def holding(self) -> bool:
        return self.status in HOLDING_STATUSES

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "crypto_amount": str(self.crypto_amount)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RefundState:
        return cls(**{**data, "crypto_amount": Decimal(data["crypto_amount"])})

    def with_status(self, status: str, **changes: Any) -> RefundState:
        return replace(self, status=status, **changes)
