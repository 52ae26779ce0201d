"""Customers, projected from a merchant's invoices."""

from __future__ import annotations

from typing import Annotated, Any

from checkout.customer.v1 import customer_pb2

from libs.common import limits
from services.gateway.pagination import PageQuery
from services.gateway.schemas.base import MoneyOut, ResponseModel, TimestampOut, struct_of, timestamp_of
from services.gateway.schemas.types import text


class CustomerListQuery(PageQuery):
    email: (
        Annotated[str, text(limits.EMAIL_MAX_CHARS, description="Exactly this email (any case).")] | None
    ) = None


class Customer(ResponseModel):
    id: str
    merchant_id: str
    email: str
    status: str
    metadata: dict[str, Any]
    invoice_count: int
    created_at: TimestampOut | None
    updated_at: TimestampOut | None
    last_seen_at: TimestampOut | None

    @classmethod
    def of(cls, c: customer_pb2.Customer) -> Customer:
        return cls(
            id=c.id,
            merchant_id=c.merchant_id,
            email=c.email,
            status=c.status,
            metadata=struct_of(c, "metadata"),
            invoice_count=c.invoice_count,
            created_at=timestamp_of(c, "created_at"),
            updated_at=timestamp_of(c, "updated_at"),
            last_seen_at=timestamp_of(c, "last_seen_at"),
        )


class CustomerPayment(ResponseModel):
    customer_id: str
    invoice_id: str
    amount: MoneyOut
    currency: str
    status: str
    paid_at: TimestampOut | None
    created_at: TimestampOut | None

    @classmethod
    def of(cls, p: customer_pb2.CustomerPayment) -> CustomerPayment:
        return cls(
            customer_id=p.customer_id,
            invoice_id=p.invoice_id,
            amount=p.amount,
            currency=p.currency,
            status=p.status,
            paid_at=timestamp_of(p, "paid_at"),
            created_at=timestamp_of(p, "created_at"),
        )
