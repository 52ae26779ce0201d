"""Live rate providers against real HTTP servers on loopback, answering in each exchange's format."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

COINBASE_ETH = "/v2/prices/ETH-USD/spot"
KRAKEN_ETH = "/0/public/Ticker?pair=ETHUSD"
BINANCE_ETH = "/api/v3/ticker/price?symbol=ETHUSDT"


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass(frozen=True)
class Reply:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    hang: bool = False


def as_json(payload: object) -> Reply:
    return Reply(json.dumps(payload).encode())


def coinbase(amount: str, base: str = "ETH", currency: str = "USD") -> Reply:
    return as_json({"data": {"amount": amount, "base": base, "currency": currency}})


def kraken(key: str, last: str) -> Reply:
    ticker = {"a": ["1", "1", "1.0"], "b": ["1", "1", "1.0"], "c": [last, "0.5"], "v": ["1", "2"]}
    return as_json({"error": [], "result": {key: ticker}})


def binance(symbol: str, price: str) -> Reply:
    return as_json({"symbol": symbol, "price": price})


class TickerServer:
    """A minimal HTTP/1.1 server: exact request target -> canned reply; counts hits per target."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.hits: Counter[str] = Counter()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.base_url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request_line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            target = request_line.decode().split(" ")[1]
            self.hits[target] += 1
            reply = self.routes.get(target, Reply(b'{"message": "not found"}', status=404))
            if reply.hang:
                await asyncio.Event().wait()  # never answers; cancelled by stop()
            head = (
                f"HTTP/1.1 {reply.status} X\r\nContent-Type: {reply.content_type}\r\n"
                f"Content-Length: {len(reply.body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + reply.body)
            await writer.drain()
        finally:
            self._handlers.discard(task)
            writer.close()
            await writer.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[TickerServer]:
    ticker_server = TickerServer()
    await ticker_server.start()
    yield ticker_server
    await ticker_server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


ProviderType = type[CoinbaseProvider] | type[KrakenProvider] | type[BinanceProvider]


def make(
    kind: ProviderType,
    base_url: str,
    client: httpx.AsyncClient,
    clock: Callable[[], datetime] | None = None,
    timeout: float = 3.0,
) -> CoinbaseProvider | KrakenProvider | BinanceProvider:
    return kind(base_url=base_url, client=client, clock=clock or Clock(), timeout=timeout)


def serve_all_three(server: TickerServer, cb: str, kr: str, bn: str) -> None:
    server.routes[COINBASE_ETH] = coinbase(cb)
    server.routes[KRAKEN_ETH] = kraken("XETHZUSD", kr)
    server.routes[BINANCE_ETH] = binance("ETHUSDT", bn)


def three_providers(
    server: TickerServer, client: httpx.AsyncClient, clock: Callable[[], datetime]
) -> list[RateProvider]:
    return [
        make(kind, server.base_url, client, clock)
        for kind in (CoinbaseProvider, KrakenProvider, BinanceProvider)
    ]


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


def test_rate_unavailable_keeps_its_reason_through_pickling() -> None:
    error = pickle.loads(pickle.dumps(RateUnavailable("ETH-USD", ["kraken"], "HTTP status 500")))
    assert (error.pair, error.providers_tried, error.reason) == ("ETH-USD", ["kraken"], "HTTP status 500")
    assert str(error).endswith(": HTTP status 500")
