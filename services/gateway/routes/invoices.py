"""/v1/invoices: create, read, list, search and cancel a merchant's invoices, and read their
payments and audit trail (merchant key)."""

from __future__ import annotations

from checkout.invoice.v1 import invoice_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from libs.common.cache import invoice_key
from services.gateway import render
from services.gateway.auth import authenticate, require_merchant
from services.gateway.context import consistency_of
from services.gateway.idempotency import call_context
from services.gateway.state import state_of
from services.gateway.validation import Fields, Problems, Query, json_body, path_id
from services.gateway.wire import to_struct, to_timestamp

STATUSES = ("pending", "partial", "paid", "confirmed", "expired", "cancelled", "invalid")
CANCEL_FIELDS = ("reason",)
CREATE_FIELDS = (
    "title",
    "description",
    "items",
    "tax",
    "currency",
    "crypto_currency",
    "customer_email",
    "customer_id",
    "expires_in_seconds",
    "payment_tolerance",
    "metadata",
)


def create_request(body: dict[str, object]) -> invoice_pb2.CreateInvoiceRequest:
    """The CreateInvoice message for a request body, or a 422 naming every bad field.

    `merchant_id` is left for the caller to set from the API key, never from the body.
    """
    problems = Problems()
    fields = Fields(body, problems, allowed=CREATE_FIELDS)
    title = fields.string("title", required=True, max_length=500)
    description = fields.string("description", max_length=5000)
    items: list[invoice_pb2.LineItem] = []
    for item in fields.list_of("items", allowed=("name", "quantity", "unit_price"), required=True) or []:
        name = item.string("name", required=True, max_length=500)
        quantity = item.decimal("quantity", required=True)
        unit_price = item.decimal("unit_price", required=True)
        items.append(
            invoice_pb2.LineItem(name=name or "", quantity=quantity or "", unit_price=unit_price or "")
        )
    tax = fields.decimal("tax")
    currency = fields.string("currency", required=True, max_length=10)
    crypto_currency = fields.string("crypto_currency", required=True, max_length=20)
    customer_email = fields.string("customer_email", max_length=320)
    customer_id = fields.uuid("customer_id")
    expires_in_seconds = fields.integer("expires_in_seconds", minimum=1)
    tolerance = fields.fields("payment_tolerance", allowed=("underpaid_percent",))
    underpaid = tolerance.decimal("underpaid_percent", required=True) if tolerance else None
    metadata = fields.object("metadata")
    problems.raise_if_any()

    message = invoice_pb2.CreateInvoiceRequest(
        title=title or "",
        description=description or "",
        items=items,
        tax=tax or "",
        currency=currency or "",
        crypto_currency=crypto_currency or "",
        customer_email=customer_email or "",
        customer_id=str(customer_id) if customer_id else "",
        expires_in_seconds=expires_in_seconds or 0,
    )
    if underpaid is not None:
        message.payment_tolerance.underpaid_percent = underpaid
    if metadata is not None:
        message.metadata.CopyFrom(to_struct(metadata))
    return message


async def create_invoice(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "invoices:write")
    body = await json_body(request)
    message = create_request(body)
    message.merchant_id = str(merchant_id)
    backends = state_of(request).backends
    invoice = await backends.call(
        backends.invoices(backends.shard_of(merchant_id)).CreateInvoice,
        message,
        call_context(request, caller.actor, body),
    )
    return JSONResponse(render.invoice(invoice), status_code=201)


async def get_invoice(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "invoices:read")
    invoice_id = path_id(request, "invoice")
    state = state_of(request)
    backends = state.backends
    shard = backends.shard_of(merchant_id)
    context = caller.context(request)
    assert context.consistency is not None
    key = invoice_key(str(invoice_id))
    # Never an entry older than the client's consistency token (a miss then asks the service).
    cached = await state.cache.get_at(key, context.consistency.sent.at(shard))
    if cached is not None:
        hit = _decode_invoice(cached[0])
        # The cache is shared by all merchants: someone else's invoice is a miss, and the
        # service then answers 404 for it.
        if hit is not None and hit.id == str(invoice_id) and hit.merchant_id == str(merchant_id):
            return JSONResponse(render.invoice(hit))
    invoice = await backends.call(
        backends.invoices(shard).GetInvoice,
        invoice_pb2.GetInvoiceRequest(merchant_id=str(merchant_id), invoice_id=str(invoice_id)),
        context,
    )
    position = context.consistency.read_positions.get(shard)
    await state.cache.set_at(key, invoice.SerializeToString(), position, hot=True)
    return JSONResponse(render.invoice(invoice))


def _decode_invoice(raw: bytes) -> invoice_pb2.Invoice | None:
    try:
        return invoice_pb2.Invoice.FromString(raw)
    except Exception:  # DecodeError or worse: a bad entry is just a miss
        return None


