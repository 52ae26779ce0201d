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
    crypto_amount,
    format_money,
    from_base_units,
    parse_decimal,
    to_base_units,
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


def test_money_functions_reject_floats() -> None:
    bad: Any = 0.5
    with pytest.raises(TypeError):
        parse_decimal(bad, "amount")
    with pytest.raises(TypeError):
        crypto_amount(bad, D("2400"), ETH)
    with pytest.raises(TypeError):
        crypto_amount(D("10"), bad, ETH)
    with pytest.raises(TypeError):
        to_base_units(bad, ETH)
    with pytest.raises(TypeError):
        from_base_units(bad, ETH)
    with pytest.raises(TypeError):
        format_money(bad, 2)


def test_from_base_units_rejects_bool() -> None:
    bad: Any = True
    with pytest.raises(TypeError):
        from_base_units(bad, BTC)


# --- parse_decimal --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.50", D("12.50")),
        ("3", D("3")),
        ("0", D("0")),
        ("-1.5", D("-1.5")),
        ("0.000000000000000001", D("1E-18")),
        ("9" * 30, D("9" * 30)),
    ],
)
def test_parse_decimal_accepts_plain_decimal_strings(text: str, expected: Decimal) -> None:
    value = parse_decimal(text, "amount")
    assert value == expected
    assert str(value) == str(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "1e5",
        "1E+5",
        "1e-5",
        "12.5.0",
        "1_000",
        " 12",
        "12 ",
        "+5",
        ".5",
        "5.",
        "0x10",
        "١٢",
        "1,000.00",
        "0.0000000000000000001",  # 19 decimals
        "1" * 31,  # 31 integer digits
        "1" * 10_000,
    ],
)
def test_parse_decimal_rejects_anything_but_a_bounded_plain_decimal(text: str) -> None:
    with pytest.raises(PricingError) as exc_info:
        parse_decimal(text, "items[2].unit_price")
    assert exc_info.value.field == "items[2].unit_price"


# --- crypto amounts -------------------------------------------------------------------------


def test_crypto_amount_rounds_up_to_18_decimals_for_eth() -> None:
    # 10 / 2400 = 0.0041666...; nearest rounding agrees there, so 10 / 3000 checks the case
    # where it would round down.
    assert crypto_amount(D("10.00"), D("2400.00"), ETH) == D("0.004166666666666667")
    assert crypto_amount(D("10.00"), D("3000.00"), ETH) == D("0.003333333333333334")


def test_crypto_amount_rounds_up_to_8_decimals_for_btc() -> None:
    # 10 / 48000 = 0.000208333...
    assert crypto_amount(D("10.00"), D("48000.00"), BTC) == D("0.00020834")


def test_crypto_amount_rounds_up_to_6_decimals_for_usdc() -> None:
    # 10 / 0.92 = 10.8695652...
    assert crypto_amount(D("10.00"), D("0.92"), USDC) == D("10.869566")


def test_crypto_amount_does_not_round_up_an_exact_quotient() -> None:
    assert crypto_amount(D("24.00"), D("2400.00"), ETH) == D("0.01")
    assert crypto_amount(D("48000.00"), D("48000"), BTC) == D("1")


def test_crypto_amount_always_covers_the_fiat_total() -> None:
    for total, rate in [("0.01", "2400.00"), ("99.99", "47123.45"), ("1234.56", "0.9999")]:
        for asset in (ETH, BTC, USDC):
            amount = crypto_amount(D(total), D(rate), asset)
            assert amount * D(rate) >= D(total)
            assert amount - from_base_units(1, asset) < D(total) / D(rate)


def test_crypto_amount_is_exact_where_decimal_division_would_round_first() -> None:
    # 30 significant digits: a 28-digit Decimal division drops the last wei before rounding up.
    total = D("100000000000.000000000000000001")
    assert crypto_amount(total, D("1"), ETH) == total
    assert crypto_amount(D("1"), D("3"), ETH) == D("0.333333333333333334")


