"""Invoices, their payments and audit trail, and the payer's checkout view."""

from __future__ import annotations

from typing import Annotated, Any

from checkout.invoice.v1 import invoice_pb2
from pydantic import Field

from libs.common import limits
from libs.common.currencies import FIAT_MINOR_UNITS, MAX_MINOR_UNITS
from services.gateway.pagination import PageQuery
from services.gateway.schemas.base import (
    MoneyOut,
    RequestModel,
    ResponseModel,
    TimestampOut,
    optional,
    struct_of,
    timestamp_of,
)
from services.gateway.schemas.merchants import PaymentTolerance, email
from services.gateway.schemas.refunds import PayerRefund, Refund
from services.gateway.schemas.types import WHOLE, Choice, DecimalString, FreeForm, Id, Timestamp, text
from services.invoice import state
from services.invoice.pricing import CRYPTO

# The invoice's statuses as the aggregate has them (state.py reads them from the protos).
STATUSES = state.STATUSES
FIAT = tuple(sorted(FIAT_MINOR_UNITS))
CRYPTO_CURRENCIES = tuple(sorted(CRYPTO))
# Fewer for some currencies (JPY: none), which the invoice service checks against the invoice's.
FIAT_FRACTION_DIGITS = MAX_MINOR_UNITS

Quantity = Annotated[
    str,
    DecimalString(
        limits.QUANTITY_MAX,
        positive=True,
        example="2",
        description="How many, more than 0: a decimal string or a JSON integer.",
    ),
]
UnitPrice = Annotated[
    str,
    DecimalString(
        limits.UNIT_PRICE_MAX,
        fraction_digits=FIAT_FRACTION_DIGITS,
        example="12.50",
        description="Price of one, in the invoice's currency: a decimal string or a JSON integer.",
    ),
]
Tax = Annotated[
    str,
    DecimalString(
        limits.TAX_MAX,
        fraction_digits=FIAT_FRACTION_DIGITS,
        example="1.25",
        description="Added to the subtotal.",
    ),
]


class LineItemIn(RequestModel):
    name: Annotated[str, text(limits.ITEM_NAME_MAX_CHARS, min_length=1)]
    quantity: Quantity
    unit_price: UnitPrice


class InvoiceCreate(RequestModel):
    title: Annotated[str, text(limits.TITLE_MAX_CHARS, min_length=1)]
    description: Annotated[str, text(limits.DESCRIPTION_MAX_CHARS)] | None = None
    items: list[LineItemIn] = Field(min_length=1, max_length=limits.ITEMS_MAX)
    tax: Tax | None = None
    currency: Annotated[str, Choice(FIAT)]
    crypto_currency: Annotated[str, Choice(CRYPTO_CURRENCIES)]
    customer_email: Annotated[str, email("The payer; a customer is made (or found) for it.")] | None = None
    customer_id: Id | None = Field(default=None, description="An existing customer of this merchant.")
    expires_in_seconds: Annotated[int, Field(ge=1, le=limits.EXPIRY_MAX_SECONDS), WHOLE] | None = Field(
        default=None, description="The platform's default unless said."
    )
    payment_tolerance: PaymentTolerance | None = None
    metadata: (
        Annotated[dict[str, Any], FreeForm(limits.METADATA_MAX_BYTES, "Yours, kept as sent.")] | None
    ) = None


class InvoiceCancel(RequestModel):
    reason: Annotated[str, text(limits.CANCEL_REASON_MAX_CHARS)] | None = None


class InvoiceListQuery(PageQuery):
    status: Annotated[str, Choice(STATUSES)] | None = None
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None
    customer_id: Id | None = None


class InvoiceSearchQuery(PageQuery):
    q: Annotated[
        str,
        text(limits.SEARCH_QUERY_MAX_CHARS, min_length=1, description="Words of the title or description."),
    ]


class LineItem(ResponseModel):
    name: str
    quantity: str
    unit_price: MoneyOut


class ExchangeRate(ResponseModel):
    rate: str
    source: str
    pair: str | None
    fetched_at: TimestampOut | None


class Tolerance(ResponseModel):
    underpaid_percent: str


