"""The Invoice aggregate: what a merchant may ask for, and the event an invoice is born with.

Stdlib plus the generated event messages and pricing (services/invoice/pricing.py). Creating an
invoice takes two steps because the work between them is I/O: `Invoice.validate` checks the
request and prices it in fiat (every problem in one InvalidArgument); the application then locks
a rate and allocates an address, and `Invoice.create` emits `InvoiceCreated`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from checkout.invoice.v1 import events_pb2 as ev
from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common import ids
from libs.common.aggregate import Aggregate
from libs.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from libs.common.protoconv import datetime_of, struct, timestamp
from services.invoice import pricing

STATUSES = ("pending", "partial", "paid", "confirmed", "expired", "cancelled", "invalid")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_TITLE = 200
MAX_DESCRIPTION = 2000
MAX_METADATA_BYTES = 16_384
MIN_EXPIRY_SECONDS = 60
MAX_EXPIRY_SECONDS = 7 * 24 * 3600
MAX_UNDERPAID_PERCENT = Decimal(50)
# The coin each network's addresses receive natively; any other asset there is a token.
NATIVE_ASSET = {"ethereum": "ETH", "bitcoin": "BTC"}


@dataclass(frozen=True)
class ItemInput:
    name: str
    quantity: str
    unit_price: str


@dataclass(frozen=True)
class Draft:
    """A checked request, priced in fiat; what the invoice will be once it has a rate and address."""

    title: str
    description: str
    items: tuple[pricing.LineItem, ...]
    totals: pricing.Totals
    currency: str
    asset: pricing.CryptoAsset
    customer_email: str
    customer_id: uuid.UUID | None
    expires_in_seconds: int
    underpaid_percent: Decimal | None  # None: the merchant's default applies
    metadata: dict[str, Any]

    @property
    def network(self) -> str:
        return self.asset.network

    def crypto_amount(self, rate: Decimal) -> Decimal:
        return pricing.crypto_amount(self.totals.total, rate, self.asset)


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


def customer_id_for(merchant_id: uuid.UUID, email: str) -> uuid.UUID:
    """The id the customer service derives from the same (merchant, email) pair."""
    return ids.derived_id(ids.slot_of(merchant_id), "customer", str(merchant_id), email.strip().lower())


def parse_percent(raw: str) -> Decimal | None:
    """A decimal string in 0..50, or None."""
    try:
        value = pricing.parse_decimal(raw, "underpaid_percent")
    except (pricing.PricingError, TypeError, InvalidOperation):
        return None
    return value if 0 <= value <= MAX_UNDERPAID_PERCENT else None


def merchant_default_underpaid(settings: dict[str, Any]) -> Decimal:
    """The merchant's `payment_tolerance.underpaid_percent`, or 0 when unset or unusable."""
    tolerance = settings.get("payment_tolerance")
    raw = tolerance.get("underpaid_percent") if isinstance(tolerance, dict) else None
    value = parse_percent(raw) if isinstance(raw, str) else None
    return value if value is not None else Decimal(0)


def _raise(problems: list[FieldViolation]) -> None:
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)


