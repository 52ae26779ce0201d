"""Every operation the clients offer, once: its method, path, query and body. `Client` and
`AsyncClient` only send these, so the two cannot disagree on a path or a field name (the
contract's names: ../shared/API.md and `/openapi.json`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from checkout_client._core import Call, call


def _id(value: str) -> str:
    return quote(value, safe="")


def _date(value: dt.date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, dt.date) else value


def _body(**fields: Any) -> dict[str, Any]:
    """A JSON body of the fields given: None means "not sent", so the gateway's default applies."""
    return {k: v for k, v in fields.items() if v is not None}


# --- invoices (merchant key)
def create_invoice(body: dict[str, Any], idempotency_key: str | None) -> Call:
    return call("POST", "/v1/invoices", json=body, idempotency_key=idempotency_key)


def get_invoice(invoice_id: str) -> Call:
    return call("GET", f"/v1/invoices/{_id(invoice_id)}")


def list_invoices(
    *,
    status: str | None = None,
    customer_id: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call:
    params: dict[str, str | int | None] = {"status": status, "customer_id": customer_id, "limit": limit}
    params |= {"created_after": created_after, "created_before": created_before, "cursor": cursor}
    return call("GET", "/v1/invoices", params=params)


def search_invoices(q: str, limit: int | None = None, cursor: str | None = None) -> Call:
    return call("GET", "/v1/invoices/search", params={"q": q, "limit": limit, "cursor": cursor})


def cancel_invoice(invoice_id: str, idempotency_key: str | None) -> Call:
    return call("POST", f"/v1/invoices/{_id(invoice_id)}/cancel", json={}, idempotency_key=idempotency_key)


def invoice_payments(invoice_id: str) -> Call:
    return call("GET", f"/v1/invoices/{_id(invoice_id)}/payments")


def invoice_audit(invoice_id: str, limit: int | None = None, cursor: str | None = None) -> Call:
    return call("GET", f"/v1/invoices/{_id(invoice_id)}/audit", params={"limit": limit, "cursor": cursor})


def create_refund(invoice_id: str, body: dict[str, Any], idempotency_key: str | None) -> Call:
    path = f"/v1/invoices/{_id(invoice_id)}/refunds"
    return call("POST", path, json=body, idempotency_key=idempotency_key)


def cancel_refund(invoice_id: str, refund_id: str, idempotency_key: str | None) -> Call:
    path = f"/v1/invoices/{_id(invoice_id)}/refunds/{_id(refund_id)}/cancel"
    return call("POST", path, json={}, idempotency_key=idempotency_key)


def checkout(invoice_id: str) -> Call:
    return call("GET", f"/v1/checkout/{_id(invoice_id)}")


# --- customers, analytics, exports, the event feed (merchant key)
def list_customers(email: str | None = None, limit: int | None = None, cursor: str | None = None) -> Call:
    return call("GET", "/v1/customers", params={"email": email, "limit": limit, "cursor": cursor})


def get_customer(customer_id: str) -> Call:
    return call("GET", f"/v1/customers/{_id(customer_id)}")


def customer_payments(customer_id: str, limit: int | None = None, cursor: str | None = None) -> Call:
    path = f"/v1/customers/{_id(customer_id)}/payments"
    return call("GET", path, params={"limit": limit, "cursor": cursor})


def daily_metrics(start: dt.date | str, end: dt.date | str) -> Call:
    return call("GET", "/v1/analytics/daily", params={"from": _date(start), "to": _date(end)})


def summary(period: str) -> Call:
    return call("GET", "/v1/analytics/summary", params={"period": period})


EXPORTS = ("invoices", "payments")


def export(kind: str, start: dt.date | str | None, end: dt.date | str | None) -> Call:
    if kind not in EXPORTS:
        raise ValueError(f"export is one of {', '.join(EXPORTS)}, not {kind!r}")
    return call("GET", f"/v1/exports/{kind}.csv", params={"from": _date(start), "to": _date(end)})


# A long poll's answer comes at most this long after its wait.
EVENTS_WAIT_MARGIN_SECONDS = 15.0


def events(
    after: str | None, types: Sequence[str] | None, limit: int | None, wait: int | None = None
) -> Call:
    joined = ",".join(types) if types else None
    params = {"after": after, "types": joined, "limit": limit, "wait": wait}
    timeout = wait + EVENTS_WAIT_MARGIN_SECONDS if wait else None
    return call("GET", "/v1/events", params=params, timeout=timeout)


# --- webhooks and keys (merchant key)
def create_webhook_endpoint(body: dict[str, Any], idempotency_key: str | None) -> Call:
    return call("POST", "/v1/webhook-endpoints", json=body, idempotency_key=idempotency_key)


def list_webhook_endpoints() -> Call:
    return call("GET", "/v1/webhook-endpoints")


def delete_webhook_endpoint(endpoint_id: str) -> Call:
    return call("DELETE", f"/v1/webhook-endpoints/{_id(endpoint_id)}")


def webhook_deliveries(endpoint_id: str, limit: int | None = None, cursor: str | None = None) -> Call:
    path = f"/v1/webhook-endpoints/{_id(endpoint_id)}/deliveries"
    return call("GET", path, params={"limit": limit, "cursor": cursor})


def redeliver(delivery_id: str, idempotency_key: str | None) -> Call:
    path = f"/v1/webhook-deliveries/{_id(delivery_id)}/redeliver"
    return call("POST", path, json={}, idempotency_key=idempotency_key)


def list_api_keys() -> Call:
    return call("GET", "/v1/api-keys")


def revoke_api_key(key_id: str) -> Call:
    return call("DELETE", f"/v1/api-keys/{_id(key_id)}")


# --- the operator's (admin token)
def create_merchant(body: dict[str, Any], idempotency_key: str | None) -> Call:
    return call("POST", "/v1/merchants", json=body, idempotency_key=idempotency_key)


def list_merchants(limit: int | None = None, cursor: str | None = None) -> Call:
    return call("GET", "/v1/merchants", params={"limit": limit, "cursor": cursor})


def get_merchant(merchant_id: str) -> Call:
    return call("GET", f"/v1/merchants/{_id(merchant_id)}")


def update_merchant(merchant_id: str, body: dict[str, Any]) -> Call:
    return call("PATCH", f"/v1/merchants/{_id(merchant_id)}", json=body)


def create_api_key(merchant_id: str, body: dict[str, Any], idempotency_key: str | None) -> Call:
    path = f"/v1/merchants/{_id(merchant_id)}/api-keys"
    return call("POST", path, json=body, idempotency_key=idempotency_key)


def shards() -> Call:
    return call("GET", "/v1/admin/shards")


def register_shard(dsn: str, tier: str | None) -> Call:
    return call("POST", "/v1/admin/shards", json=_body(dsn=dsn, tier=tier))


def create_slot_move(slots: str, to_shard: int) -> Call:
    return call("POST", "/v1/admin/slot-moves", json={"slots": slots, "to_shard": to_shard})


def slot_move(move_id: str, action: str | None = None) -> Call:
    """GET the move, or POST one of its actions: pause, resume, abort."""
    path = f"/v1/admin/slot-moves/{_id(move_id)}"
    return call("GET", path) if action is None else call("POST", f"{path}/{action}")


def slot_moves() -> Call:
    return call("GET", "/v1/admin/slot-moves")


def platform_metrics(start: dt.date | str, end: dt.date | str) -> Call:
    return call("GET", "/v1/admin/platform-metrics", params={"from": _date(start), "to": _date(end)})


def list_dead_letters(
    *,
    shard: int | None = None,
    service: str | None = None,
    projection: str | None = None,
    event_type: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call:
    params: dict[str, str | int | None] = {"shard": shard, "service": service, "projection": projection}
    params["event_type"] = event_type
    return call("GET", "/v1/admin/dead-letters", params=params | {"limit": limit, "cursor": cursor})


def retry_dead_letter(letter_id: str, idempotency_key: str | None) -> Call:
    path = f"/v1/admin/dead-letters/{_id(letter_id)}/retry"
    return call("POST", path, json={}, idempotency_key=idempotency_key)


def body(**fields: Any) -> dict[str, Any]:
    return _body(**fields)
