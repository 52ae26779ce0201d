"""/v1/exports: a merchant's invoices or payments in a date range as CSV (merchant key).

Streamed: each chunk is one keyset page read from the invoice service (CHECKOUT_EXPORT_PAGE_ROWS,
at most PAGE_LIMIT_MAX rows), so neither the service nor the gateway ever holds the whole file. The first page (and the
metadata columns) is read before the response starts, so a bad request or a service that is down
is still a proper 4xx/503; a failure after that drops the connection, so a cut-short file is never
mistaken for a whole one (the chunked body has no terminating chunk).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from checkout.invoice.v1 import invoice_pb2
from google.protobuf.message import Message
from starlette.responses import StreamingResponse

from libs.common import limits
from services.gateway import csvrows
from services.gateway.operations import Args, Operation
from services.gateway.routes.analytics import RANGE_RULE, checked_range
from services.gateway.schemas.base import timestamp_of
from services.gateway.schemas.exports import DEFAULT_DAYS, MAX_DAYS, ExportQuery
from services.gateway.state import state_of
from services.gateway.wire import from_struct, to_timestamp

log = logging.getLogger("checkout.gateway.exports")
TAG = "Exports"
CSV = "text/csv"
Column = tuple[str, Callable[[Any], str]]


def _ts(message: Message, name: str) -> str:
    return timestamp_of(message, name) or ""


def _flag(value: bool) -> str:
    return "true" if value else "false"


INVOICE_COLUMNS: Sequence[Column] = (
    ("id", lambda i: i.id),
    ("created_at", lambda i: _ts(i, "created_at")),
    ("status", lambda i: i.status),
    ("title", lambda i: i.title),
    ("description", lambda i: i.description),
    ("customer_id", lambda i: i.customer_id),
    ("customer_email", lambda i: i.customer_email),
    ("currency", lambda i: i.currency),
    ("subtotal", lambda i: i.subtotal),
    ("tax", lambda i: i.tax),
    ("total", lambda i: i.total),
    ("crypto_currency", lambda i: i.crypto_currency),
    ("crypto_amount", lambda i: i.crypto_amount),
    ("amount_paid", lambda i: i.amount_paid),
    ("exchange_rate", lambda i: i.exchange_rate.rate),
    ("rate_source", lambda i: i.exchange_rate.source),
    ("network", lambda i: i.network),
    ("payment_address", lambda i: i.payment_address),
    ("overpaid", lambda i: _flag(i.overpaid)),
    ("paid_late", lambda i: _flag(i.paid_late)),
    ("paid_at", lambda i: _ts(i, "paid_at")),
    ("expires_at", lambda i: _ts(i, "expires_at")),
)
PAYMENT_COLUMNS: Sequence[Column] = (
    ("id", lambda p: p.id),
    ("invoice_id", lambda p: p.invoice_id),
    ("detected_at", lambda p: _ts(p, "detected_at")),
    ("status", lambda p: p.status),
    ("network", lambda p: p.network),
    ("asset", lambda p: p.asset),
    ("amount", lambda p: p.amount),
    ("confirmations", lambda p: str(p.confirmations)),
    ("required_confirmations", lambda p: str(p.required_confirmations)),
    ("tx_hash", lambda p: p.tx_hash),
    ("output_index", lambda p: str(p.output_index)),
    ("from_address", lambda p: p.from_address),
    ("to_address", lambda p: p.to_address),
    ("block_number", lambda p: str(p.block_number) if p.HasField("block_number") else ""),
    ("late", lambda p: _flag(p.late)),
    ("confirmed_at", lambda p: _ts(p, "confirmed_at")),
)


def window(query: ExportQuery) -> tuple[dt.datetime, dt.datetime, str]:
    """The export's [start, end) in UTC from its inclusive days, and the days for a file name."""
    end = query.end or dt.datetime.now(dt.UTC).date()
    start = query.start or end - dt.timedelta(days=DEFAULT_DAYS - 1)
    start, end = checked_range(start, end, MAX_DAYS)
    begin = dt.datetime.combine(start, dt.time(), dt.UTC)
    stop = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    return begin, stop, f"{start.isoformat()}_{end.isoformat()}"


