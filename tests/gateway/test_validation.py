from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.datastructures import QueryParams

from services.gateway.errors import ApiError
from services.gateway.routes.analytics import date_range
from services.gateway.routes.invoices import create_request
from services.gateway.validation import (
    Fields,
    Problems,
    Query,
    limit_of,
    parse_json_object,
    parse_timestamp,
)

VALID_INVOICE: dict[str, object] = {
    "title": "Order 1",
    "items": [{"name": "tea", "quantity": "2", "unit_price": "12.50"}],
    "currency": "USD",
    "crypto_currency": "ETH",
}


def violations(error: pytest.ExceptionInfo[ApiError]) -> dict[str, str]:
    assert error.value.code == "invalid_argument"
    assert error.value.status == 422
    return {d.field: d.reason for d in error.value.details}


def test_a_valid_invoice_body_becomes_a_create_request() -> None:
    body = {
        **VALID_INVOICE,
        "tax": "1.00",
        "expires_in_seconds": 900,
        "payment_tolerance": {"underpaid_percent": "1.0"},
        "metadata": {"order": 42},
        "customer_email": None,
    }
    message = create_request(body)
    assert message.items[0].unit_price == "12.50"
    assert message.expires_in_seconds == 900
    assert message.payment_tolerance.underpaid_percent == "1.0"
    assert message.metadata["order"] == 42
    assert message.merchant_id == ""  # set from the API key, never from the body


def test_a_money_field_sent_as_a_json_number_is_rejected_with_its_path() -> None:
    body = {**VALID_INVOICE, "items": [{"name": "tea", "quantity": "2", "unit_price": 12.5}]}
    with pytest.raises(ApiError) as error:
        create_request(body)
    reason = violations(error)["items[0].unit_price"]
    assert "decimal string" in reason and "number" in reason


def test_a_quantity_sent_as_a_json_integer_is_rejected_too() -> None:
    body = {**VALID_INVOICE, "items": [{"name": "tea", "quantity": 2, "unit_price": "1"}]}
    with pytest.raises(ApiError) as error:
        create_request(body)
    assert "items[0].quantity" in violations(error)


def test_every_bad_field_is_reported_at_once() -> None:
    body = {
        "title": 5,
        "items": "tea",
        "currency": "USD",
        "crypto_currency": "ETH",
        "expires_in_seconds": "900",
        "surprise": 1,
    }
    with pytest.raises(ApiError) as error:
        create_request(body)
    assert set(violations(error)) == {"title", "items", "expires_in_seconds", "surprise"}


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(ApiError) as error:
        create_request({})
    assert set(violations(error)) == {"title", "items", "currency", "crypto_currency"}


def test_expires_in_seconds_must_be_an_integer_not_a_boolean_or_float() -> None:
    for value in (True, 900.0, -1):
        with pytest.raises(ApiError) as error:
            create_request({**VALID_INVOICE, "expires_in_seconds": value})
        assert "expires_in_seconds" in violations(error)


def test_a_non_object_line_item_is_reported_at_its_index() -> None:
    body = {**VALID_INVOICE, "items": [{"name": "a", "quantity": "1", "unit_price": "1"}, "b"]}
    with pytest.raises(ApiError) as error:
        create_request(body)
    assert violations(error) == {"items[1]": "must be a JSON object"}


def test_nested_unknown_fields_carry_their_full_path() -> None:
    body = {**VALID_INVOICE, "payment_tolerance": {"underpaid_percent": "1", "over": "2"}}
    with pytest.raises(ApiError) as error:
        create_request(body)
    assert "payment_tolerance.over" in violations(error)


def test_decimal_strings_must_look_like_decimals() -> None:
    for bad in ("1e5", "12,50", " 1", "NaN", ""):
        problems = Problems()
        Fields({"tax": bad}, problems, allowed=("tax",)).decimal("tax")
        assert [p.field for p in problems.items] == ["tax"], bad


def test_metadata_integers_beyond_double_precision_are_rejected() -> None:
    with pytest.raises(ApiError) as error:
        create_request({**VALID_INVOICE, "metadata": {"big": 2**60}})
    assert "metadata.big" in violations(error)


def test_malformed_json_is_a_422_on_body() -> None:
    with pytest.raises(ApiError) as error:
        parse_json_object(b'{"title": ')
    assert "body" in violations(error)


def test_a_json_array_body_is_a_422_on_body() -> None:
    with pytest.raises(ApiError) as error:
        parse_json_object(b"[1, 2]")
    assert violations(error) == {"body": "must be a JSON object"}


def test_nan_is_not_accepted_as_json() -> None:
    with pytest.raises(ApiError):
        parse_json_object(b'{"x": NaN}')


def test_a_lone_surrogate_is_rejected_before_it_reaches_protobuf() -> None:
    with pytest.raises(ApiError):
        parse_json_object(b'{"title": "\\ud800"}')


def test_limit_defaults_to_50() -> None:
    assert limit_of(QueryParams("")) == 50


def test_limit_accepts_1_to_200() -> None:
    assert limit_of(QueryParams("limit=1")) == 1
    assert limit_of(QueryParams("limit=200")) == 200


@pytest.mark.parametrize("raw", ["0", "201", "-1", "ten", "1.5", "٣"])
def test_an_invalid_limit_is_a_422_on_limit(raw: str) -> None:
    with pytest.raises(ApiError) as error:
        limit_of(QueryParams({"limit": raw}))
    assert set(violations(error)) == {"limit"}


def test_rfc3339_timestamps_need_a_time_zone() -> None:
    assert parse_timestamp("2026-11-25T02:24:21Z") == datetime(2026, 11, 25, 2, 24, 21, tzinfo=UTC)
    assert parse_timestamp("2026-11-25T02:24:21") is None
    assert parse_timestamp("2026-11-25") is None
    assert parse_timestamp("yesterday") is None


def test_an_invalid_query_timestamp_is_reported_on_its_field() -> None:
    problems = Problems()
    Query(QueryParams("created_after=soon"), problems).timestamp("created_after")
    assert [p.field for p in problems.items] == ["created_after"]


def test_analytics_dates_must_be_ordered_and_span_at_most_366_days() -> None:
    def check(query: str) -> set[str]:
        try:
            date_range(Query(QueryParams(query), Problems()))
        except ApiError as error:
            return {d.field for d in error.details}
        return set()

    assert check("from=2026-01-01&to=2026-12-31") == set()
    assert check("from=2024-01-01&to=2024-12-31") == set()  # a leap year: 366 days
    assert check("from=2026-01-02&to=2026-01-01") == {"to"}
    assert check("from=2025-01-01&to=2026-01-02") == {"to"}
    assert check("to=2026-01-01") == {"from"}
    assert check("from=20260101&to=2026-01-01") == {"from"}
