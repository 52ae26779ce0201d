"""/v1/invoices: create, read, list, search and cancel a merchant's invoices, and read their
payments and audit trail (merchant key); /v1/checkout/{invoice_id}: the payer's view (public)."""

from __future__ import annotations

import uuid

from checkout.invoice.v1 import invoice_pb2
from starlette.responses import Response

from libs.common import limits
from libs.common.cache import invoice_key
from services.gateway.context import CallContext, Consistency, request_id_of
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation, Reply, Rule, json_body, to_json
from services.gateway.pagination import Listing, Page, PageQuery
from services.gateway.schemas.invoices import (
    AuditEntry,
    Checkout,
    Invoice,
    InvoiceCancel,
    InvoiceCreate,
    InvoiceListQuery,
    InvoiceSearchQuery,
    Payment,
)
from services.gateway.state import GatewayState, state_of
from services.gateway.wire import to_struct, to_timestamp

TAG = "Invoices"
CURSOR_RULE = Rule(r"cursor", r".+", "cursor: must be a `next_cursor` this API returned.")
CREATE_RULES = (
    Rule(
        r"total",
        r"must be greater than 0|must be at most \d+",
        f"total: the items (rounded to the currency) must cost something, and at most {limits.TOTAL_MAX} in all.",
    ),
    Rule(
        r"(items\[\d+\]\.unit_price|tax)",
        r"must have at most \d+ decimal places for \w+",
        "items[].unit_price, tax: at most the currency's minor-unit decimals (JPY: none).",
    ),
    Rule(
        r"(title|items\[\d+\]\.name)", r"must not be (blank|empty)", "title, items[].name: not only spaces."
    ),
    Rule(r"customer_email", r"must be an email address", "customer_email: an email address, after trimming."),
    Rule(
        r"customer_id",
        r"is not a customer of this merchant|does not match customer_email",
        "customer_id: one of this merchant's customers, and the one of customer_email when both are sent.",
    ),
    Rule(
        r"expires_in_seconds",
        r"must be between \d+ and \d+",
        "expires_in_seconds: at least the platform's minimum.",
    ),
    Rule(r"metadata", r"must be at most \d+ bytes of JSON", "metadata: at most 16384 bytes as JSON."),
)
EXAMPLE = {
    "title": "Coffee beans",
    "items": [{"name": "Beans 1kg", "quantity": 2, "unit_price": "12.50"}],
    "tax": "2.00",
    "currency": "USD",
    "crypto_currency": "ETH",
    "customer_email": "buyer@example.com",
    "payment_tolerance": {"underpaid_percent": "1.0"},
    "metadata": {"order": 1042},
}


def create_request(body: InvoiceCreate) -> invoice_pb2.CreateInvoiceRequest:
    """The CreateInvoice message for a validated body; `merchant_id` is the caller's key's, never
    the body's."""
    message = invoice_pb2.CreateInvoiceRequest(
        title=body.title,
        description=body.description or "",
        items=[
            invoice_pb2.LineItem(name=item.name, quantity=item.quantity, unit_price=item.unit_price)
            for item in body.items
        ],
        tax=body.tax or "",
        currency=body.currency,
        crypto_currency=body.crypto_currency,
        customer_email=body.customer_email or "",
        customer_id=body.customer_id or "",
        expires_in_seconds=body.expires_in_seconds or 0,
    )
    if body.payment_tolerance is not None:
        message.payment_tolerance.underpaid_percent = body.payment_tolerance.underpaid_percent
    if body.metadata is not None:
        message.metadata.CopyFrom(to_struct(body.metadata))
    return message


async def create_invoice(args: Args[InvoiceCreate, None]) -> Reply:
    message = create_request(args.body)
    message.merchant_id = str(args.merchant_id)
    state = state_of(args.request)
    backends = state.backends
    invoice, replayed = await backends.command(
        backends.invoices(backends.shard_of(args.merchant_id)).CreateInvoice, message, args.command_context()
    )
    return Reply(Invoice.of(invoice, state.public_url), replayed=replayed)


