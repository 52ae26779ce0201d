"""What the customer service answers with: plain frozen values built from its read models, each
with the fields of the API message of the same name (customer.proto), so grpc_api.py maps it
mechanically (libs/common/views.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Customer:
    id: str
    merchant_id: str
    email: str
    status: str
    metadata: dict[str, Any]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    invoice_count: int


@dataclass(frozen=True)
class CustomerPayment:
    customer_id: str
    invoice_id: str
    amount: str
    currency: str
    status: str
    paid_at: dt.datetime | None
    created_at: dt.datetime | None


def customer(row: asyncpg.Record) -> Customer:
    return Customer(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        email=row["email"],
        status=row["status"],
        metadata=row["metadata"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seen_at=row["last_seen_at"],
        invoice_count=row["invoice_count"],
    )


def payment(row: asyncpg.Record) -> CustomerPayment:
    amount: Decimal = row["amount"]
    return CustomerPayment(
        customer_id=str(row["customer_id"]),
        invoice_id=str(row["invoice_id"]),
        amount=format(amount, "f"),
        currency=row["currency"],
        status=row["status"],
        paid_at=row["paid_at"],
        created_at=row["created_at"],
    )
