"""Rate providers built from the environment, against loopback servers in the exchanges' formats."""

from __future__ import annotations

import contextvars
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from libs.common.config import Config, ConfigError
from services.invoice.rate_config import rate_provider_from_config
from services.invoice.rates import RateUnavailable
from tests.invoice.rate_providers.ticker import (
    BINANCE_ETH,
    COINBASE_ETH,
    KRAKEN_ETH,
    NOW,
    Clock,
    Reply,
    TickerServer,
    closed_port_url,
    serve_all_three,
)

LIVE = "coinbase,kraken,binance"


def env_for(base_url: str, providers: str = LIVE, **more: str) -> dict[str, str]:
    return {
        "CHECKOUT_RATE_PROVIDERS": providers,
        "CHECKOUT_RATE_COINBASE_URL": base_url,
        "CHECKOUT_RATE_KRAKEN_URL": base_url,
        "CHECKOUT_RATE_BINANCE_URL": base_url + "/",  # a trailing slash is fine
        **more,
    }


async def test_the_default_is_the_fixed_table_alone() -> None:
    config = Config.from_env({})
    assert config.rate_providers == ("fixed",)
    async with rate_provider_from_config(config, clock=Clock()) as rates:
        quote = await rates.get_quote("ETH", "USD")
        assert (quote.rate, quote.source, quote.fetched_at) == (Decimal("2400.00"), "fixed", NOW)
        spread = await rates.get_quote("ETH", "USD", spread_percent=Decimal("1.5"))
        assert (spread.rate, spread.source) == (Decimal("2364.00"), "fixed less 1.5% spread")
        assert type(spread.rate) is Decimal
        with pytest.raises(RateUnavailable, match=r"DOGE-USD \(providers tried: fixed\)"):
            await rates.get_quote("DOGE", "USD")


async def test_the_configured_fixed_table_is_used() -> None:
    config = Config.from_env({"CHECKOUT_FIXED_RATES": "ETH-USD=2500.5"})
    async with rate_provider_from_config(config) as rates:
        assert (await rates.get_quote("eth", "usd")).rate == Decimal("2500.5")


async def test_three_live_providers_give_their_median_less_the_merchant_spread(server: TickerServer) -> None:
    serve_all_three(server, cb="2400.15", kr="2399.90", bn="2500.00")
    config = Config.from_env(env_for(server.base_url))
    assert config.rate_providers == ("coinbase", "kraken", "binance")
    async with rate_provider_from_config(config, clock=Clock()) as rates:
        mid = await rates.get_quote("ETH", "USD")
        assert (mid.rate, mid.source) == (Decimal("2400.15"), "median(coinbase,kraken,binance)")
        credited = await rates.get_quote("ETH", "USD", spread_percent=Decimal(2))
        assert credited.rate == Decimal("2352.1470")
        assert credited.source == "median(coinbase,kraken,binance) less 2% spread"
    # Both quotes came from one round of requests: the mid rate is cached.
    assert [server.hits[t] for t in (COINBASE_ETH, KRAKEN_ETH, BINANCE_ETH)] == [1, 1, 1]


# Which provider is reading the clock: each runs in its own task, so a context variable set while
# it receives its answer is seen only by that provider's own reading of the clock.
_lagging = contextvars.ContextVar("lagging", default=False)


async def _binance_answers_late(response: httpx.Response) -> None:
    if "/api/v3/" in response.request.url.path:
        _lagging.set(True)


def lagging_clock(now: datetime, lag: timedelta) -> Clock:
    class PerProviderClock(Clock):
        def __call__(self) -> datetime:
            return self.now - lag if _lagging.get() else self.now

    return PerProviderClock(now)


async def test_a_quote_older_than_the_configured_max_age_is_ignored(server: TickerServer) -> None:
    serve_all_three(server, cb="2400.00", kr="2402.00", bn="9999.00")
    config = Config.from_env(env_for(server.base_url, CHECKOUT_RATE_MAX_AGE_SECONDS="30"))
    assert config.rate_max_age_seconds == 30
    async with httpx.AsyncClient(event_hooks={"response": [_binance_answers_late]}) as http:
        rates = rate_provider_from_config(
            config, client=http, clock=lagging_clock(NOW, timedelta(seconds=31))
        )
        quote = await rates.get_quote("ETH", "USD")
    assert (quote.rate, quote.source) == (Decimal("2401.00"), "median(coinbase,kraken)")
    assert server.hits[BINANCE_ETH] == 1


