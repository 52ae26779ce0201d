"""What the invoice service answers with, as plain frozen values built from its read models.

Each view has the fields of the API message of the same name (invoice.proto), already in the
API's units (money as decimal strings at the currency's or the coin's precision), so mapping a
view to its message is mechanical (libs/common/views.py) and the application never
touches protobuf.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg

from libs.common.views import Page as Page  # the invoice reads answer with views.Page
from services.invoice.pricing import CRYPTO, FIAT_MINOR_UNITS, format_money, to_base_units

T = TypeVar("T")


@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: str
    unit_price: str


@dataclass(frozen=True)
class ExchangeRate:
    rate: str
    source: str
    pair: str
    fetched_at: dt.datetime


@dataclass(frozen=True)
class PaymentTolerance:
    underpaid_percent: str


@dataclass(frozen=True)
class Refund:
    id: str
    invoice_id: str
    merchant_id: str
    status: str
    amount: str
    currency: str
    crypto_amount: str
    crypto_currency: str
    amount_units: str
    network: str
    rate: str
    rate_basis: str
    reason: str
    address: str
    tx_hash: str
    created_at: dt.datetime | None
    claimed_at: dt.datetime | None
    completed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    claim_token: str = ""  # shown once, in the answer to the create that made it

    def for_payer(self) -> Refund:
        """What the payer sees of a refund: no merchant, no reason the merchant wrote for itself."""
        return replace(self, merchant_id="", reason="")


@dataclass(frozen=True)
class Invoice:
    id: str
    merchant_id: str
    customer_id: str
    customer_email: str
    title: str
    description: str
    items: tuple[LineItem, ...]
    subtotal: str
    tax: str
    total: str
    currency: str
    crypto_currency: str
    crypto_amount: str
    amount_paid: str
    network: str
    address_index: int
    payment_address: str
    payment_uri: str
    status: str
    exchange_rate: ExchangeRate
    payment_tolerance: PaymentTolerance
    metadata: dict[str, Any]
    expires_at: dt.datetime | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    paid_at: dt.datetime | None
    overpaid: bool
    paid_late: bool
    status_reason: str
    amount_refunded: str
    amount_refundable: str = ""  # GetInvoice's (and a create's): what is left to refund
    refunds: tuple[Refund, ...] = ()


@dataclass(frozen=True)
class CheckoutPayment:
    tx_hash: str
    amount: str
    status: str
    confirmations: int
    required_confirmations: int
    late: bool


@dataclass(frozen=True)
class Checkout:
    """The payer's view: what to pay, where, and by when; nothing else of the merchant's."""

    id: str
    title: str
    status: str
    total: str
    currency: str
    crypto_currency: str
    crypto_amount: str
    amount_paid: str
    payment_address: str
    payment_uri: str
    expires_at: dt.datetime | None
    overpaid: bool
    paid_late: bool
    network: str
    merchant_id: str
    payments: tuple[CheckoutPayment, ...]
    refunds: tuple[Refund, ...]


@dataclass(frozen=True)
class Payment:
    id: str
    invoice_id: str
    network: str
    tx_hash: str
    output_index: int
    asset: str
    amount: str
    from_address: str
    to_address: str
    status: str
    confirmations: int
    required_confirmations: int
    block_number: int | None
    block_hash: str
    late: bool
    status_reason: str
    detected_at: dt.datetime | None
    confirmed_at: dt.datetime | None


@dataclass(frozen=True)
class AuditEntry:
    id: str
    invoice_id: str
    event: str
    actor: str
    timestamp: dt.datetime | None
    request_id: str
    data: dict[str, Any]


def page(rows: list[asyncpg.Record], limit: int, view: Callable[[asyncpg.Record], T]) -> Page[T]:
    """The first `limit` of `limit + 1` rows, as views; a cursor when there were more."""
    shown = rows[:limit]
    return Page(tuple(view(r) for r in shown), str(shown[-1]["id"]) if len(rows) > limit else "")


def invoice(row: asyncpg.Record, **extra: Any) -> Invoice:
    exponent = FIAT_MINOR_UNITS[row["currency"]]
    decimals = CRYPTO[row["crypto_currency"]].decimals
    rate = row["exchange_rate"]
    return Invoice(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        customer_id=str(row["customer_id"]) if row["customer_id"] else "",
        customer_email=row["customer_email"] or "",
        title=row["title"],
        description=row["description"] or "",
        items=tuple(LineItem(i["name"], i["quantity"], i["unit_price"]) for i in row["items"]),
        subtotal=format_money(row["subtotal"], exponent),
        tax=format_money(row["tax"], exponent),
        total=format_money(row["total"], exponent),
        currency=row["currency"],
        crypto_currency=row["crypto_currency"],
        crypto_amount=format_money(row["crypto_amount"], decimals),
        amount_paid=format_money(row["amount_paid"], decimals),
        network=row["network"],
        address_index=row["address_index"],
        payment_address=row["payment_address"],
        payment_uri=row["payment_uri"],
        status=row["status"],
        exchange_rate=ExchangeRate(
            rate=rate["rate"],
            source=rate["source"],
            pair=rate["pair"],
            fetched_at=dt.datetime.fromisoformat(rate["fetched_at"]),
        ),
        payment_tolerance=PaymentTolerance(row["payment_tolerance"]["underpaid_percent"]),
        metadata=row["metadata"] or {},
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        paid_at=row["paid_at"],
        overpaid=row["overpaid"],
        paid_late=row["paid_late"],
        status_reason=row["status_reason"] or "",
        amount_refunded=format_money(row["amount_refunded"], decimals),
        **extra,
    )


def refundable(row: asyncpg.Record, amount: Decimal) -> str:
    """What is left to refund of the invoice in `row`, at its coin's precision."""
    return format_money(max(Decimal(0), amount), CRYPTO[row["crypto_currency"]].decimals)


