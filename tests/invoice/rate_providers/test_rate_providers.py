"""Each live rate provider against a loopback exchange answering in its format: parsing, and
every malformed, slow or refused answer as a provider failure (never a crash)."""

from __future__ import annotations

import pickle
from decimal import Decimal

import httpx
import pytest

from services.invoice.rate_providers import (
    BinanceProvider,
    CoinbaseProvider,
    KrakenProvider,
)
from services.invoice.rates import Quote, RateUnavailable
from tests.invoice.rate_providers.ticker import (
    BINANCE_ETH,
    COINBASE_ETH,
    KRAKEN_ETH,
    NOW,
    ProviderType,
    Reply,
    TickerServer,
    as_json,
    binance,
    closed_port_url,
    coinbase,
    kraken,
    make,
)

# --- each provider parses its exchange's format ------------------------------------------------


async def test_coinbase_spot_price_is_parsed_into_a_decimal_quote(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    server.routes[COINBASE_ETH] = coinbase("2400.15")
    result = await make(CoinbaseProvider, server.base_url, client).get_quote("eth", "usd")
    assert result == Quote("ETH", "USD", Decimal("2400.15"), "coinbase", NOW)
    assert type(result.rate) is Decimal


async def test_kraken_asks_for_xbt_and_reads_the_last_trade_of_the_single_result_entry(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    server.routes["/0/public/Ticker?pair=XBTUSD"] = kraken("XXBTZUSD", "48000.10000")
    result = await make(KrakenProvider, server.base_url, client).get_quote("BTC", "USD")
    assert result == Quote("BTC", "USD", Decimal("48000.10000"), "kraken", NOW)
    assert type(result.rate) is Decimal
    assert server.hits["/0/public/Ticker?pair=XBTUSD"] == 1


async def test_binance_reads_usd_from_the_usdt_book(server: TickerServer, client: httpx.AsyncClient) -> None:
    server.routes[BINANCE_ETH] = binance("ETHUSDT", "2400.20000000")
    result = await make(BinanceProvider, server.base_url, client).get_quote("ETH", "USD")
    assert result == Quote("ETH", "USD", Decimal("2400.20000000"), "binance", NOW)
    assert type(result.rate) is Decimal


async def test_binance_keeps_non_usd_quotes_as_they_are(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    server.routes["/api/v3/ticker/price?symbol=ETHEUR"] = binance("ETHEUR", "2200.5")
    result = await make(BinanceProvider, server.base_url, client).get_quote("ETH", "EUR")
    assert result.rate == Decimal("2200.5")


async def test_a_provider_without_an_injected_client_owns_and_closes_its_own(server: TickerServer) -> None:
    server.routes[COINBASE_ETH] = coinbase("2400.15")
    async with CoinbaseProvider(base_url=server.base_url) as provider:
        assert (await provider.get_quote("ETH", "USD")).rate == Decimal("2400.15")


# --- malformed answers are provider failures ----------------------------------------------------

MALFORMED: list[tuple[ProviderType, str, Reply, str]] = [
    (CoinbaseProvider, COINBASE_ETH, Reply(b"<html>Bad gateway</html>", content_type="text/html"), "JSON"),
    (CoinbaseProvider, COINBASE_ETH, as_json({"data": {}}), "data.base"),
    (CoinbaseProvider, COINBASE_ETH, as_json([1, 2]), "data object"),
    (CoinbaseProvider, COINBASE_ETH, coinbase("-2400.15"), "greater than 0"),
    (CoinbaseProvider, COINBASE_ETH, coinbase("0"), "greater than 0"),
    (CoinbaseProvider, COINBASE_ETH, coinbase("NaN"), "plain decimal"),
    (CoinbaseProvider, COINBASE_ETH, coinbase("1e400"), "plain decimal"),
    (CoinbaseProvider, COINBASE_ETH, coinbase("2400.15", base="BTC"), "data.base"),
    (CoinbaseProvider, COINBASE_ETH, coinbase("2400.15", currency="EUR"), "data.currency"),
    (
        CoinbaseProvider,
        COINBASE_ETH,
        Reply(b'{"data": {"amount": 2400.15, "base": "ETH", "currency": "USD"}}'),
        "decimal string",
    ),
    (CoinbaseProvider, COINBASE_ETH, Reply(b'{"data": NaN}'), "NaN"),
    (CoinbaseProvider, COINBASE_ETH, Reply(b"[" * 20_000), "JSON"),
    (CoinbaseProvider, COINBASE_ETH, Reply(b"x" * 100_000), "too large"),
    (CoinbaseProvider, COINBASE_ETH, Reply(b'{"errors": []}', status=500), "HTTP status 500"),
    (
        KrakenProvider,
        KRAKEN_ETH,
        as_json({"error": ["EQuery:Unknown asset pair"]}),
        "EQuery:Unknown asset pair",
    ),
    (KrakenProvider, KRAKEN_ETH, as_json({"error": [], "result": {}}), "exactly one"),
    (KrakenProvider, KRAKEN_ETH, kraken("XXBTZUSD", "48000.1"), "does not match"),
    (KrakenProvider, KRAKEN_ETH, as_json({"error": [], "result": {"XETHZUSD": {"c": []}}}), "non-empty"),
    (KrakenProvider, KRAKEN_ETH, kraken("XETHZUSD", "-1"), "greater than 0"),
    (BinanceProvider, BINANCE_ETH, binance("BTCUSDT", "48000.0"), "symbol"),
    (BinanceProvider, BINANCE_ETH, as_json({"symbol": "ETHUSDT"}), "no price"),
    (BinanceProvider, BINANCE_ETH, Reply(b'{"code": -1003}', status=429), "HTTP status 429"),
]


@pytest.mark.parametrize(("kind", "target", "reply", "reason"), MALFORMED)
async def test_a_malformed_answer_is_a_provider_failure_not_a_crash(
    server: TickerServer,
    client: httpx.AsyncClient,
    kind: ProviderType,
    target: str,
    reply: Reply,
    reason: str,
) -> None:
    server.routes[target] = reply
    provider = make(kind, server.base_url, client)
    with pytest.raises(RateUnavailable) as exc_info:
        await provider.get_quote("ETH", "USD")
    assert exc_info.value.pair == "ETH-USD"
    assert exc_info.value.providers_tried == [provider.name]
    assert reason in str(exc_info.value)
    assert server.hits[target] == 1


async def test_a_server_that_never_answers_times_out_as_a_provider_failure(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    server.routes[COINBASE_ETH] = Reply(b"", hang=True)
    provider = make(CoinbaseProvider, server.base_url, client, timeout=0.2)
    with pytest.raises(RateUnavailable, match=r"no answer within 0\.2 s") as exc_info:
        await provider.get_quote("ETH", "USD")
    assert exc_info.value.providers_tried == ["coinbase"]


async def test_a_refused_connection_is_a_provider_failure(client: httpx.AsyncClient) -> None:
    with pytest.raises(RateUnavailable, match="request failed"):
        await make(BinanceProvider, closed_port_url(), client).get_quote("ETH", "USD")


async def test_an_invalid_pair_is_refused_without_a_request(
    server: TickerServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(RateUnavailable, match="not a valid pair"):
        await make(CoinbaseProvider, server.base_url, client).get_quote("ETH/../x", "USD")
    assert not server.hits


def test_rate_unavailable_keeps_its_reason_through_pickling() -> None:
    error = pickle.loads(pickle.dumps(RateUnavailable("ETH-USD", ["kraken"], "HTTP status 500")))
    assert (error.pair, error.providers_tried, error.reason) == ("ETH-USD", ["kraken"], "HTTP status 500")
    assert str(error).endswith(": HTTP status 500")
