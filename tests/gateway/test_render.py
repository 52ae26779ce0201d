from __future__ import annotations

from datetime import UTC, datetime

from checkout.invoice.v1 import invoice_pb2
from checkout.merchant.v1 import merchant_pb2
from google.protobuf import timestamp_pb2

from services.gateway import render
from services.gateway.wire import from_struct, to_struct

BASE = "https://pay.example"


def stamp(iso: str) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(datetime.fromisoformat(iso))
    return value


def test_timestamps_render_as_rfc3339_utc_with_z_and_microseconds() -> None:
    merchant = merchant_pb2.Merchant(id="m", created_at=stamp("2026-11-25T02:24:21.123456+00:00"))
    body = render.merchant(merchant)
    assert body["created_at"] == "2026-11-25T02:24:21.123456Z"


def test_timestamps_in_other_zones_are_converted_to_utc() -> None:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    body = render.merchant(merchant_pb2.Merchant(updated_at=value))
    assert body["updated_at"] == "2026-01-01T12:00:00.000000Z"


def test_unset_timestamps_render_as_null() -> None:
    body = render.invoice(invoice_pb2.Invoice(id="i"), public_base_url=BASE)
    assert body["paid_at"] is None
    assert body["expires_at"] is None


def test_money_strings_are_kept_exactly_as_the_service_sent_them() -> None:
    invoice = invoice_pb2.Invoice(
        subtotal="25.00",
        tax="0.10",
        total="25.10",
        crypto_amount="0.004166666666666667",
        amount_paid="0",
        items=[invoice_pb2.LineItem(name="tea", quantity="2", unit_price="12.50")],
    )
    body = render.invoice(invoice, public_base_url=BASE)
    assert body["crypto_amount"] == "0.004166666666666667"
    assert body["total"] == "25.10"
    assert body["items"] == [{"name": "tea", "quantity": "2", "unit_price": "12.50"}]


def test_invoice_renders_every_field_of_the_api_contract() -> None:
    invoice = invoice_pb2.Invoice(
        exchange_rate=invoice_pb2.ExchangeRate(rate="3000.00", source="coinbase"),
        payment_tolerance=invoice_pb2.PaymentTolerance(underpaid_percent="1.0"),
    )
    body = render.invoice(invoice, public_base_url=BASE)
    contract = {
        "id", "merchant_id", "customer_id", "title", "description", "items", "subtotal", "tax",
        "total", "currency", "crypto_currency", "crypto_amount", "payment_address",
        "payment_uri", "status", "exchange_rate", "payment_tolerance", "expires_at",
        "created_at", "updated_at", "paid_at", "metadata", "amount_paid",
    }  # fmt: skip
    assert contract <= set(body)
    assert body["exchange_rate"] == {
        "rate": "3000.00",
        "source": "coinbase",
        "pair": None,
        "fetched_at": None,
    }
    assert body["payment_tolerance"] == {"underpaid_percent": "1.0"}
    assert body["metadata"] == {}


def test_an_unset_customer_id_renders_as_null_not_an_empty_string() -> None:
    assert render.invoice(invoice_pb2.Invoice(), public_base_url=BASE)["customer_id"] is None


def test_checkout_view_carries_exactly_the_payer_fields() -> None:
    body = render.checkout(invoice_pb2.CheckoutView(id="i", total="1.00"))
    assert set(body) == {
        "id", "title", "status", "total", "currency", "crypto_currency", "crypto_amount",
        "amount_paid", "payment_address", "payment_uri", "expires_at", "overpaid", "paid_late",
        "payments",
    }  # fmt: skip


def test_struct_round_trip_keeps_integers_integers() -> None:
    value = {"order": 42, "ratio": 0.5, "tags": ["a", 1], "nested": {"n": 7}, "flag": True}
    assert from_struct(to_struct(value)) == value


def test_api_key_shows_the_plaintext_only_when_given() -> None:
    key = merchant_pb2.ApiKey(id="k", permissions=["invoices:read"])
    assert "key" not in render.api_key(key)
    assert render.api_key(key, plaintext="ck_sk_x")["key"] == "ck_sk_x"
    assert render.api_key(key)["permissions"] == ["invoices:read"]


def test_an_empty_next_cursor_is_null() -> None:
    assert render.page([], "") == {"data": [], "next_cursor": None}
    assert render.page([], "abc")["next_cursor"] == "abc"
