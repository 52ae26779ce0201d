"""The rate aggregator over live providers on a loopback exchange: the median of fresh quotes,
the spread, the fallback and the cache."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from services.invoice.rate_providers import (
    BinanceProvider,
    CoinbaseProvider,
    KrakenProvider,
    RateAggregator,
)
from services.invoice.rates import FixedRateProvider, Quote, RateProvider, RateUnavailable
from tests.invoice.rate_providers.ticker import (
    BINANCE_ETH,
    COINBASE_ETH,
    KRAKEN_ETH,
    NOW,
    Clock,
    Reply,
    TickerServer,
    closed_port_url,
    coinbase,
    make,
    serve_all_three,
    three_providers,
)

# --- aggregation --------------------------------------------------------------------------------


async def test_the_aggregate_is_the_median_of_three_fresh_quotes(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    serve_all_three(server, cb="2400.15", kr="2399.90", bn="2500.00")
    clock = Clock()
    aggregator = RateAggregator(
        three_providers(server, client, clock), max_age=timedelta(seconds=30), clock=clock
    )
    result = await aggregator.get_quote("ETH", "USD")
    assert result == Quote("ETH", "USD", Decimal("2400.15"), "median(coinbase,kraken,binance)", NOW)
    assert type(result.rate) is Decimal


async def test_the_median_of_two_quotes_is_their_exact_mean(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    serve_all_three(server, cb="2400.15", kr="2400.10", bn="1")
    del server.routes[BINANCE_ETH]  # binance answers 404
    clock = Clock()
    aggregator = RateAggregator(
        three_providers(server, client, clock), max_age=timedelta(seconds=30), clock=clock
    )
    result = await aggregator.get_quote("ETH", "USD")
    assert result.rate == Decimal("2400.125")
    assert type(result.rate) is Decimal
    assert result.source == "median(coinbase,kraken)"


async def test_a_stale_quote_is_ignored(server: TickerServer, client: httpx.AsyncClient) -> None:
    serve_all_three(server, cb="2400.00", kr="2402.00", bn="9999.00")
    clock = Clock()
    lagging = Clock(NOW - timedelta(minutes=5))
    providers: list[RateProvider] = [
        make(CoinbaseProvider, server.base_url, client, clock),
        make(KrakenProvider, server.base_url, client, clock),
        make(BinanceProvider, server.base_url, client, lagging),
    ]
    aggregator = RateAggregator(providers, max_age=timedelta(seconds=30), clock=clock)
    result = await aggregator.get_quote("ETH", "USD")
    assert result.rate == Decimal("2401.00")
    assert result.source == "median(coinbase,kraken)"


async def test_only_stale_quotes_means_no_rate_rather_than_a_stale_one(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    server.routes[COINBASE_ETH] = coinbase("2400.00")
    lagging = Clock(NOW - timedelta(minutes=5))
    aggregator = RateAggregator(
        [make(CoinbaseProvider, server.base_url, client, lagging)],
        max_age=timedelta(seconds=30),
        clock=Clock(),
    )
    with pytest.raises(RateUnavailable, match="stale") as exc_info:
        await aggregator.get_quote("ETH", "USD")
    assert exc_info.value.providers_tried == ["coinbase"]


async def test_the_configured_spread_lowers_the_rate_credited_to_the_merchant(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    serve_all_three(server, cb="2400.00", kr="2400.00", bn="2400.00")
    clock = Clock()
    aggregator = RateAggregator(
        three_providers(server, client, clock),
        max_age=timedelta(seconds=30),
        spread_percent=Decimal("1.5"),
        clock=clock,
    )
    result = await aggregator.get_quote("ETH", "USD")
    assert result.rate == Decimal("2364.00")
    assert type(result.rate) is Decimal
    assert result.source == "median(coinbase,kraken,binance) less 1.5% spread"


async def test_a_per_call_spread_overrides_the_configured_one_and_reuses_the_cache(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    server.routes[COINBASE_ETH] = coinbase("2000")
    clock = Clock()
    aggregator = RateAggregator(
        [make(CoinbaseProvider, server.base_url, client, clock)],
        max_age=timedelta(seconds=30),
        spread_percent=Decimal("1"),
        clock=clock,
    )
    assert (await aggregator.get_quote("ETH", "USD")).rate == Decimal("1980")
    assert (await aggregator.get_quote("ETH", "USD", spread_percent=Decimal("2.5"))).rate == Decimal("1950")
    assert (await aggregator.get_quote("ETH", "USD", spread_percent=Decimal(0))).rate == Decimal("2000")
    assert server.hits[COINBASE_ETH] == 1


def test_a_float_or_out_of_range_spread_is_refused() -> None:
    provider = FixedRateProvider({"ETH-USD": Decimal("2400")})
    with pytest.raises(TypeError, match="Decimal"):
        RateAggregator([provider], max_age=timedelta(seconds=30), spread_percent=1.5)  # type: ignore[arg-type]
    for bad in (Decimal(-1), Decimal(100), Decimal("NaN")):
        with pytest.raises(ValueError, match="spread_percent"):
            RateAggregator([provider], max_age=timedelta(seconds=30), spread_percent=bad)


async def test_all_providers_down_raises_rate_unavailable_naming_the_pair_and_every_provider(
    client: httpx.AsyncClient,
) -> None:
    down = closed_port_url()
    providers: list[RateProvider] = [
        make(kind, down, client) for kind in (CoinbaseProvider, KrakenProvider, BinanceProvider)
    ]
    aggregator = RateAggregator(providers, max_age=timedelta(seconds=30), clock=Clock())
    with pytest.raises(RateUnavailable) as exc_info:
        await aggregator.get_quote("ETH", "USD")
    assert exc_info.value.pair == "ETH-USD"
    assert exc_info.value.providers_tried == ["coinbase", "kraken", "binance"]
    message = str(exc_info.value)
    assert "ETH-USD" in message
    assert all(f"{name}: request failed" in message for name in ("coinbase", "kraken", "binance"))


async def test_a_hanging_provider_does_not_hold_up_the_others(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    serve_all_three(server, cb="2400.00", kr="2402.00", bn="1")
    server.routes[BINANCE_ETH] = Reply(b"", hang=True)
    clock = Clock()
    providers: list[RateProvider] = [
        make(CoinbaseProvider, server.base_url, client, clock),
        make(KrakenProvider, server.base_url, client, clock),
        make(BinanceProvider, server.base_url, client, clock, timeout=0.2),
    ]
    aggregator = RateAggregator(providers, max_age=timedelta(seconds=30), clock=clock)
    result = await aggregator.get_quote("ETH", "USD")
    assert (result.rate, result.source) == (Decimal("2401.00"), "median(coinbase,kraken)")


async def test_the_fallback_is_used_only_when_every_live_provider_fails(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    clock = Clock()
    fixed = FixedRateProvider({"ETH-USD": Decimal("2300.00")}, clock=clock)
    aggregator = RateAggregator(
        [make(CoinbaseProvider, server.base_url, client, clock)],
        max_age=timedelta(seconds=30),
        cache_ttl=timedelta(0),
        fallback=fixed,
        clock=clock,
    )
    server.routes[COINBASE_ETH] = Reply(b"oops", status=503)
    degraded = await aggregator.get_quote("ETH", "USD")
    assert (degraded.rate, degraded.source) == (Decimal("2300.00"), "fallback(fixed)")

    server.routes[COINBASE_ETH] = coinbase("2400.00")
    live = await aggregator.get_quote("ETH", "USD")
    assert (live.rate, live.source) == (Decimal("2400.00"), "median(coinbase)")


async def test_a_failing_fallback_is_named_among_the_providers_tried(client: httpx.AsyncClient) -> None:
    fixed = FixedRateProvider({"BTC-USD": Decimal("48000")})
    aggregator = RateAggregator(
        [make(KrakenProvider, closed_port_url(), client)], max_age=timedelta(seconds=30), fallback=fixed
    )
    with pytest.raises(RateUnavailable) as exc_info:
        await aggregator.get_quote("ETH", "USD")
    assert exc_info.value.providers_tried == ["kraken", "fixed"]


# --- caching ------------------------------------------------------------------------------------


async def test_a_quote_is_served_from_cache_within_the_ttl_and_refetched_after_it(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    serve_all_three(server, cb="2400.00", kr="2400.00", bn="2400.00")
    clock = Clock()
    aggregator = RateAggregator(
        three_providers(server, client, clock),
        max_age=timedelta(seconds=30),
        cache_ttl=timedelta(seconds=10),
        clock=clock,
    )
    await aggregator.get_quote("ETH", "USD")
    clock.advance(timedelta(seconds=9))
    serve_all_three(server, cb="2500.00", kr="2500.00", bn="2500.00")
    cached = await aggregator.get_quote("ETH", "USD")
    assert cached.rate == Decimal("2400.00")
    assert [server.hits[t] for t in (COINBASE_ETH, KRAKEN_ETH, BINANCE_ETH)] == [1, 1, 1]

    clock.advance(timedelta(seconds=1))
    refreshed = await aggregator.get_quote("ETH", "USD")
    assert refreshed.rate == Decimal("2500.00")
    assert refreshed.fetched_at == NOW + timedelta(seconds=10)
    assert [server.hits[t] for t in (COINBASE_ETH, KRAKEN_ETH, BINANCE_ETH)] == [2, 2, 2]


async def test_concurrent_requests_for_one_pair_share_a_single_round_of_provider_calls(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    server.routes[COINBASE_ETH] = coinbase("2400.00")
    clock = Clock()
    aggregator = RateAggregator(
        [make(CoinbaseProvider, server.base_url, client, clock)], max_age=timedelta(seconds=30), clock=clock
    )
    results = await asyncio.gather(*(aggregator.get_quote("ETH", "USD") for _ in range(5)))
    assert {r.rate for r in results} == {Decimal("2400.00")}
    assert server.hits[COINBASE_ETH] == 1


async def test_a_failure_is_not_cached(server: TickerServer, client: httpx.AsyncClient) -> None:
    clock = Clock()
    aggregator = RateAggregator(
        [make(CoinbaseProvider, server.base_url, client, clock)], max_age=timedelta(seconds=30), clock=clock
    )
    with pytest.raises(RateUnavailable):
        await aggregator.get_quote("ETH", "USD")
    server.routes[COINBASE_ETH] = coinbase("2400.00")
    assert (await aggregator.get_quote("ETH", "USD")).rate == Decimal("2400.00")


class BrokenProvider:
    name = "broken"

    async def get_quote(self, base: str, quote: str) -> Quote:
        raise KeyError("a bug in a provider")


class WrongPairProvider:
    name = "confused"

    async def get_quote(self, base: str, quote: str) -> Quote:
        return Quote("BTC", "USD", Decimal("48000"), self.name, NOW)


async def test_a_provider_that_breaks_its_contract_counts_as_a_failure(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    server.routes[COINBASE_ETH] = coinbase("2400.00")
    clock = Clock()
    providers: list[RateProvider] = [
        BrokenProvider(),
        WrongPairProvider(),
        make(CoinbaseProvider, server.base_url, client, clock),
    ]
    aggregator = RateAggregator(providers, max_age=timedelta(seconds=30), clock=clock)
    result = await aggregator.get_quote("ETH", "USD")
    assert (result.rate, result.source) == (Decimal("2400.00"), "median(coinbase)")
