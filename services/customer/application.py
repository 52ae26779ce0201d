"""Customer use cases: read the projected customers and their payment history."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
from checkout.customer.v1 import customer_pb2 as pb

from libs.common import ids
from libs.common.errors import InvalidArgument, NotFound
from libs.common.limits import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from libs.common.protoconv import struct, timestamp
from libs.common.replica_config import READ
from libs.common.service import Runtime
from services.customer import cursor, repository


def customer_message(row: asyncpg.Record) -> pb.Customer:
    return pb.Customer(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        email=row["email"],
        status=row["status"],
        metadata=struct(row["metadata"]),
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
        last_seen_at=timestamp(row["last_seen_at"]),
        invoice_count=row["invoice_count"],
    )


def payment_message(row: asyncpg.Record) -> pb.CustomerPayment:
    amount: Decimal = row["amount"]
    return pb.CustomerPayment(
        customer_id=str(row["customer_id"]),
        invoice_id=str(row["invoice_id"]),
        amount=format(amount, "f"),
        currency=row["currency"],
        status=row["status"],
        paid_at=timestamp(row["paid_at"]),
        created_at=timestamp(row["created_at"]),
    )


def page_limit(requested: int) -> int:
    limit = requested or PAGE_LIMIT_DEFAULT
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidArgument.field("limit", f"must be between 1 and {PAGE_LIMIT_MAX}")
    return limit


def merchant_of(raw: str) -> uuid.UUID:
    merchant_id = ids.parse_id(raw)
    if merchant_id is None:
        raise InvalidArgument.field("merchant_id", "must be a UUID")
    return merchant_id


class CustomerApp:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def _customer(self, merchant_id: uuid.UUID, raw_customer_id: str) -> asyncpg.Record:
        customer_id = ids.parse_id(raw_customer_id)
        row = (
            await self.rt.read(
                READ, merchant_id, lambda db: repository.customer(db, merchant_id, customer_id)
            )
            if customer_id
            else None
        )
        if row is None:
            raise NotFound("customer not found")
        return row

    async def get_customer(self, request: pb.GetCustomerRequest) -> pb.Customer:
        return customer_message(await self._customer(merchant_of(request.merchant_id), request.customer_id))

    async def list_customers(self, request: pb.ListCustomersRequest) -> pb.ListCustomersResponse:
        merchant_id = merchant_of(request.merchant_id)
        limit = page_limit(request.limit)
        after = cursor.decode(request.cursor)
        email = request.email.strip() or None
        rows = await self.rt.read(
            READ, merchant_id, lambda db: repository.customers_after(db, merchant_id, email, after, limit + 1)
        )
        page = rows[:limit]
        more = len(rows) > limit
        return pb.ListCustomersResponse(
            customers=[customer_message(r) for r in page],
            next_cursor=cursor.encode(page[-1]["created_at"], page[-1]["id"]) if more else "",
        )

    async def list_customer_payments(
        self, request: pb.ListCustomerPaymentsRequest
    ) -> pb.ListCustomerPaymentsResponse:
        merchant_id = merchant_of(request.merchant_id)
        limit = page_limit(request.limit)
        after = cursor.decode(request.cursor)
        customer = await self._customer(merchant_id, request.customer_id)
        rows = await self.rt.read(
            READ, merchant_id, lambda db: repository.payments_after(db, customer["id"], after, limit + 1)
        )
        page = rows[:limit]
        more = len(rows) > limit
        return pb.ListCustomerPaymentsResponse(
            payments=[payment_message(r) for r in page],
            next_cursor=cursor.encode(page[-1]["created_at"], page[-1]["invoice_id"]) if more else "",
        )
