"""A loopback exchange: an HTTP server answering in Coinbase's, Kraken's and Binance's ticker
formats, the replies a test gives it, a clock a test moves, and providers pointed at it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from services.invoice.rate_providers import BinanceProvider, CoinbaseProvider, KrakenProvider
from services.invoice.rates import RateProvider

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