def _cell(value: object) -> str:
    """A metadata value as a cell: text as it is, anything else as its JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Page(Protocol):
    @property
    def next_cursor(self) -> str: ...


P = TypeVar("P", bound=_Page)


async def _export(
    kind: str,
    days: str,
    header: list[str],
    fetch: Callable[[str], Awaitable[P]],
    rows: Callable[[P], list[list[str]]],
) -> StreamingResponse:
    """The CSV answer: the header and each page's rows as they are fetched, following the cursor."""
    first = await fetch("")  # before the answer starts: a failure here is still a 4xx/503

    async def chunks() -> AsyncIterator[bytes]:
        yield csvrows.BOM + csvrows.encode_rows([header, *rows(first)])
        page = first
        while page.next_cursor:
            page = await fetch(page.next_cursor)
            yield csvrows.encode_rows(rows(page))

    disposition = f'attachment; filename="{kind}_{days}.csv"'
    return StreamingResponse(
        chunks(), media_type=f"{CSV}; charset=utf-8", headers={"Content-Disposition": disposition}
    )


async def export_invoices(args: Args[None, ExportQuery]) -> StreamingResponse:
    begin, stop, days = window(args.query)
    state = state_of(args.request)
    backends, rows_per_page = state.backends, state.config.export_page_rows
    service = backends.invoices(backends.shard_of(args.merchant_id))
    merchant_id = str(args.merchant_id)
    keys = await backends.call(
        service.ListMetadataKeys,
        invoice_pb2.ListMetadataKeysRequest(
            merchant_id=merchant_id, created_after=to_timestamp(begin), created_before=to_timestamp(stop)
        ),
        args.context(),
    )
    meta_keys = list(keys.keys)
    header = [name for name, _ in INVOICE_COLUMNS] + [f"metadata.{k}" for k in meta_keys] + ["metadata"]

    def rows(page: invoice_pb2.ListInvoicesResponse) -> list[list[str]]:
        out = []
        for invoice in page.invoices:
            metadata = from_struct(invoice.metadata) if invoice.HasField("metadata") else {}
            cells = [value(invoice) for _, value in INVOICE_COLUMNS]
            cells += [_cell(metadata[k]) if k in metadata else "" for k in meta_keys]
            cells.append(_cell(metadata) if metadata else "")
            out.append(cells)
        return out

    async def page(cursor: str) -> invoice_pb2.ListInvoicesResponse:
        request = invoice_pb2.ListInvoicesRequest(
            merchant_id=merchant_id,
            created_after=to_timestamp(begin),
            created_before=to_timestamp(stop),
            limit=rows_per_page,
            cursor=cursor,
        )
        listed: invoice_pb2.ListInvoicesResponse = await backends.call(
            service.ListInvoices, request, args.context()
        )
        return listed

    return await _export("invoices", days, header, page, rows)


async def export_payments(args: Args[None, ExportQuery]) -> StreamingResponse:
    begin, stop, days = window(args.query)
    state = state_of(args.request)
    backends, rows_per_page = state.backends, state.config.export_page_rows
    service = backends.invoices(backends.shard_of(args.merchant_id))

    def rows(page: invoice_pb2.ListPaymentsResponse) -> list[list[str]]:
        return [[value(payment) for _, value in PAYMENT_COLUMNS] for payment in page.payments]

    async def page(cursor: str) -> invoice_pb2.ListPaymentsResponse:
        request = invoice_pb2.ListMerchantPaymentsRequest(
            merchant_id=str(args.merchant_id),
            detected_after=to_timestamp(begin),
            detected_before=to_timestamp(stop),
            limit=rows_per_page,
            cursor=cursor,
        )
        listed: invoice_pb2.ListPaymentsResponse = await backends.call(
            service.ListMerchantPayments, request, args.context()
        )
        return listed

    header = [name for name, _ in PAYMENT_COLUMNS]
    return await _export("payments", days, header, page, rows)


DESCRIPTION = (
    "CSV (RFC 4180, UTF-8 with a byte order mark), streamed page by page. `from` and `to` are days "
    f"in UTC, both inclusive (default: the {DEFAULT_DAYS} days ending today). Amounts are exact decimal "
    "text. A cell that a spreadsheet would read as a formula (starting with = + - @, tab or CR) is "
    "prefixed with `'`. A failure part-way drops the connection rather than end a short file."
)

operations = [
    Operation(
        "GET", "/v1/exports/invoices.csv", export_invoices, "Invoices created in a date range, as CSV",
        TAG, "merchant", permission="invoices:read", query=ExportQuery, rules=(RANGE_RULE,), media_type=CSV,
        description=DESCRIPTION + " Newest first; each metadata key becomes a `metadata.<key>` column "
        f"(at most {limits.EXPORT_METADATA_COLUMNS_MAX}) and the whole metadata is in `metadata` as JSON.",
    ),
    Operation(
        "GET", "/v1/exports/payments.csv", export_payments, "Payments detected in a date range, as CSV",
        TAG, "merchant", permission="invoices:read", query=ExportQuery, rules=(RANGE_RULE,), media_type=CSV,
        description=DESCRIPTION + " Oldest first.",
    ),
]  # fmt: skip