async def get_invoice(args: Args[None, None]) -> Response:
    invoice_id, merchant_id = args.ids["id"], args.merchant_id
    state = state_of(args.request)
    backends = state.backends
    shard = backends.shard_of(merchant_id)
    # Neither memory nor Redis answers with anything older than the client's consistency token.
    required = args.consistency.sent.at(shard)
    view = state.views.get("invoice", invoice_id, required)
    # Views are shared by all merchants: someone else's invoice is a miss, and the service then
    # answers 404 for it.
    if view is not None and view.owner == str(merchant_id):
        return json_body(view.body)
    generation, began = state.views.generation(invoice_id), state.views.now()
    key = invoice_key(str(invoice_id))
    invoice: invoice_pb2.Invoice | None = None
    position: int | None = None
    cached = await state.cache.get_at(key, required)
    if cached is not None:
        hit = _decode_invoice(cached[0])
        if hit is not None and hit.id == str(invoice_id) and hit.merchant_id == str(merchant_id):
            invoice, position = hit, cached[1]
    staleness = 0.0
    if invoice is None:
        invoice = await backends.call(
            backends.invoices(shard).GetInvoice,
            invoice_pb2.GetInvoiceRequest(merchant_id=str(merchant_id), invoice_id=str(invoice_id)),
            args.context(),
        )
        position, staleness = args.consistency.read_positions.get(shard), args.consistency.read_staleness
        await args.consistency.keep(state.cache, key, shard, invoice.SerializeToString(), hot=True)
    body = to_json(Invoice.of(invoice, state.public_url))
    state.views.put(
        "invoice", invoice_id, generation, body, str(merchant_id),
        began=began, staleness=staleness, position=position,
    )  # fmt: skip
    return json_body(body)


def _decode_invoice(raw: bytes) -> invoice_pb2.Invoice | None:
    try:
        return invoice_pb2.Invoice.FromString(raw)
    except Exception:  # DecodeError or worse: a bad entry is just a miss
        return None


async def list_invoices(args: Args[None, InvoiceListQuery]) -> Page[Invoice]:
    q = args.query
    if q.created_after and q.created_before and q.created_after > q.created_before:
        raise ApiError.invalid("created_before", "must not be before created_after")
    message = invoice_pb2.ListInvoicesRequest(
        merchant_id=str(args.merchant_id),
        status=q.status or "",
        customer_id=q.customer_id or "",
        limit=q.limit,
        cursor=q.cursor_or_empty,
    )
    if q.created_after is not None:
        message.created_after.CopyFrom(to_timestamp(q.created_after))
    if q.created_before is not None:
        message.created_before.CopyFrom(to_timestamp(q.created_before))
    state = state_of(args.request)
    backends = state.backends
    listed = await backends.call(
        backends.invoices(backends.shard_of(args.merchant_id)).ListInvoices, message, args.context()
    )
    return Page[Invoice].of([Invoice.of(i, state.public_url) for i in listed.invoices], listed.next_cursor)


async def search_invoices(args: Args[None, InvoiceSearchQuery]) -> Page[Invoice]:
    q = args.query
    state = state_of(args.request)
    backends = state.backends
    found = await backends.call(
        backends.invoices(backends.shard_of(args.merchant_id)).SearchInvoices,
        invoice_pb2.SearchInvoicesRequest(
            merchant_id=str(args.merchant_id), query=q.q, limit=q.limit, cursor=q.cursor_or_empty
        ),
        args.context(),
    )
    return Page[Invoice].of([Invoice.of(i, state.public_url) for i in found.invoices], found.next_cursor)


async def cancel_invoice(args: Args[InvoiceCancel | None, None]) -> Reply:
    invoice_id = args.ids["id"]
    state = state_of(args.request)
    backends = state.backends
    reason = args.body.reason if args.body is not None else None
    invoice, replayed = await backends.command(
        backends.invoices(backends.shard_of(args.merchant_id)).CancelInvoice,
        invoice_pb2.CancelInvoiceRequest(
            merchant_id=str(args.merchant_id), invoice_id=str(invoice_id), reason=reason or ""
        ),
        args.command_context(),
    )
    # The invoice service drops the key too, and its event the views; doing it here as well means
    # this caller's next GET reads its own write even if that invalidation failed open.
    state.views.changed(invoice_id)
    fence = args.consistency.returned.at(backends.shard_of(args.merchant_id))
    await state.cache.invalidate(invoice_key(str(invoice_id)), fence=fence)
    return Reply(Invoice.of(invoice, state.public_url), replayed=replayed)


async def list_payments(args: Args[None, None]) -> Listing[Payment]:
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.invoices(backends.shard_of(args.merchant_id)).ListPayments,
        invoice_pb2.ListPaymentsRequest(merchant_id=str(args.merchant_id), invoice_id=str(args.ids["id"])),
        args.context(),
    )
    # Every payment of one invoice fits a page: a handful of transfers, not a list to page.
    return Listing[Payment].of([Payment.of(p) for p in listed.payments])


async def list_audit_entries(args: Args[None, PageQuery]) -> Page[AuditEntry]:
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.invoices(backends.shard_of(args.merchant_id)).ListAuditEntries,
        invoice_pb2.ListAuditEntriesRequest(
            merchant_id=str(args.merchant_id),
            invoice_id=str(args.ids["id"]),
            limit=args.query.limit,
            cursor=args.query.cursor_or_empty,
        ),
        args.context(),
    )
    return Page[AuditEntry].of([AuditEntry.of(e) for e in listed.entries], listed.next_cursor)