class Invoice(ResponseModel):
    id: str
    merchant_id: str
    customer_id: str | None
    customer_email: str | None
    title: str
    description: str
    items: list[LineItem]
    subtotal: MoneyOut
    tax: MoneyOut
    total: MoneyOut
    currency: str
    crypto_currency: str
    crypto_amount: MoneyOut
    amount_paid: MoneyOut
    network: str | None
    payment_address: str
    payment_uri: str
    status: str = Field(json_schema_extra={"enum": list(STATUSES)})
    exchange_rate: ExchangeRate | None
    payment_tolerance: Tolerance | None
    metadata: dict[str, Any]
    expires_at: TimestampOut | None
    created_at: TimestampOut | None
    updated_at: TimestampOut | None
    paid_at: TimestampOut | None
    overpaid: bool
    paid_late: bool
    status_reason: str | None
    amount_refunded: MoneyOut = Field(description="Refunds the watcher saw paid, in the crypto currency.")
    amount_refundable: MoneyOut | None = Field(
        description="What may still be refunded: received (late payments too) less every refund not "
        "cancelled. Only when reading one invoice; null in lists."
    )
    refunds: list[Refund] | None = Field(
        description="Oldest first. Only when reading one invoice; null in lists."
    )
    checkout_url: str = Field(
        json_schema_extra={"format": "uri"},
        description="The payer's hosted checkout page (CHECKOUT_PUBLIC_BASE_URL + `/pay/{id}`): "
        "send the payer here.",
    )

    @classmethod
    def of(cls, i: invoice_pb2.Invoice, public_url: str) -> Invoice:
        """`public_url`: where payers reach this gateway (Config.public_url())."""
        rate = i.exchange_rate
        return cls(
            id=i.id,
            merchant_id=i.merchant_id,
            customer_id=optional(i.customer_id),
            customer_email=optional(i.customer_email),
            title=i.title,
            description=i.description,
            items=[LineItem(name=t.name, quantity=t.quantity, unit_price=t.unit_price) for t in i.items],
            subtotal=i.subtotal,
            tax=i.tax,
            total=i.total,
            currency=i.currency,
            crypto_currency=i.crypto_currency,
            crypto_amount=i.crypto_amount,
            amount_paid=i.amount_paid,
            network=optional(i.network),
            payment_address=i.payment_address,
            payment_uri=i.payment_uri,
            status=i.status,
            exchange_rate=ExchangeRate(
                rate=rate.rate,
                source=rate.source,
                pair=optional(rate.pair),
                fetched_at=timestamp_of(rate, "fetched_at"),
            )
            if i.HasField("exchange_rate")
            else None,
            payment_tolerance=Tolerance(underpaid_percent=i.payment_tolerance.underpaid_percent)
            if i.HasField("payment_tolerance")
            else None,
            metadata=struct_of(i, "metadata"),
            expires_at=timestamp_of(i, "expires_at"),
            created_at=timestamp_of(i, "created_at"),
            updated_at=timestamp_of(i, "updated_at"),
            paid_at=timestamp_of(i, "paid_at"),
            overpaid=i.overpaid,
            paid_late=i.paid_late,
            status_reason=optional(i.status_reason),
            amount_refunded=i.amount_refunded or "0",
            amount_refundable=optional(i.amount_refundable),
            refunds=[Refund.of(r, public_url) for r in i.refunds] if i.amount_refundable else None,
            checkout_url=checkout_url(public_url, i.id),
        )


def checkout_url(public_url: str, invoice_id: str) -> str:
    """The payer's hosted page of an invoice (services/gateway/pages/pay.py)."""
    return f"{public_url}/pay/{invoice_id}"


class Payment(ResponseModel):
    id: str
    invoice_id: str
    network: str
    tx_hash: str
    output_index: int
    asset: str
    amount: MoneyOut
    from_address: str
    to_address: str
    status: str
    confirmations: int
    required_confirmations: int
    block_number: int | None = Field(description="null while the transaction waits in the mempool.")
    block_hash: str | None
    late: bool
    status_reason: str | None
    detected_at: TimestampOut | None
    confirmed_at: TimestampOut | None

    @classmethod
    def of(cls, p: invoice_pb2.Payment) -> Payment:
        return cls(
            id=p.id,
            invoice_id=p.invoice_id,
            network=p.network,
            tx_hash=p.tx_hash,
            output_index=p.output_index,
            asset=p.asset,
            amount=p.amount,
            from_address=p.from_address,
            to_address=p.to_address,
            status=p.status,
            confirmations=p.confirmations,
            required_confirmations=p.required_confirmations,
            block_number=p.block_number if p.HasField("block_number") else None,
            block_hash=optional(p.block_hash),
            late=p.late,
            status_reason=optional(p.status_reason),
            detected_at=timestamp_of(p, "detected_at"),
            confirmed_at=timestamp_of(p, "confirmed_at"),
        )


class AuditEntry(ResponseModel):
    id: str
    invoice_id: str
    event: str
    actor: str
    timestamp: TimestampOut | None
    request_id: str | None
    data: dict[str, Any]

    @classmethod
    def of(cls, e: invoice_pb2.AuditEntry) -> AuditEntry:
        return cls(
            id=e.id,
            invoice_id=e.invoice_id,
            event=e.event,
            actor=e.actor,
            timestamp=timestamp_of(e, "timestamp"),
            request_id=optional(e.request_id),
            data=struct_of(e, "data"),
        )


class CheckoutPayment(ResponseModel):
    tx_hash: str
    amount: MoneyOut
    status: str
    confirmations: int
    required_confirmations: int


class Checkout(ResponseModel):
    """The payer's view: nothing else of the merchant's."""

    id: str
    title: str
    status: str = Field(json_schema_extra={"enum": list(STATUSES)})
    total: MoneyOut
    currency: str
    crypto_currency: str
    crypto_amount: MoneyOut
    amount_paid: MoneyOut
    payment_address: str
    payment_uri: str
    expires_at: TimestampOut | None
    overpaid: bool
    paid_late: bool
    payments: list[CheckoutPayment]
    refunds: list[PayerRefund] = Field(description="Refunds the merchant owes the payer, oldest first.")

    @classmethod
    def of(cls, v: invoice_pb2.CheckoutView) -> Checkout:
        return cls(
            id=v.id,
            title=v.title,
            status=v.status,
            total=v.total,
            currency=v.currency,
            crypto_currency=v.crypto_currency,
            crypto_amount=v.crypto_amount,
            amount_paid=v.amount_paid,
            payment_address=v.payment_address,
            payment_uri=v.payment_uri,
            expires_at=timestamp_of(v, "expires_at"),
            overpaid=v.overpaid,
            paid_late=v.paid_late,
            payments=[
                CheckoutPayment(
                    tx_hash=p.tx_hash,
                    amount=p.amount,
                    status=p.status,
                    confirmations=p.confirmations,
                    required_confirmations=p.required_confirmations,
                )
                for p in v.payments
            ],
            refunds=[PayerRefund.of(r) for r in v.refunds],
        )
