"""The invoice service's queries: each reads its read models (on a replica when one is fresh
enough, libs/common/replicas.py) and answers with views (services/invoice/views.py).

Another merchant's invoice is "not found", never "forbidden": nothing is learnt from it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import asyncpg

from libs.common import ids
from libs.common.db import Connection
from libs.common.errors import InvalidArgument, NotFound
from libs.common.limits import (
    EXPORT_METADATA_COLUMNS_MAX,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    SEARCH_QUERY_MAX_CHARS,
)
from libs.common.replica_config import ANALYTICS, CUSTOMER, READ
from libs.common.replicas import ReplicaStatus
from libs.common.service import Runtime
from services.invoice import history, refunds, repository, views
from services.invoice.requests import InvoiceQuery
from services.invoice.state import LIVE_PAYMENT_STATUSES, STATUSES


def merchant_of(raw: str) -> uuid.UUID:
    merchant_id = ids.parse_id(raw)
    if merchant_id is None:
        raise NotFound("merchant not found")
    return merchant_id


def owned(merchant: str, invoice: str) -> uuid.UUID:
    """The invoice's id, when it could be the merchant's (it carries the merchant's slot)."""
    merchant_id, invoice_id = ids.parse_id(merchant), ids.parse_id(invoice)
    if merchant_id is None or invoice_id is None or ids.slot_of(invoice_id) != ids.slot_of(merchant_id):
        raise NotFound("invoice not found")
    return invoice_id


async def owned_row(merchant: str, invoice: str, db: Connection) -> asyncpg.Record:
    row = await repository.invoice(db, owned(merchant, invoice))
    if row is None or str(row["merchant_id"]) != merchant.lower():
        raise NotFound("invoice not found")
    return row


async def invoice_with_refunds(
    db: Connection, merchant_id: uuid.UUID, invoice_id: uuid.UUID
) -> views.Invoice:
    """One invoice as GetInvoice shows it: with its refunds and what is left to refund."""
    row = await repository.invoice(db, invoice_id)
    if row is None or row["merchant_id"] != merchant_id:
        raise NotFound("invoice not found")
    listed = await repository.refunds(db, invoice_id)
    held = sum((r["crypto_amount"] for r in listed if r["status"] in refunds.HOLDING_STATUSES), Decimal(0))
    received = await repository.received(db, invoice_id, LIVE_PAYMENT_STATUSES)
    return views.invoice(
        row,
        refunds=tuple(views.refund(r) for r in listed),
        amount_refundable=views.refundable(row, received - held),
    )


def limit_of(requested: int) -> int:
    limit = requested or PAGE_LIMIT_DEFAULT
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidArgument.field("limit", f"must be between 1 and {PAGE_LIMIT_MAX}")
    return limit


def cursor_of(raw: str) -> uuid.UUID | None:
    if not raw:
        return None
    value = ids.parse_id(raw)
    if value is None:
        raise InvalidArgument.field("cursor", "is not a cursor this service issued")
    return value


def window(
    after: dt.datetime | None, before: dt.datetime | None, name: str
) -> tuple[dt.datetime, dt.datetime]:
    """An export's [after, before) window: both ends required (an export is always bounded)."""
    if after is None:
        raise InvalidArgument.field(f"{name}_after", "is required")
    if before is None:
        raise InvalidArgument.field(f"{name}_before", "is required")
    return after, before


class InvoiceReads:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def get_invoice(self, merchant: str, invoice: str) -> views.Invoice:
        invoice_id = owned(merchant, invoice)
        merchant_id = ids.parse_id(merchant)
        assert merchant_id is not None  # `owned` parsed it
        return await self.rt.read(
            READ, invoice_id, lambda db: invoice_with_refunds(db, merchant_id, invoice_id)
        )

    async def list_invoices(self, query: InvoiceQuery) -> views.Page[views.Invoice]:
        merchant_id = merchant_of(query.merchant_id)
        limit = limit_of(query.limit)
        if query.status and query.status not in STATUSES:
            raise InvalidArgument.field("status", f"must be one of {', '.join(STATUSES)}")
        customer_id = ids.parse_id(query.customer_id) if query.customer_id else None
        if query.customer_id and customer_id is None:
            raise InvalidArgument.field("customer_id", "must be a UUID")
        where = repository.InvoiceFilter(
            merchant_id,
            status=query.status or None,
            created_after=query.created_after,
            created_before=query.created_before,
            customer_id=customer_id,
            before_id=cursor_of(query.cursor),
        )
        rows = await self.rt.read(READ, merchant_id, lambda db: repository.invoices(db, where, limit + 1))
        return views.page(rows, limit, views.invoice)

    async def search_invoices(
        self, merchant: str, query: str, limit: int, cursor: str
    ) -> views.Page[views.Invoice]:
        merchant_id = merchant_of(merchant)
        most = limit_of(limit)
        query = query.strip()
        if not query:
            raise InvalidArgument.field("query", "must not be blank")
        if len(query) > SEARCH_QUERY_MAX_CHARS:
            raise InvalidArgument.field("query", f"must be at most {SEARCH_QUERY_MAX_CHARS} characters")
        where = repository.InvoiceFilter(merchant_id, search=query, before_id=cursor_of(cursor))
        rows = await self.rt.read(READ, merchant_id, lambda db: repository.invoices(db, where, most + 1))
        return views.page(rows, most, views.invoice)

    async def get_checkout(self, invoice: str) -> views.Checkout:
        invoice_id = ids.parse_id(invoice)
        if invoice_id is None:
            raise NotFound("invoice not found")

        async def view(db: Connection) -> views.Checkout:
            row = await repository.invoice(db, invoice_id)
            if row is None:
                raise NotFound("invoice not found")
            return views.checkout(
                row, await repository.payments(db, invoice_id), await repository.refunds(db, invoice_id)
            )

        # The payer's page: the customer role (within 500 ms of the primary, per the seed).
        return await self.rt.read(CUSTOMER, invoice_id, view)

    async def list_payments(self, merchant: str, invoice: str) -> tuple[views.Payment, ...]:
        async def payments(db: Connection) -> list[asyncpg.Record]:
            row = await owned_row(merchant, invoice, db)
            return await repository.payments(db, row["id"])

        rows = await self.rt.read(READ, owned(merchant, invoice), payments)
        return tuple(views.payment(r) for r in rows)

    async def list_merchant_payments(
        self,
        merchant: str,
        limit: int,
        detected_after: dt.datetime | None,
        detected_before: dt.datetime | None,
        cursor: str,
    ) -> views.Page[views.Payment]:
        merchant_id = merchant_of(merchant)
        most = limit_of(limit)
        after, before = window(detected_after, detected_before, "detected")
        since = cursor_of(cursor)
        rows = await self.rt.read(
            READ,
            merchant_id,
            lambda db: repository.merchant_payments(db, merchant_id, after, before, since, most + 1),
        )
        return views.page(rows, most, views.payment)

    async def list_metadata_keys(
        self, merchant: str, created_after: dt.datetime | None, created_before: dt.datetime | None
    ) -> tuple[list[str], bool]:
        """The metadata keys of the window's invoices (at most the export's columns), and
        whether there were more."""
        merchant_id = merchant_of(merchant)
        after, before = window(created_after, created_before, "created")
        most = EXPORT_METADATA_COLUMNS_MAX
        keys = await self.rt.read(
            READ, merchant_id, lambda db: repository.metadata_keys(db, merchant_id, after, before, most + 1)
        )
        return keys[:most], len(keys) > most

    async def list_audit_entries(
        self, merchant: str, invoice: str, limit: int, cursor: str
    ) -> views.Page[views.AuditEntry]:
        invoice_id = owned(merchant, invoice)
        most = limit_of(limit)
        since = cursor_of(cursor)
        row = await self.rt.read(READ, invoice_id, lambda db: owned_row(merchant, invoice, db))
        rows = await history.audit_trail(self.rt, row, since, most + 1)
        return views.page(rows, most, views.audit_entry)

    async def get_shard_stats(self, shard: int) -> tuple[int, list[ReplicaStatus]]:
        """How many invoices the shard holds, and its replicas' state."""
        invoices = await self.rt.read_shard(ANALYTICS, shard, repository.count_invoices)
        return invoices, self.rt.replicas.status(shard)
