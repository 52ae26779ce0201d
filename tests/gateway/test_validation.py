"""The request models: every violation with its path, money as strings or exact integers, and
the schema each type states being exactly what it accepts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from libs.common import limits
from services.gateway.errors import ApiError
from services.gateway.pagination import PageQuery
from services.gateway.routes.analytics import date_range
from services.gateway.routes.invoices import create_request
from services.gateway.schemas.analytics import DateRangeQuery
from services.gateway.schemas.invoices import InvoiceCreate, InvoiceListQuery
from services.gateway.schemas.types import decimal_pattern
from services.gateway.violations import of_validation_error

VALID_INVOICE: dict[str, Any] = {
    "title": "Order 1",
    "items": [{"name": "tea", "quantity": "2", "unit_price": "12.50"}],
    "currency": "USD",
    "crypto_currency": "ETH",
}


def body_violations(model: type[BaseModel], body: object) -> dict[str, str]:
    with pytest.raises(ValidationError) as error:
        model.model_validate_json(json.dumps(body), strict=True)
    return {v.field: v.reason for v in of_validation_error(error.value)}


def raw_violations(model: type[BaseModel], raw: bytes) -> dict[str, str]:
    with pytest.raises(ValidationError) as error:
        model.model_validate_json(raw, strict=True)
    return {v.field: v.reason for v in of_validation_error(error.value)}


def query_violations(model: type[BaseModel], query: dict[str, str]) -> dict[str, str]:
    with pytest.raises(ValidationError) as error:
        model.model_validate(query)
    return {v.field: v.reason for v in of_validation_error(error.value)}


def test_a_valid_invoice_body_becomes_a_create_request() -> None:
    body = {
        **VALID_INVOICE,
        "tax": "1.00",
        "expires_in_seconds": 900,
        "payment_tolerance": {"underpaid_percent": "1.0"},
        "metadata": {"order": 42},
        "customer_email": None,
    }
    message = create_request(InvoiceCreate.model_validate_json(json.dumps(body), strict=True))
    assert message.items[0].unit_price == "12.50"
    assert message.expires_in_seconds == 900
    assert message.payment_tolerance.underpaid_percent == "1.0"
    assert message.metadata["order"] == 42
    assert message.merchant_id == ""  # set from the API key, never from the body


def test_every_bad_field_is_reported_at_once_with_its_path() -> None:
    body = {
        "title": 7,
        "items": [{"name": "tea", "quantity": "two", "unit_price": 12.5}, "not an object"],
        "currency": "usd",
        "crypto_currency": "ETH",
        "expires_in_seconds": True,
        "payment_tolerance": {"underpaid_percent": "1", "over": "2"},
        "merchant_id": "someone else",
    }
    found = body_violations(InvoiceCreate, body)
    assert found == {
        "title": "must be a string",
        "items[0].quantity": found["items[0].quantity"],
        "items[0].unit_price": 'must be a decimal string (send "12.5"), not a JSON number',
        "items[1]": "must be a JSON object",
        "currency": "must be one of AUD, CAD, CHF, EUR, GBP, JPY, USD",
        "expires_in_seconds": "must be an integer",
        "payment_tolerance.over": "is not a known field",
        "merchant_id": "is not a known field",
    }
    assert found["items[0].quantity"].startswith("must be a plain decimal string above 0")


def test_missing_required_fields_are_named() -> None:
    assert body_violations(InvoiceCreate, {}) == {
        "title": "is required",
        "items": "is required",
        "currency": "is required",
        "crypto_currency": "is required",
    }


def test_decimal_strings_must_be_plain_decimals_within_their_bound() -> None:
    for bad in ("1e5", "12,50", " 1", "NaN", "", "-1", "01", "1.", ".5", "10000000000.01", "1.234"):
        found = body_violations(InvoiceCreate, {**VALID_INVOICE, "tax": bad})
        assert set(found) == {"tax"}, bad


@pytest.mark.parametrize(
    ("maximum", "positive", "good", "bad"),
    [
        (Decimal(50), False, ["0", "0.0", "49.99", "50", "50.00", "7"], ["50.01", "51", "100", "-0", "007"]),
        (
            Decimal(1_000_000),
            True,
            ["0.01", "1", "999999.99", "1000000"],
            ["0", "0.00", "1000000.01", "1000001"],
        ),
        (Decimal(10), False, ["0", "10", "9.99"], ["10.01", "11", "99"]),
    ],
)
def test_a_decimal_pattern_matches_exactly_the_bounded_decimals(
    maximum: Decimal, positive: bool, good: list[str], bad: list[str]
) -> None:
    pattern = re.compile(decimal_pattern(maximum, positive=positive, fraction_digits=2))
    assert [v for v in good if not pattern.match(v)] == []
    assert [v for v in bad if pattern.match(v)] == []


def test_free_form_metadata_keeps_only_what_round_trips_exactly() -> None:
    assert "metadata" in body_violations(InvoiceCreate, {**VALID_INVOICE, "metadata": {"big": 2**60}})
    too_big = {"blob": "x" * limits.METADATA_MAX_BYTES}
    assert "metadata" in body_violations(InvoiceCreate, {**VALID_INVOICE, "metadata": too_big})


def test_malformed_json_non_objects_nan_and_lone_surrogates_are_refused_on_body() -> None:
    assert set(raw_violations(InvoiceCreate, b'{"title": ')) == {"body"}
    assert raw_violations(InvoiceCreate, b"[1, 2]") == {"body": "must be a JSON object"}
    assert set(raw_violations(InvoiceCreate, b'{"title": "\\ud800"}')) == {"body"}
    found = raw_violations(
        InvoiceCreate, json.dumps({**VALID_INVOICE, "metadata": {"x": 1}}).replace("1}", "NaN}").encode()
    )
    assert set(found) == {"metadata"}


def test_limit_defaults_to_50_and_accepts_1_to_200() -> None:
    assert PageQuery.model_validate({}).limit == limits.PAGE_LIMIT_DEFAULT
    assert PageQuery.model_validate({"limit": "1"}).limit == 1
    assert PageQuery.model_validate({"limit": "200"}).limit == 200


@pytest.mark.parametrize("raw", ["0", "201", "-1", "ten", "1.5", "٣"])
def test_an_invalid_limit_is_a_422_on_limit(raw: str) -> None:
    assert set(query_violations(PageQuery, {"limit": raw})) == {"limit"}


def test_query_timestamps_need_rfc3339_with_a_time_zone() -> None:
    parsed = InvoiceListQuery.model_validate({"created_after": "2026-11-25T02:24:21Z"})
    assert parsed.created_after == datetime(2026, 11, 25, 2, 24, 21, tzinfo=UTC)
    for bad in ("2026-11-25T02:24:21", "2026-11-25", "yesterday", "1700000000"):
        assert set(query_violations(InvoiceListQuery, {"created_after": bad})) == {"created_after"}, bad


def test_analytics_dates_must_be_ordered_and_span_at_most_366_days() -> None:
    def check(query: dict[str, str]) -> set[str]:
        try:
            date_range(DateRangeQuery.model_validate(query))
        except ValidationError as error:
            return {v.field for v in of_validation_error(error)}
        except ApiError as error:
            return {d.field for d in error.details}
        return set()

    assert check({"from": "2026-01-01", "to": "2026-12-31"}) == set()
    assert check({"from": "2024-01-01", "to": "2024-12-31"}) == set()  # a leap year: 366 days
    assert check({"from": "2026-01-02", "to": "2026-01-01"}) == {"to"}
    assert check({"from": "2025-01-01", "to": "2026-01-02"}) == {"to"}
    assert check({"to": "2026-01-01"}) == {"from"}
    assert check({"from": "20260101", "to": "2026-01-01"}) == {"from"}
