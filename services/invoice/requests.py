"""What a merchant may ask of the invoice service, as plain values, and the checks of a create.

Creating an invoice takes two steps because the work between them is I/O: `validate` checks the
request and prices it in fiat (every problem in one InvalidArgument, so a client fixes them all
at once); the application then locks a rate and allocates an address, and `Invoice.create`
(domain.py) emits `InvoiceCreated` from the `Draft`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from libs.common import ids
from libs.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from libs.common.limits import (
    DESCRIPTION_MAX_CHARS,
    EMAIL_MAX_CHARS,
    EXPIRY_MAX_SECONDS,
    EXPIRY_MIN_SECONDS,
    METADATA_MAX_BYTES,
    TITLE_MAX_CHARS,
    UNDERPAID_PERCENT_MAX,
)
from services.invoice import pricing
from services.invoice.settings import parse_percent
from services.invoice.views import LineItem

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The coin each network's addresses receive natively; any other asset there is a token.
NATIVE_ASSET = {"ethereum": "ETH", "bitcoin": "BTC"}


@dataclass(frozen=True)
class NewInvoice:
    """A create request as the merchant sent it: strings unparsed, nothing checked yet."""

    title: str
    description: str
    items: Sequence[LineItem]  # as sent: quantity and unit price unparsed
    tax: str
    currency: str
    crypto_currency: str
    customer_email: str
    customer_id: str
    expires_in_seconds: int  # 0: the deployment's default
    underpaid_percent: str | None  # None: the merchant's default applies
    metadata: dict[str, Any]


@dataclass(frozen=True)
class InvoiceQuery:
    """A page of a merchant's invoices, newest first, narrowed by what is given."""

    merchant_id: str
    limit: int  # 0: the default page
    status: str
    customer_id: str
    created_after: dt.datetime | None
    created_before: dt.datetime | None
    cursor: str


@dataclass(frozen=True)
class NewRefund:
    """A refund as the merchant asked for it: at most one of the amounts; neither, all of it."""

    merchant_id: str
    invoice_id: str
    amount: str
    crypto_amount: str
    rate: str
    reason: str


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


def customer_id_for(merchant_id: uuid.UUID, email: str) -> uuid.UUID:
    """The id the customer service derives from the same (merchant, email) pair."""
    return ids.derived_id(ids.slot_of(merchant_id), "customer", str(merchant_id), email.strip().lower())


def validate(
    merchant_id: uuid.UUID,
    ask: NewInvoice,
    *,
    default_expiry_seconds: int,
    min_expiry_seconds: int = EXPIRY_MIN_SECONDS,
) -> Draft:
    """Checks every field and prices the items; raises one InvalidArgument naming them all."""
    problems: list[FieldViolation] = []
    title = ask.title.strip()
    if not title:
        problems.append(FieldViolation("title", "must not be blank"))
    elif len(title) > TITLE_MAX_CHARS:
        problems.append(FieldViolation("title", f"must be at most {TITLE_MAX_CHARS} characters"))
    description = ask.description.strip()
    if len(description) > DESCRIPTION_MAX_CHARS:
        problems.append(FieldViolation("description", f"must be at most {DESCRIPTION_MAX_CHARS} characters"))

    currency = ask.currency.strip().upper()
    lines, totals = _check_items(ask.items, ask.tax, currency, problems)

    asset = pricing.CRYPTO.get(ask.crypto_currency.strip().upper())
    if asset is None:
        problems.append(
            FieldViolation("crypto_currency", f"must be one of {', '.join(sorted(pricing.CRYPTO))}")
        )

    email, customer = _check_customer(merchant_id, ask, problems)

    expires = ask.expires_in_seconds or default_expiry_seconds
    if not min_expiry_seconds <= expires <= EXPIRY_MAX_SECONDS:
        problems.append(
            FieldViolation(
                "expires_in_seconds", f"must be between {min_expiry_seconds} and {EXPIRY_MAX_SECONDS}"
            )
        )

    underpaid: Decimal | None = None
    if ask.underpaid_percent is not None:
        underpaid = parse_percent(ask.underpaid_percent)
        if underpaid is None:
            problems.append(
                FieldViolation(
                    "payment_tolerance.underpaid_percent",
                    f"must be a decimal string between 0 and {UNDERPAID_PERCENT_MAX}",
                )
            )

    size = len(json.dumps(ask.metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > METADATA_MAX_BYTES:
        problems.append(FieldViolation("metadata", f"must be at most {METADATA_MAX_BYTES} bytes of JSON"))

    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
    assert totals is not None and asset is not None  # each would have been reported above
    return Draft(
        title=title,
        description=description,
        items=tuple(pricing.LineItem(line.name.strip(), line.quantity, line.unit_price) for line in lines),
        totals=totals,
        currency=currency,
        asset=asset,
        customer_email=email,
        customer_id=customer,
        expires_in_seconds=expires,
        underpaid_percent=underpaid,
        metadata=ask.metadata,
    )


def check_supported(asset: pricing.CryptoAsset) -> None:
    """A token needs its contract configured before it can be requested."""
    if asset.symbol != NATIVE_ASSET[asset.network] and asset.contract is None:
        raise FailedPrecondition(f"{asset.symbol} is not configured on this deployment")


def _check_customer(
    merchant_id: uuid.UUID, ask: NewInvoice, problems: list[FieldViolation]
) -> tuple[str, uuid.UUID | None]:
    """The customer's email (normalised) and id: an email names its customer, so an id given
    with it must be that one."""
    email = ask.customer_email.strip().lower()
    if email and (len(email) > EMAIL_MAX_CHARS or not EMAIL_RE.match(email)):
        problems.append(FieldViolation("customer_email", "must be an email address"))
    customer: uuid.UUID | None = None
    if ask.customer_id:
        customer = ids.parse_id(ask.customer_id)
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
    return email, customer


def _check_items(
    items: Sequence[LineItem], tax: str, currency: str, problems: list[FieldViolation]
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
