"""Protobuf messages -> the JSON resources of API.md.

Money stays the decimal string the service computed; timestamps are RFC 3339 UTC with `Z`, and
an unset timestamp is `null`. Optional ids that proto3 can only say as "" become `null`.
"""

from __future__ import annotations

from collections.abc import Sequence

from checkout.analytics.v1 import analytics_pb2
from checkout.customer.v1 import customer_pb2
from checkout.invoice.v1 import invoice_pb2
from checkout.merchant.v1 import merchant_pb2

from services.gateway.wire import struct_field, timestamp_field

JsonObject = dict[str, object]


def _optional(value: str) -> str | None:
    return value or None


def page(items: Sequence[JsonObject], next_cursor: str) -> JsonObject:
    return {"data": list(items), "next_cursor": next_cursor or None}


def merchant(m: merchant_pb2.Merchant) -> JsonObject:
    return {
        "id": m.id,
        "business_name": m.business_name,
        "contact_email": m.contact_email,
        "status": m.status,
        "plan_type": m.plan_type,
        "settings": struct_field(m, "settings"),
        "wallets": dict(m.wallets),
        "shard": m.shard,
        "created_at": timestamp_field(m, "created_at"),
        "updated_at": timestamp_field(m, "updated_at"),
    }


def api_key(k: merchant_pb2.ApiKey, *, plaintext: str | None = None) -> JsonObject:
    body: JsonObject = {
        "id": k.id,
        "merchant_id": k.merchant_id,
        "name": k.name,
        "key_type": k.key_type,
        "permissions": list(k.permissions),
        "status": k.status,
        "prefix": k.prefix,
        "expires_at": timestamp_field(k, "expires_at"),
        "created_at": timestamp_field(k, "created_at"),
        "last_used_at": timestamp_field(k, "last_used_at"),
    }
    if plaintext is not None:
        body["key"] = plaintext
    return body


def invoice(i: invoice_pb2.Invoice) -> JsonObject:
    rate = i.exchange_rate
    return {
        "id": i.id,
        "merchant_id": i.merchant_id,
        "customer_id": _optional(i.customer_id),
        "customer_email": _optional(i.customer_email),
        "title": i.title,
        "description": i.description,
        "items": [
            {"name": item.name, "quantity": item.quantity, "unit_price": item.unit_price} for item in i.items
        ],
        "subtotal": i.subtotal,
        "tax": i.tax,
        "total": i.total,
        "currency": i.currency,
        "crypto_currency": i.crypto_currency,
        "crypto_amount": i.crypto_amount,
        "amount_paid": i.amount_paid,
        "network": _optional(i.network),
        "payment_address": i.payment_address,
        "payment_uri": i.payment_uri,
        "status": i.status,
        "exchange_rate": (
            {
                "rate": rate.rate,
                "source": rate.source,
                "pair": _optional(rate.pair),
                "fetched_at": timestamp_field(rate, "fetched_at"),
            }
            if i.HasField("exchange_rate")
            else None
        ),
        "payment_tolerance": (
            {"underpaid_percent": i.payment_tolerance.underpaid_percent}
            if i.HasField("payment_tolerance")
            else None
        ),
        "metadata": struct_field(i, "metadata"),
        "expires_at": timestamp_field(i, "expires_at"),
        "created_at": timestamp_field(i, "created_at"),
        "updated_at": timestamp_field(i, "updated_at"),
        "paid_at": timestamp_field(i, "paid_at"),
        "overpaid": i.overpaid,
        "paid_late": i.paid_late,
        "status_reason": _optional(i.status_reason),
    }


def payment(p: invoice_pb2.Payment) -> JsonObject:
    return {
        "id": p.id,
        "invoice_id": p.invoice_id,
        "network": p.network,
        "tx_hash": p.tx_hash,
        "output_index": p.output_index,
        "asset": p.asset,
        "amount": p.amount,
        "from_address": p.from_address,
        "to_address": p.to_address,
        "status": p.status,
        "confirmations": p.confirmations,
        "required_confirmations": p.required_confirmations,
        # Unset while the transaction waits in the mempool.
        "block_number": p.block_number if p.HasField("block_number") else None,
        "block_hash": _optional(p.block_hash),
        "late": p.late,
        "status_reason": _optional(p.status_reason),
        "detected_at": timestamp_field(p, "detected_at"),
        "confirmed_at": timestamp_field(p, "confirmed_at"),
    }


