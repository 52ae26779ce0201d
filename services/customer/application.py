"""Customer use cases: read the projected customers and their payment history, answering with
plain values (requests.py in, views.py out; grpc_api.py maps them to and from protobuf)."""

from __future__ import annotations

import uuid

import asyncpg

from libs.common import ids
from libs.common.errors import InvalidArgument, NotFound
from libs.common.limits import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from libs.common.replica_config import READ
from libs.common.service import Runtime
from libs.common.views import Page
from services.customer import cursor, repository, views
from services.customer.requests import CustomerQuery, PaymentQuery


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

    async def get_customer(self, raw_merchant_id: str, raw_customer_id: str) -> views.Customer:
        return views.customer(await self._customer(merchant_of(raw_merchant_id), raw_customer_id))

    async def list_customers(self, query: CustomerQuery) -> Page[views.Customer]:
        merchant_id = merchant_of(query.merchant_id)
        limit = page_limit(query.limit)
        after = cursor.decode(query.cursor)
        email = query.email.strip() or None
        rows = await self.rt.read(
            READ, merchant_id, lambda db: repository.customers_after(db, merchant_id, email, after, limit + 1)
        )
        page = rows[:limit]
        more = len(rows) > limit
        return Page(
            tuple(views.customer(r) for r in page),
            cursor.encode(page[-1]["created_at"], page[-1]["id"]) if more else "",
        )

    async def list_customer_payments(self, query: PaymentQuery) -> Page[views.CustomerPayment]:
        merchant_id = merchant_of(query.merchant_id)
        limit = page_limit(query.limit)
        after = cursor.decode(query.cursor)
        customer = await self._customer(merchant_id, query.customer_id)
        rows = await self.rt.read(
            READ, merchant_id, lambda db: repository.payments_after(db, customer["id"], after, limit + 1)
        )
        page = rows[:limit]
        more = len(rows) > limit
        return Page(
            tuple(views.payment(r) for r in page),
            cursor.encode(page[-1]["created_at"], page[-1]["invoice_id"]) if more else "",
        )
