from __future__ import annotations

import asyncio
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from services.invoice.rates import (
    DEFAULT_FIXED_RATES,
    FixedRateProvider,
    Quote,
    RateProvider,
    RateUnavailable,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def fixed_clock() -> datetime:
    return NOW


def quote(provider: RateProvider, base: str, quote: str) -> Quote:
    # Run directly so the tests do not depend on pytest-asyncio's configured mode.
    return asyncio.run(provider.get_quote(base, quote))


def test_env_value_is_parsed_into_decimal_rates() -> None:
    provider = FixedRateProvider.from_env_value("ETH-USD=2400.00,BTC-USD=48000,USDC-USD=1.00")
    assert quote(provider, "ETH", "USD").rate == Decimal("2400.00")
    assert quote(provider, "BTC", "USD").rate == Decimal("48000")
    assert quote(provider, "USDC", "USD").rate == Decimal("1.00")


def test_quote_carries_pair_source_and_clock_time() -> None:
    provider = FixedRateProvider.from_env_value("ETH-USD=2400.00", clock=fixed_clock)
    assert quote(provider, "ETH", "USD") == Quote(
        base="ETH", quote="USD", rate=Decimal("2400.00"), source="fixed", fetched_at=NOW
    )


def test_default_clock_gives_timezone_aware_utc_now() -> None:
    before = datetime.now(UTC)
    fetched_at = quote(FixedRateProvider.from_env_value("ETH-USD=1"), "ETH", "USD").fetched_at
    assert fetched_at.utcoffset() == timedelta(0)
    assert before <= fetched_at <= datetime.now(UTC)


def test_default_fixed_rates_cover_every_supported_pair() -> None:
    provider = FixedRateProvider.from_env_value(DEFAULT_FIXED_RATES, clock=fixed_clock)
    expected = {
        ("ETH", "USD"): "2400.00",
        ("BTC", "USD"): "48000.00",
        ("USDC", "USD"): "1.00",
        ("ETH", "EUR"): "2200.00",
        ("BTC", "EUR"): "44000.00",
        ("USDC", "EUR"): "0.92",
    }
    for (base, fiat), rate in expected.items():
        assert quote(provider, base, fiat).rate == Decimal(rate)


def test_whitespace_and_lower_case_in_the_env_value_are_tolerated() -> None:
    provider = FixedRateProvider.from_env_value("  eth-usd = 2400.00 , BTC-USD=48000\n")
    assert quote(provider, "ETH", "USD").rate == Decimal("2400.00")
    assert quote(provider, "btc", "usd").rate == Decimal("48000")


def test_rates_keep_their_exact_decimal_value() -> None:
    provider = FixedRateProvider.from_env_value("USDC-EUR=0.92")
    assert str(quote(provider, "USDC", "EUR").rate) == "0.92"


@pytest.mark.parametrize(
    ("env_value", "bad_entry"),
    [
        ("ETH-USD=2400,BTC-USD", "BTC-USD"),
        ("ETH-USD=2400,BTC-USD=abc", "BTC-USD=abc"),
        ("ETH-USD=2400,BTC-USD=", "BTC-USD="),
        ("ETH-USD=1e3", "ETH-USD=1e3"),
        ("ETH-USD=NaN", "ETH-USD=NaN"),
        ("ETH-USD=0", "ETH-USD=0"),
        ("ETH-USD=-5", "ETH-USD=-5"),
        ("ETHUSD=2400", "ETHUSD=2400"),
        ("ETH-US=2400", "ETH-US=2400"),
        ("ETH-USD-EUR=2400", "ETH-USD-EUR=2400"),
        ("=2400", "=2400"),
        ("ETH-USD=24=00", "ETH-USD=24=00"),
        ("ETH-USD=2400,,BTC-USD=48000", ""),
        ("ETH-USD=2400,ETH-USD=2500", "ETH-USD=2500"),
    ],
)
def test_malformed_env_entries_raise_value_error_naming_the_entry(env_value: str, bad_entry: str) -> None:
    with pytest.raises(ValueError) as exc_info:
        FixedRateProvider.from_env_value(env_value)
    assert repr(bad_entry) in str(exc_info.value)


@pytest.mark.parametrize("env_value", ["", "   "])
def test_empty_env_value_is_rejected(env_value: str) -> None:
    with pytest.raises(ValueError, match="no rates"):
        FixedRateProvider.from_env_value(env_value)


def test_unknown_pair_raises_rate_unavailable_naming_pair_and_providers() -> None:
    provider = FixedRateProvider.from_env_value("ETH-USD=2400")
    with pytest.raises(RateUnavailable) as exc_info:
        quote(provider, "ETH", "JPY")
    assert exc_info.value.pair == "ETH-JPY"
    assert exc_info.value.providers_tried == ["fixed"]
    assert "ETH-JPY" in str(exc_info.value)
    assert "fixed" in str(exc_info.value)


def test_rate_unavailable_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(RateUnavailable("BTC-GBP", ["fixed", "coingecko"])))
    assert (error.pair, error.providers_tried) == ("BTC-GBP", ["fixed", "coingecko"])
    assert "fixed, coingecko" in str(error)


def test_provider_built_from_a_mapping_rejects_float_rates() -> None:
    bad: Any = 2400.0
    with pytest.raises(TypeError):
        FixedRateProvider({"ETH-USD": bad})


@pytest.mark.parametrize("rate", ["0", "-1", "NaN", "Infinity"])
def test_provider_built_from_a_mapping_rejects_non_positive_rates(rate: str) -> None:
    with pytest.raises(ValueError):
        FixedRateProvider({"ETH-USD": Decimal(rate)})


def test_provider_built_from_a_mapping_rejects_malformed_pairs() -> None:
    with pytest.raises(ValueError, match="ETHUSD"):
        FixedRateProvider({"ETHUSD": Decimal("1")})


def test_quote_requires_a_timezone_aware_timestamp() -> None:
    with pytest.raises(ValueError, match="timezone"):
        Quote("ETH", "USD", Decimal("1"), "fixed", datetime(2025, 1, 1))
    Quote("ETH", "USD", Decimal("1"), "fixed", datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=2))))


def test_quote_rejects_float_rate() -> None:
    bad: Any = 1.0
    with pytest.raises(TypeError):
        Quote("ETH", "USD", bad, "fixed", NOW)


def test_fixed_provider_satisfies_the_rate_provider_protocol() -> None:
    provider: RateProvider = FixedRateProvider({"ETH-USD": Decimal("1")})
    assert provider.name == "fixed"