def audit_entry(e: invoice_pb2.AuditEntry) -> JsonObject:
    return {
        "id": e.id,
        "invoice_id": e.invoice_id,
        "event": e.event,
        "actor": e.actor,
        "timestamp": timestamp_field(e, "timestamp"),
        "request_id": _optional(e.request_id),
        "data": struct_field(e, "data"),
    }


def checkout(v: invoice_pb2.CheckoutView) -> JsonObject:
    """The payer's view: exactly these fields, nothing else of the merchant's."""
    return {
        "id": v.id,
        "title": v.title,
        "status": v.status,
        "total": v.total,
        "currency": v.currency,
        "crypto_currency": v.crypto_currency,
        "crypto_amount": v.crypto_amount,
        "amount_paid": v.amount_paid,
        "payment_address": v.payment_address,
        "payment_uri": v.payment_uri,
        "expires_at": timestamp_field(v, "expires_at"),
        "overpaid": v.overpaid,
        "paid_late": v.paid_late,
        # The payer's own transactions; nothing else of the merchant's (no addresses, no ids).
        "payments": [
            {
                "tx_hash": p.tx_hash,
                "amount": p.amount,
                "status": p.status,
                "confirmations": p.confirmations,
                "required_confirmations": p.required_confirmations,
            }
            for p in v.payments
        ],
    }


def customer(c: customer_pb2.Customer) -> JsonObject:
    return {
        "id": c.id,
        "merchant_id": c.merchant_id,
        "email": c.email,
        "status": c.status,
        "metadata": struct_field(c, "metadata"),
        "invoice_count": c.invoice_count,
        "created_at": timestamp_field(c, "created_at"),
        "updated_at": timestamp_field(c, "updated_at"),
        "last_seen_at": timestamp_field(c, "last_seen_at"),
    }


def customer_payment(p: customer_pb2.CustomerPayment) -> JsonObject:
    return {
        "customer_id": p.customer_id,
        "invoice_id": p.invoice_id,
        "amount": p.amount,
        "currency": p.currency,
        "status": p.status,
        "paid_at": timestamp_field(p, "paid_at"),
        "created_at": timestamp_field(p, "created_at"),
    }


def daily_metric(d: analytics_pb2.DailyMetric) -> JsonObject:
    return {
        "metric_date": d.metric_date,
        "currency": d.currency,
        "invoices_created": d.invoices_created,
        "invoices_paid": d.invoices_paid,
        "amount_created": d.amount_created,
        "amount_paid": d.amount_paid,
        "conversion_rate": d.conversion_rate,
    }


def currency_totals(c: analytics_pb2.CurrencyTotals) -> JsonObject:
    return {
        "currency": c.currency,
        "invoices_created": c.invoices_created,
        "invoices_paid": c.invoices_paid,
        "amount_created": c.amount_created,
        "amount_paid": c.amount_paid,
        "conversion_rate": c.conversion_rate,
    }


def summary(s: analytics_pb2.Summary) -> JsonObject:
    return {
        "period": s.period,
        # "all" with no metrics yet has no first day.
        "from": _optional(s.from_date),
        "to": s.to_date,
        "invoices_created": s.invoices_created,
        "invoices_paid": s.invoices_paid,
        # Unset when the period has several currencies: their amounts do not add up.
        "amount_created": s.amount_created if s.HasField("amount_created") else None,
        "amount_paid": s.amount_paid if s.HasField("amount_paid") else None,
        "currency": _optional(s.currency),
        "conversion_rate": s.conversion_rate,
        "by_currency": [currency_totals(c) for c in s.by_currency],
    }


def replica(r: invoice_pb2.ReplicaStatus) -> JsonObject:
    return {
        "name": r.name,
        "roles": list(r.roles),
        "up": r.up,
        "lag_seconds": round(r.lag_seconds, 3) if r.HasField("lag_seconds") else None,
        "lag_bytes": r.lag_bytes if r.HasField("lag_bytes") else None,
        "lagging": r.lagging,
        "error": r.error,
    }