@pytest.mark.parametrize("rate", ["0", "-1", "NaN", "Infinity"])
def test_crypto_amount_requires_a_positive_rate(rate: str) -> None:
    with pytest.raises(PricingError) as exc_info:
        crypto_amount(D("10.00"), D(rate), ETH)
    assert exc_info.value.field == "rate"


def test_crypto_amount_requires_a_positive_total() -> None:
    with pytest.raises(PricingError) as exc_info:
        crypto_amount(D("0"), D("2400"), ETH)
    assert exc_info.value.field == "total"


# --- base units -----------------------------------------------------------------------------


def test_to_base_units_is_exact_wei_and_sats() -> None:
    assert to_base_units(D("0.004166666666666667"), ETH) == 4_166_666_666_666_667
    assert to_base_units(D("1"), ETH) == 10**18
    assert to_base_units(D("0.1"), ETH) == 10**17
    assert to_base_units(D("1.5"), BTC) == 150_000_000
    assert to_base_units(D("0.00000001"), BTC) == 1
    assert to_base_units(D("10.869566"), USDC) == 10_869_566
    assert to_base_units(D("0"), BTC) == 0


def test_to_base_units_is_exact_beyond_28_significant_digits() -> None:
    assert to_base_units(D("123456789012.123456789012345678"), ETH) == 123456789012123456789012345678


def test_to_base_units_rejects_more_decimals_than_the_asset_has() -> None:
    with pytest.raises(PricingError) as exc_info:
        to_base_units(D("0.000000001"), BTC)
    assert exc_info.value.field == "amount"
    with pytest.raises(PricingError):
        to_base_units(D("1.0000001"), USDC)


def test_to_base_units_accepts_trailing_zeros_beyond_the_asset_decimals() -> None:
    assert to_base_units(D("1.0000000000"), BTC) == 100_000_000


@pytest.mark.parametrize("amount", ["-1", "NaN", "Infinity", "1E+40"])
def test_to_base_units_rejects_negative_and_non_finite_amounts(amount: str) -> None:
    with pytest.raises(PricingError):
        to_base_units(D(amount), ETH)


def test_from_base_units_is_the_exact_inverse() -> None:
    assert from_base_units(1, ETH) == D("0.000000000000000001")
    assert from_base_units(150_000_000, BTC) == D("1.5")
    assert from_base_units(10**30, ETH) == D(10**12)
    for amount, asset in [(D("0.004166666666666667"), ETH), (D("0.00020834"), BTC)]:
        assert from_base_units(to_base_units(amount, asset), asset) == amount


def test_from_base_units_rejects_negative_units() -> None:
    with pytest.raises(PricingError):
        from_base_units(-1, BTC)


# --- format_money ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "exponent", "expected"),
    [
        (D("12.5"), 2, "12.50"),
        (D("12.50"), 2, "12.50"),
        (D("4500"), 0, "4500"),
        (D("0.004166666666666667"), 18, "0.004166666666666667"),
        (D("1E-8"), 8, "0.00000001"),
        (D("1E+3"), 2, "1000.00"),
        (D("48000"), 8, "48000.00000000"),
        (D("-0"), 2, "0.00"),
        (D("-3.5"), 2, "-3.50"),
    ],
)
def test_format_money_is_fixed_point_with_exactly_the_given_decimals(
    amount: Decimal, exponent: int, expected: str
) -> None:
    assert format_money(amount, exponent) == expected


def test_format_money_never_uses_scientific_notation_for_base_unit_amounts() -> None:
    assert format_money(from_base_units(1, ETH), 18) == "0.000000000000000001"
    assert format_money(from_base_units(10**30, ETH), 18) == "1000000000000.000000000000000000"


def test_format_money_refuses_to_drop_digits() -> None:
    with pytest.raises(PricingError):
        format_money(D("12.345"), 2)


def test_format_money_rejects_non_finite_amounts() -> None:
    with pytest.raises(PricingError):
        format_money(D("NaN"), 2)
