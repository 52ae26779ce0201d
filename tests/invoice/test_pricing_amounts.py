"""Money conversions of services/invoice/pricing.py: parsing decimals, fiat to crypto amounts,
base units (wei, sats) and fixed-point formatting, none of which accepts a float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.invoice.pricing import (
    CRYPTO,
    PricingError,
    crypto_amount,
    format_money,
    from_base_units,
    parse_decimal,
    to_base_units,
)

D = Decimal
ETH, USDC, BTC = CRYPTO["ETH"], CRYPTO["USDC"], CRYPTO["BTC"]


# --- floats are rejected ------------------------------------------------------------------


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