async def test_the_cache_lasts_the_configured_seconds(server: TickerServer) -> None:
    serve_all_three(server, cb="2400", kr="2400", bn="2400")
    clock = Clock()
    config = Config.from_env(env_for(server.base_url, CHECKOUT_RATE_CACHE_SECONDS="5"))
    async with rate_provider_from_config(config, clock=clock) as rates:
        await rates.get_quote("ETH", "USD")
        clock.advance(timedelta(seconds=4))
        await rates.get_quote("ETH", "USD")
        assert server.hits[COINBASE_ETH] == 1
        clock.advance(timedelta(seconds=1))
        await rates.get_quote("ETH", "USD")
        assert server.hits[COINBASE_ETH] == 2


async def test_a_hanging_or_malformed_provider_is_a_provider_failure(server: TickerServer) -> None:
    serve_all_three(server, cb="2400.00", kr="2402.00", bn="1")
    server.routes[BINANCE_ETH] = Reply(b"", hang=True)
    server.routes[KRAKEN_ETH] = Reply(b'{"error": [], "result": {"XETHZUSD": {"c": [2402.0]}}}')
    config = Config.from_env(env_for(server.base_url, CHECKOUT_RATE_TIMEOUT_SECONDS="0.2"))
    async with rate_provider_from_config(config, clock=Clock()) as rates:
        quote = await rates.get_quote("ETH", "USD")
    assert (quote.rate, quote.source) == (Decimal("2400.00"), "median(coinbase)")


async def test_all_providers_down_is_rate_unavailable_naming_the_pair_and_providers_tried() -> None:
    config = Config.from_env(env_for(closed_port_url()))
    async with rate_provider_from_config(config) as rates:
        with pytest.raises(RateUnavailable) as exc_info:
            await rates.get_quote("ETH", "USD")
    assert exc_info.value.pair == "ETH-USD"
    assert exc_info.value.providers_tried == ["coinbase", "kraken", "binance"]
    assert str(exc_info.value).startswith(
        "no exchange rate available for ETH-USD (providers tried: coinbase, kraken, binance)"
    )


async def test_fixed_listed_last_is_the_fallback_when_every_live_provider_is_down() -> None:
    down = closed_port_url()
    config = Config.from_env(env_for(down, "kraken,fixed", CHECKOUT_FIXED_RATES="ETH-USD=2300"))
    async with rate_provider_from_config(config) as rates:
        quote = await rates.get_quote("ETH", "USD")
        assert (quote.rate, quote.source) == (Decimal("2300"), "fallback(fixed)")
        with pytest.raises(RateUnavailable) as exc_info:
            await rates.get_quote("BTC", "USD")
    assert exc_info.value.providers_tried == ["kraken", "fixed"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CHECKOUT_RATE_PROVIDERS", "coinbase,bitstamp", "unknown provider 'bitstamp'"),
        ("CHECKOUT_RATE_PROVIDERS", "fixed,coinbase", "must come last"),
        ("CHECKOUT_RATE_PROVIDERS", "kraken,Kraken", "more than once"),
        ("CHECKOUT_RATE_PROVIDERS", "coinbase,,kraken", "comma-separated"),
        ("CHECKOUT_RATE_MAX_AGE_SECONDS", "soon", "number of seconds"),
        ("CHECKOUT_RATE_MAX_AGE_SECONDS", "0", "positive"),
        ("CHECKOUT_RATE_MAX_AGE_SECONDS", "NaN", "positive"),
        ("CHECKOUT_RATE_CACHE_SECONDS", "-1", "positive"),
        ("CHECKOUT_RATE_TIMEOUT_SECONDS", "Infinity", "positive"),
        ("CHECKOUT_RATE_COINBASE_URL", "api.coinbase.com", "http(s) base URL"),
        ("CHECKOUT_RATE_KRAKEN_URL", "ftp://api.kraken.com", "http(s) base URL"),
        ("CHECKOUT_RATE_BINANCE_URL", "https://api.binance.com?x=1", "http(s) base URL"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=name) as exc_info:
        Config.from_env({name: value})
    assert message in str(exc_info.value)


def test_a_bad_fixed_rate_table_is_a_config_error_naming_the_variable() -> None:
    config = Config.from_env({"CHECKOUT_FIXED_RATES": "ETH-USD=cheap"})
    with pytest.raises(ConfigError, match="CHECKOUT_FIXED_RATES"):
        rate_provider_from_config(config)


async def test_a_float_spread_is_refused() -> None:
    async with rate_provider_from_config(Config()) as rates:
        with pytest.raises(TypeError, match="Decimal"):
            await rates.get_quote("ETH", "USD", spread_percent=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="spread_percent"):
            await rates.get_quote("ETH", "USD", spread_percent=Decimal(100))