def refund(row: asyncpg.Record) -> Refund:
    asset = CRYPTO[row["crypto_currency"]]
    return Refund(
        id=str(row["id"]),
        invoice_id=str(row["invoice_id"]),
        merchant_id=str(row["merchant_id"]),
        status=row["status"],
        amount=format_money(row["amount"], FIAT_MINOR_UNITS[row["currency"]]),
        currency=row["currency"],
        crypto_amount=format_money(row["crypto_amount"], asset.decimals),
        crypto_currency=row["crypto_currency"],
        amount_units=str(to_base_units(row["crypto_amount"], asset)),
        network=row["network"],
        rate=row["rate"],
        rate_basis=row["rate_basis"],
        reason=row["reason"] or "",
        address=row["address"] or "",
        tx_hash=row["tx_hash"] or "",
        created_at=row["created_at"],
        claimed_at=row["claimed_at"],
        completed_at=row["completed_at"],
        cancelled_at=row["cancelled_at"],
    )


def checkout(row: asyncpg.Record, payments: list[asyncpg.Record], refunded: list[asyncpg.Record]) -> Checkout:
    decimals = CRYPTO[row["crypto_currency"]].decimals
    return Checkout(
        id=str(row["id"]),
        title=row["title"],
        status=row["status"],
        total=format_money(row["total"], FIAT_MINOR_UNITS[row["currency"]]),
        currency=row["currency"],
        crypto_currency=row["crypto_currency"],
        crypto_amount=format_money(row["crypto_amount"], decimals),
        amount_paid=format_money(row["amount_paid"], decimals),
        payment_address=row["payment_address"],
        payment_uri=row["payment_uri"],
        expires_at=row["expires_at"],
        overpaid=row["overpaid"],
        paid_late=row["paid_late"],
        network=row["network"],
        merchant_id=str(row["merchant_id"]),
        payments=tuple(
            CheckoutPayment(
                tx_hash=p["tx_hash"],
                amount=format_money(p["amount"], decimals),
                status=p["status"],
                confirmations=p["confirmations"],
                required_confirmations=p["required_confirmations"],
                late=p["late"],
            )
            for p in payments
        ),
        refunds=tuple(refund(r).for_payer() for r in refunded),
    )


def payment(row: asyncpg.Record) -> Payment:
    decimals = CRYPTO[row["asset"]].decimals if row["asset"] in CRYPTO else 18
    return Payment(
        id=str(row["id"]),
        invoice_id=str(row["invoice_id"]),
        network=row["network"],
        tx_hash=row["tx_hash"],
        output_index=row["output_index"],
        asset=row["asset"],
        amount=format_money(row["amount"], decimals),
        from_address=row["from_address"] or "",
        to_address=row["to_address"],
        status=row["status"],
        confirmations=row["confirmations"],
        required_confirmations=row["required_confirmations"],
        block_number=row["block_number"],
        block_hash=row["block_hash"] or "",
        late=row["late"],
        status_reason=row["status_reason"] or "",
        detected_at=row["detected_at"],
        confirmed_at=row["confirmed_at"],
    )


def audit_entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        id=str(row["id"]),
        invoice_id=str(row["invoice_id"]),
        event=row["event"],
        actor=row["actor"],
        timestamp=row["timestamp"],
        request_id=row["request_id"] or "",
        data=row["data"] or {},
    )