async def list_invoices(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "invoices:read")
    problems = Problems()
    query = Query(request.query_params, problems)
    status = query.choice("status", STATUSES)
    created_after = query.timestamp("created_after")
    created_before = query.timestamp("created_before")
    customer_id = query.uuid("customer_id")
    limit, cursor = query.limit(), query.cursor()
    if created_after and created_before and created_after > created_before:
        problems.add("created_before", "must not be before created_after")
    problems.raise_if_any()

    message = invoice_pb2.ListInvoicesRequest(
        merchant_id=str(merchant_id),
        status=status or "",
        customer_id=str(customer_id) if customer_id else "",
        limit=limit,
        cursor=cursor,
    )
    if created_after is not None:
        message.created_after.CopyFrom(to_timestamp(created_after))
    if created_before is not None:
        message.created_before.CopyFrom(to_timestamp(created_before))
    backends = state_of(request).backends
    listed = await backends.call(
        backends.invoices(backends.shard_of(merchant_id)).ListInvoices,
        message,
        caller.context(request),
    )
    return JSONResponse(render.page([render.invoice(i) for i in listed.invoices], listed.next_cursor))


async def search_invoices(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "invoices:read")
    problems = Problems()
    query = Query(request.query_params, problems)
    text = query.string("q", required=True, max_length=500)
    if text is not None and not text.strip():
        problems.add("q", "must not be blank")
    limit, cursor = query.limit(), query.cursor()
    problems.raise_if_any()
    assert text is not None

    backends = state_of(request).backends
    found = await backends.call(
        backends.invoices(backends.shard_of(merchant_id)).SearchInvoices,
        invoice_pb2.SearchInvoicesRequest(
            merchant_id=str(merchant_id), query=text, limit=limit, cursor=cursor
        ),
        caller.context(request),
    )
    return JSONResponse(render.page([render.invoice(i) for i in found.invoices], found.next_cursor))


async def cancel_invoice(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "invoices:cancel")
    invoice_id = path_id(request, "invoice")
    body = await json_body(request, optional=True)
    problems = Problems()
    reason = Fields(body, problems, allowed=CANCEL_FIELDS).string("reason", max_length=500)
    problems.raise_if_any()
    state = state_of(request)
    backends = state.backends
    invoice = await backends.call(
        backends.invoices(backends.shard_of(merchant_id)).CancelInvoice,
        invoice_pb2.CancelInvoiceRequest(
            merchant_id=str(merchant_id), invoice_id=str(invoice_id), reason=reason or ""
        ),
        call_context(request, caller.actor, body),
    )
    # The invoice service drops the key too; doing it here as well means this caller's next
    # GET reads its own write even if that invalidation failed open.
    fence = consistency_of(request).returned.at(backends.shard_of(merchant_id))
    await state.cache.invalidate(invoice_key(str(invoice_id)), fence=fence)
    return JSONResponse(render.invoice(invoice))


async def list_payments(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "invoices:read")
    invoice_id = path_id(request, "invoice")
    backends = state_of(request).backends
    listed = await backends.call(
        backends.invoices(backends.shard_of(merchant_id)).ListPayments,
        invoice_pb2.ListPaymentsRequest(merchant_id=str(merchant_id), invoice_id=str(invoice_id)),
        caller.context(request),
    )
    # Every payment of one invoice fits a page: a handful of transfers, not a list to page.
    return JSONResponse({"data": [render.payment(p) for p in listed.payments]})


async def list_audit_entries(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "invoices:read")
    invoice_id = path_id(request, "invoice")
    problems = Problems()
    query = Query(request.query_params, problems)
    limit, cursor = query.limit(), query.cursor()
    problems.raise_if_any()
    backends = state_of(request).backends
    listed = await backends.call(
        backends.invoices(backends.shard_of(merchant_id)).ListAuditEntries,
        invoice_pb2.ListAuditEntriesRequest(
            merchant_id=str(merchant_id), invoice_id=str(invoice_id), limit=limit, cursor=cursor
        ),
        caller.context(request),
    )
    return JSONResponse(render.page([render.audit_entry(e) for e in listed.entries], listed.next_cursor))


# `search` is listed before `{id}`: Starlette tries routes in order.
routes = [
    Route("/v1/invoices", create_invoice, methods=["POST"]),
    Route("/v1/invoices", list_invoices, methods=["GET"]),
    Route("/v1/invoices/search", search_invoices, methods=["GET"]),
    Route("/v1/invoices/{id}", get_invoice, methods=["GET"]),
    Route("/v1/invoices/{id}/cancel", cancel_invoice, methods=["POST"]),
    Route("/v1/invoices/{id}/payments", list_payments, methods=["GET"]),
    Route("/v1/invoices/{id}/audit", list_audit_entries, methods=["GET"]),
]
