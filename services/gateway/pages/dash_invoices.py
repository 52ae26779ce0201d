"""Dashboard pages for invoices (list, search, filters, cursor paging; one invoice with its
payments and audit trail) and customers (list by email; one customer's payment history)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from services.gateway.pages.dashboard import Dash, dashboard_page, path_id
from services.gateway.schemas.invoices import STATUSES


def _page_link(path: str, params: dict[str, str], cursor: str | None) -> str | None:
    if not cursor:
        return None
    return f"{path}?{urlencode({**{k: v for k, v in params.items() if v}, 'cursor': cursor})}"


def _first_page(path: str, params: dict[str, str]) -> str:
    kept = {k: v for k, v in params.items() if v}
    return f"{path}?{urlencode(kept)}" if kept else path


def _day_start(day: str) -> str | None:
    # <input type="date"> sends YYYY-MM-DD; the API takes RFC 3339 instants (and checks them).
    return f"{day}T00:00:00Z" if day else None


def _day_end(day: str) -> str | None:
    return f"{day}T23:59:59.999999Z" if day else None


@dashboard_page
async def invoices(dash: Dash) -> Response:
    query = dash.request.query_params
    filters = {
        "q": query.get("q", "").strip(),
        "status": query.get("status", ""),
        "from": query.get("from", ""),
        "to": query.get("to", ""),
        "limit": query.get("limit", ""),  # the API's page size (and its bounds) by default
    }
    cursor = query.get("cursor")
    if filters["q"]:
        # Full-text search has its own endpoint; it takes no status or date filter.
        result = await dash.get(
            "/v1/invoices/search", {"q": filters["q"], "limit": filters["limit"], "cursor": cursor}
        )
    else:
        result = await dash.get(
            "/v1/invoices",
            {
                "status": filters["status"],
                "created_after": _day_start(filters["from"]),
                "created_before": _day_end(filters["to"]),
                "limit": filters["limit"],
                "cursor": cursor,
            },
        )
    problems = result.field_errors() if result.status == 422 else {}
    if not result.ok and not problems:
        return dash.failed(result, "invoices")
    body = result.body if result.ok else {"data": [], "next_cursor": None}
    return dash.page(
        "dash_invoices.html",
        {
            "invoices": body["data"],
            "filters": filters,
            "statuses": STATUSES,
            "problems": problems,
            "next_page": _page_link("/dashboard/invoices", filters, body["next_cursor"]),
            "first_page": _first_page("/dashboard/invoices", filters),
            "paged": bool(cursor),
        },
        status=422 if problems else 200,
    )


@dashboard_page
async def invoice(dash: Dash) -> Response:
    invoice_id = path_id(dash, "invoice")
    if invoice_id is None:
        return dash.not_found("invoice")
    found = await dash.get(f"/v1/invoices/{invoice_id}")
    if not found.ok:
        return dash.failed(found, "the invoice")
    payments = await dash.get(f"/v1/invoices/{invoice_id}/payments")
    audit_cursor = dash.request.query_params.get("audit_cursor")
    audit = await dash.get(f"/v1/invoices/{invoice_id}/audit", {"cursor": audit_cursor})
    if not payments.ok or not audit.ok:
        return dash.failed(payments if not payments.ok else audit, "the invoice's payments and audit trail")
    next_cursor = audit.body["next_cursor"]
    return dash.page(
        "dash_invoice.html",
        {
            "invoice": found.body,
            "payments": payments.body["data"],
            "audit": audit.body["data"],
            "audit_next": f"/dashboard/invoices/{invoice_id}?{urlencode({'audit_cursor': next_cursor})}"
            if next_cursor
            else None,
        },
    )


@dashboard_page
async def customers(dash: Dash) -> Response:
    email = dash.request.query_params.get("email", "").strip()
    cursor = dash.request.query_params.get("cursor")
    result = await dash.get("/v1/customers", {"email": email, "cursor": cursor})
    problems = result.field_errors() if result.status == 422 else {}
    if not result.ok and not problems:
        return dash.failed(result, "customers")
    body = result.body if result.ok else {"data": [], "next_cursor": None}
    return dash.page(
        "dash_customers.html",
        {
            "customers": body["data"],
            "email": email,
            "problems": problems,
            "next_page": _page_link("/dashboard/customers", {"email": email}, body["next_cursor"]),
            "first_page": _first_page("/dashboard/customers", {"email": email}),
            "paged": bool(cursor),
        },
        status=422 if problems else 200,
    )


@dashboard_page
async def customer(dash: Dash) -> Response:
    customer_id = path_id(dash, "customer")
    if customer_id is None:
        return dash.not_found("customer")
    found = await dash.get(f"/v1/customers/{customer_id}")
    if not found.ok:
        return dash.failed(found, "the customer")
    cursor = dash.request.query_params.get("cursor")
    history = await dash.get(f"/v1/customers/{customer_id}/payments", {"cursor": cursor})
    if not history.ok:
        return dash.failed(history, "the customer's payments")
    return dash.page(
        "dash_customer.html",
        {
            "customer": found.body,
            "payments": history.body["data"],
            "next_page": _page_link(
                f"/dashboard/customers/{customer_id}", {}, history.body.get("next_cursor")
            ),
        },
    )


routes = [
    Route("/dashboard/invoices", invoices, methods=["GET"]),
    Route("/dashboard/invoices/{id}", invoice, methods=["GET"]),
    Route("/dashboard/customers", customers, methods=["GET"]),
    Route("/dashboard/customers/{id}", customer, methods=["GET"]),
]