def _check_items(
    items: Sequence[ItemInput], tax: str, currency: str, problems: list[FieldViolation]
) -> tuple[list[pricing.LineItem], pricing.Totals | None]:
    parse_errors: list[pricing.PricingError] = []

    def parse(raw: str, field: str, stand_in: Decimal) -> Decimal:
        try:
            return pricing.parse_decimal(raw, field)
        except pricing.PricingError as error:
            parse_errors.append(error)
            return stand_in  # a valid value, so compute_totals still checks everything else

    lines = [
        pricing.LineItem(
            name=item.name,
            quantity=parse(item.quantity, f"items[{i}].quantity", Decimal(1)),
            unit_price=parse(item.unit_price, f"items[{i}].unit_price", Decimal(0)),
        )
        for i, item in enumerate(items)
    ]
    tax_value = parse(tax or "0", "tax", Decimal(0))
    try:
        totals = pricing.compute_totals(lines, tax_value, currency)
    except pricing.PricingErrors as errors:
        found = errors.errors
        totals = None
    else:
        found = []
    if parse_errors:
        # A stand-in price of 0 can make the total 0: that complaint would be about our value.
        found = [e for e in found if e.field != "total"]
    for error in sorted([*parse_errors, *found], key=lambda e: e.field):
        problems.append(FieldViolation(error.field, error.reason))
    return lines, totals if not parse_errors else None


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

    @staticmethod
    def validate(
        merchant_id: uuid.UUID,
        *,
        title: str,
        description: str,
        items: Sequence[ItemInput],
        tax: str,
        currency: str,
        crypto_currency: str,
        customer_email: str,
        customer_id: str,
        expires_in_seconds: int,
        underpaid_percent: str | None,
        metadata: dict[str, Any],
        default_expiry_seconds: int,
    ) -> Draft:
        """Checks every field and prices the items; raises one InvalidArgument naming them all."""
        problems: list[FieldViolation] = []
        title = title.strip()
        if not title:
            problems.append(FieldViolation("title", "must not be blank"))
        elif len(title) > MAX_TITLE:
            problems.append(FieldViolation("title", f"must be at most {MAX_TITLE} characters"))
        description = description.strip()
        if len(description) > MAX_DESCRIPTION:
            problems.append(FieldViolation("description", f"must be at most {MAX_DESCRIPTION} characters"))

        currency = currency.strip().upper()
        lines, totals = _check_items(items, tax, currency, problems)

        symbol = crypto_currency.strip().upper()
        asset = pricing.CRYPTO.get(symbol)
        if asset is None:
            problems.append(
                FieldViolation("crypto_currency", f"must be one of {', '.join(sorted(pricing.CRYPTO))}")
            )

        email = customer_email.strip().lower()
        if email and (len(email) > 254 or not EMAIL_RE.match(email)):
            problems.append(FieldViolation("customer_email", "must be an email address"))
        customer: uuid.UUID | None = None
        if customer_id:
            customer = ids.parse_id(customer_id)
            if customer is None:
                problems.append(FieldViolation("customer_id", "must be a UUID"))
            elif ids.slot_of(customer) != ids.slot_of(merchant_id):
                problems.append(FieldViolation("customer_id", "is not a customer of this merchant"))
                customer = None
        if email and EMAIL_RE.match(email):
            derived = customer_id_for(merchant_id, email)
            if customer is not None and customer != derived:
                problems.append(FieldViolation("customer_id", "does not match customer_email"))
            customer = derived

        expires = expires_in_seconds or default_expiry_seconds
        if not MIN_EXPIRY_SECONDS <= expires <= MAX_EXPIRY_SECONDS:
            problems.append(
                FieldViolation(
                    "expires_in_seconds", f"must be between {MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS}"
                )
            )

        underpaid: Decimal | None = None
        if underpaid_percent is not None:
            underpaid = parse_percent(underpaid_percent)
            if underpaid is None:
                problems.append(
                    FieldViolation(
                        "payment_tolerance.underpaid_percent", "must be a decimal string between 0 and 50"
                    )
                )

        size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_METADATA_BYTES:
            problems.append(FieldViolation("metadata", f"must be at most {MAX_METADATA_BYTES} bytes of JSON"))

        _raise(problems)
        assert totals is not None and asset is not None  # each would have been reported above
        return Draft(
            title=title,
            description=description,
            items=tuple(
                pricing.LineItem(line.name.strip(), line.quantity, line.unit_price) for line in lines
            ),
            totals=totals,
            currency=currency,
            asset=asset,
            customer_email=email,
            customer_id=customer,
            expires_in_seconds=expires,
            underpaid_percent=underpaid,
            metadata=metadata,
        )

    @staticmethod
    def check_supported(asset: pricing.CryptoAsset) -> None:
        """A token needs its contract configured before it can be requested."""
        if asset.symbol != NATIVE_ASSET[asset.network] and asset.contract is None:
            raise FailedPrecondition(f"{asset.symbol} is not configured on this deployment")

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

    def _apply(self, event: Any) -> None:
        if isinstance(event, ev.InvoiceCreated):
            self.merchant_id = event.merchant_id
            self.status = "pending"
            self.crypto_currency = event.crypto_currency
            self.crypto_amount = Decimal(event.crypto_amount)
            self.payment_address = event.payment_address
            self.expires_at = datetime_of(event.expires_at)

    def snapshot(self) -> dict[str, Any]:
        return {
            "merchant_id": self.merchant_id,
            "status": self.status,
            "crypto_currency": self.crypto_currency,
            "crypto_amount": str(self.crypto_amount),
            "amount_paid": str(self.amount_paid),
            "payment_address": self.payment_address,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.merchant_id = data["merchant_id"]
        self.status = data["status"]
        self.crypto_currency = data["crypto_currency"]
        self.crypto_amount = Decimal(data["crypto_amount"])
        self.amount_paid = Decimal(data["amount_paid"])
        self.payment_address = data["payment_address"]
        self.expires_at = dt.datetime.fromisoformat(data["expires_at"]) if data["expires_at"] else None
