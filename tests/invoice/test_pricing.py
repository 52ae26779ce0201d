"""Invoice totals (services/invoice/pricing.py): the currency tables, rounding to the minor
unit, and validation that names the field of every error. Amount conversions are in
test_pricing_amounts.py."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import pytest

from libs.common import limits
from services.invoice.pricing import (
    CRYPTO,
    FIAT_MINOR_UNITS,
    LineItem,
    PricingError,
    PricingErrors,
    Totals,
    compute_totals,
)

D = Decimal
ETH, USDC, BTC = CRYPTO["ETH"], CRYPTO["USDC"], CRYPTO["BTC"]


def item(name: str = "Widget", quantity: str = "1", unit_price: str = "10.00") -> LineItem:
    return LineItem(name, D(quantity), D(unit_price))


def error_fields(exc_info: pytest.ExceptionInfo[PricingErrors]) -> dict[str, str]:
    return {e.field: e.reason for e in exc_info.value.errors}


# --- tables ------------------------------------------------------------------------------


def test_fiat_table_has_iso_minor_units() -> None:
    assert dict(FIAT_MINOR_UNITS) == {
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "JPY": 0,
        "CAD": 2,
        "AUD": 2,
        "CHF": 2,
    }


def test_crypto_table_describes_eth_usdc_and_btc() -> None:
    assert (ETH.network, ETH.decimals, ETH.contract) == ("ethereum", 18, None)
    assert (USDC.network, USDC.decimals, USDC.contract) == ("ethereum", 6, None)
    assert (BTC.network, BTC.decimals, BTC.contract) == ("bitcoin", 8, None)


# --- totals ------------------------------------------------------------------------------


def test_subtotal_is_the_sum_of_quantity_times_unit_price() -> None:
    totals = compute_totals([item("Widget", "2", "12.50"), item("Gadget", "3", "1.99")], D("2.24"), "USD")
    assert totals == Totals(subtotal=D("30.97"), tax=D("2.24"), total=D("33.21"))


def test_totals_are_quantized_to_the_currency_minor_unit() -> None:
    totals = compute_totals([item(quantity="2", unit_price="5")], D("1"), "EUR")
    assert (str(totals.subtotal), str(totals.tax), str(totals.total)) == ("10.00", "1.00", "11.00")


def test_subtotal_rounds_half_up_not_half_even() -> None:
    # 0.125 rounds to 0.12 under banker's rounding; invoices round half up.
    totals = compute_totals([item(quantity="0.125", unit_price="1.00")], D("0"), "USD")
    assert totals.subtotal == D("0.13")


def test_subtotal_rounds_down_below_the_half() -> None:
    totals = compute_totals([item(quantity="0.124", unit_price="1.00")], D("0"), "USD")
    assert totals.subtotal == D("0.12")


def test_subtotal_is_rounded_once_after_summing_lines() -> None:
    # Each line is 0.005; rounding per line would give 0.02.
    lines = [item(quantity="0.5", unit_price="0.01"), item(quantity="0.5", unit_price="0.01")]
    assert compute_totals(lines, D("0"), "USD").subtotal == D("0.01")


def test_total_is_rounded_subtotal_plus_tax_exactly() -> None:
    totals = compute_totals([item(quantity="0.333", unit_price="10.00")], D("0.27"), "USD")
    assert totals.subtotal == D("3.33")
    assert totals.total == totals.subtotal + totals.tax == D("3.60")


def test_jpy_totals_have_zero_decimals() -> None:
    totals = compute_totals([item(quantity="3", unit_price="1500")], D("450"), "JPY")
    assert (str(totals.subtotal), str(totals.total)) == ("4500", "4950")


def test_jpy_subtotal_rounds_half_up_to_whole_yen() -> None:
    totals = compute_totals([item(quantity="0.5", unit_price="101")], D("0"), "JPY")
    assert str(totals.subtotal) == "51"


def test_jpy_unit_price_with_decimals_is_rejected() -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(unit_price="100.5")], D("0"), "JPY")
    assert "JPY" in error_fields(exc_info)["items[0].unit_price"]


def test_jpy_tax_with_decimals_is_rejected() -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(unit_price="100")], D("10.5"), "JPY")
    assert set(error_fields(exc_info)) == {"tax"}


def test_trailing_zeros_do_not_count_as_extra_decimals() -> None:
    totals = compute_totals([item(unit_price="12.500")], D("1.000"), "USD")
    assert totals.total == D("13.50")


def test_zero_unit_price_is_allowed_when_the_total_is_positive() -> None:
    totals = compute_totals([item("Free gift", unit_price="0"), item(unit_price="5")], D("0"), "USD")
    assert totals.total == D("5.00")


def test_large_exact_amounts_are_not_rounded_by_the_default_decimal_context() -> None:
    # Inside the platform maxima: the exact product is 999989501.00499999999999999999 (29 digits),
    # below the half, but a 28-digit context would first round it to ...005 and then round up.
    totals = compute_totals([item(quantity="999999.501000010000100001", unit_price="999.99")], D("0"), "USD")
    assert totals.subtotal == D("999989501.00")


# --- validation: every error names its field -------------------------------------------


def test_each_amount_is_accepted_at_its_platform_maximum_and_refused_past_it() -> None:
    at_max = compute_totals(
        [item(quantity=str(limits.QUANTITY_MAX), unit_price="1.00")],
        limits.TOTAL_MAX - limits.QUANTITY_MAX,
        "USD",
    )
    assert at_max.total == limits.TOTAL_MAX
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals(
            [item(quantity=str(limits.QUANTITY_MAX + 1), unit_price=str(limits.UNIT_PRICE_MAX + 1))],
            limits.TAX_MAX + 1,
            "USD",
        )
    assert error_fields(exc_info) == {
        "items[0].quantity": f"must be at most {limits.QUANTITY_MAX}",
        "items[0].unit_price": f"must be at most {limits.UNIT_PRICE_MAX}",
        "tax": f"must be at most {limits.TAX_MAX}",
    }
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(quantity="10", unit_price=str(limits.UNIT_PRICE_MAX))], D("0.01"), "USD")
    assert error_fields(exc_info) == {"total": f"must be at most {limits.TOTAL_MAX}"}


def test_no_items_is_an_error_on_items() -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([], D("0"), "USD")
    assert set(error_fields(exc_info)) == {"items"}


def test_more_than_100_items_is_an_error_on_items() -> None:
    compute_totals([item()] * 100, D("0"), "USD")
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item()] * 101, D("0"), "USD")
    assert set(error_fields(exc_info)) == {"items"}


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name_is_an_error_on_that_items_name(name: str) -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(), item(name=name)], D("0"), "USD")
    assert set(error_fields(exc_info)) == {"items[1].name"}


def test_name_longer_than_200_characters_is_an_error() -> None:
    compute_totals([item(name="x" * 200)], D("0"), "USD")
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(name="x" * 201)], D("0"), "USD")
    assert set(error_fields(exc_info)) == {"items[0].name"}


@pytest.mark.parametrize("quantity", ["0", "-1", "NaN", "Infinity", "1E+40", "0.0000000000000000001"])
def test_invalid_quantity_is_an_error_on_that_items_quantity(quantity: str) -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(quantity=quantity)], D("0"), "USD")
    assert set(error_fields(exc_info)) == {"items[0].quantity"}


@pytest.mark.parametrize("unit_price", ["-0.01", "1.001", "sNaN", "-Infinity"])
def test_invalid_unit_price_is_an_error_on_that_items_unit_price(unit_price: str) -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(unit_price=unit_price)], D("0"), "USD")
    assert set(error_fields(exc_info)) == {"items[0].unit_price"}


@pytest.mark.parametrize("tax", ["-0.01", "0.001", "NaN"])
def test_invalid_tax_is_an_error_on_tax(tax: str) -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item()], D(tax), "USD")
    assert set(error_fields(exc_info)) == {"tax"}


@pytest.mark.parametrize("currency", ["XYZ", "usd", "", "BTC"])
def test_unknown_currency_is_an_error_on_currency(currency: str) -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item()], D("0"), currency)
    assert set(error_fields(exc_info)) == {"currency"}


def test_zero_total_is_an_error_on_total() -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(unit_price="0")], D("0"), "USD")
    assert set(error_fields(exc_info)) == {"total"}


def test_subtotal_that_rounds_to_zero_is_an_error_on_total() -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(quantity="0.4", unit_price="0.01")], D("0"), "USD")
    assert set(error_fields(exc_info)) == {"total"}


def test_all_errors_are_reported_together() -> None:
    items = [item(name="", quantity="0"), item(), item(unit_price="-1")]
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals(items, D("-1"), "USD")
    assert set(error_fields(exc_info)) == {
        "items[0].name",
        "items[0].quantity",
        "items[2].unit_price",
        "tax",
    }
    message = str(exc_info.value)
    assert "items[0].name" in message and "tax" in message


def test_an_unknown_currency_does_not_hide_other_errors() -> None:
    with pytest.raises(PricingErrors) as exc_info:
        compute_totals([item(quantity="-1")], D("0"), "XXX")
    assert set(error_fields(exc_info)) == {"currency", "items[0].quantity"}


def test_pricing_errors_are_value_errors_and_survive_pickling() -> None:
    error = PricingError("items[1].quantity", "must be greater than 0")
    errors = PricingErrors([error])
    assert isinstance(error, ValueError) and isinstance(errors, ValueError)
    assert str(error) == "items[1].quantity: must be greater than 0"
    copy = pickle.loads(pickle.dumps(errors))
    assert [(e.field, e.reason) for e in copy.errors] == [("items[1].quantity", "must be greater than 0")]


# --- floats are rejected ------------------------------------------------------------------


def test_line_item_rejects_float_quantity_and_unit_price() -> None:
    bad: Any = 1.5
    with pytest.raises(TypeError, match="float"):
        LineItem("x", bad, D("1"))
    with pytest.raises(TypeError, match="float"):
        LineItem("x", D("1"), bad)


def test_compute_totals_rejects_float_tax() -> None:
    bad: Any = 0.1
    with pytest.raises(TypeError, match="float"):
        compute_totals([item()], bad, "USD")