async def checkout_view(
    state: GatewayState, invoice_id: uuid.UUID, request_id: str, consistency: Consistency | None = None
) -> invoice_pb2.CheckoutView:
    """The payer's view of an invoice, from memory until the invoice's next event: the JSON view
    below and the hosted page (pages/pay.py) both read it. No key, no directory: the invoice id
    carries its merchant's slot. `consistency`: the request's token, and where what was read
    stands (views.py keeps no replica answer older than the invoice's last event)."""
    consistency = consistency or Consistency()
    backends = state.backends
    shard = backends.shard_of(invoice_id)
    cached = state.views.get("payer", invoice_id, consistency.sent.at(shard))
    if cached is not None:
        consistency.read_staleness = 0.0
        consistency.read_positions = {} if cached.position is None else {shard: cached.position}
        return invoice_pb2.CheckoutView.FromString(cached.body)
    generation, began = state.views.generation(invoice_id), state.views.now()
    view = await backends.call(
        backends.invoices(shard).GetCheckout,
        invoice_pb2.GetCheckoutRequest(invoice_id=str(invoice_id)),
        CallContext(request_id, "anonymous", consistency=consistency),
    )
    state.views.put(
        "payer", invoice_id, generation, view.SerializeToString(), "", began=began,
        staleness=consistency.read_staleness, position=consistency.read_positions.get(shard),
    )  # fmt: skip
    return view


async def get_checkout(args: Args[None, None]) -> Response:
    invoice_id = args.ids["invoice_id"]
    state = state_of(args.request)
    consistency = args.consistency
    shard = state.backends.shard_of(invoice_id)
    cached = state.views.get("checkout", invoice_id, consistency.sent.at(shard))
    if cached is not None:
        return json_body(cached.body)
    generation, began = state.views.generation(invoice_id), state.views.now()
    view = await checkout_view(state, invoice_id, request_id_of(args.request), consistency)
    body = to_json(Checkout.of(view))
    state.views.put(
        "checkout", invoice_id, generation, body, "", began=began,
        staleness=consistency.read_staleness, position=consistency.read_positions.get(shard),
    )  # fmt: skip
    return json_body(body)


# `search` is declared before `{id}`: Starlette tries routes in order.
operations = [
    Operation(
        "POST", "/v1/invoices", create_invoice, "Create an invoice", TAG, "merchant",
        response=Invoice, status=201, permission="invoices:write", body=InvoiceCreate, errors=(409,),
        rules=CREATE_RULES, idempotent=True, example=EXAMPLE,
        description="Prices the items in fiat, locks an exchange rate and derives a fresh payment address "
        "from the merchant's wallet. 409 `failed_precondition` when the merchant has no wallet for the "
        "currency's network or no fresh rate is to be had.",
    ),
    Operation(
        "GET", "/v1/invoices", list_invoices, "List invoices, newest first", TAG, "merchant",
        response=Page[Invoice], permission="invoices:read", query=InvoiceListQuery,
        rules=(CURSOR_RULE, Rule(r"created_before", r"must not be before created_after", "created_before: not before created_after.")),
    ),
    Operation(
        "GET", "/v1/invoices/search", search_invoices, "Search invoices by title and description", TAG,
        "merchant", response=Page[Invoice], permission="invoices:read", query=InvoiceSearchQuery,
        rules=(CURSOR_RULE, Rule(r"q|query", r"must not be blank", "q: not only spaces.")),
    ),
    Operation(
        "GET", "/v1/invoices/{id}", get_invoice, "Read an invoice", TAG, "merchant",
        response=Invoice, permission="invoices:read", errors=(404,),
    ),
    Operation(
        "POST", "/v1/invoices/{id}/cancel", cancel_invoice, "Cancel an invoice (while nothing is paid)", TAG,
        "merchant", response=Invoice, permission="invoices:cancel", body=InvoiceCancel, body_optional=True,
        errors=(404, 409), idempotent=True, example={"reason": "customer left"},
    ),
    Operation(
        "GET", "/v1/invoices/{id}/payments", list_payments, "List an invoice's payments", TAG, "merchant",
        response=Listing[Payment], permission="invoices:read", errors=(404,),
    ),
    Operation(
        "GET", "/v1/invoices/{id}/audit", list_audit_entries, "Read an invoice's audit trail, oldest first",
        TAG, "merchant", response=Page[AuditEntry], permission="invoices:read", query=PageQuery,
        errors=(404,), rules=(CURSOR_RULE,),
    ),
    Operation(
        "GET", "/v1/checkout/{invoice_id}", get_checkout, "The payer's view of an invoice", "Checkout",
        "public", response=Checkout, errors=(404,),
        description="No credentials; limited per client IP. Shows nothing else of the merchant's.",
    ),
]  # fmt: skip
