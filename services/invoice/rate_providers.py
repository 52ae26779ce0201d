"""Live exchange-rate providers (Coinbase, Kraken, Binance public tickers) and their aggregation.

Every provider turns any failure - network error, timeout, HTTP error status, or a response that
is not exactly the documented shape - into `RateUnavailable(pair, [name], reason)`, so a caller
never sees another exception type from a misbehaving exchange. `RateAggregator` asks all
providers at once, keeps the fresh quotes, takes their median, applies the merchant spread and
caches the result briefly; it never falls back to a stale rate.

Prices are parsed from the exchanges' decimal strings straight into `Decimal`; JSON numbers are
refused (and would be parsed as `Decimal`, never float, anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from typing import Any

import httpx

from services.invoice.pricing import PricingError, parse_decimal
from services.invoice.rates import Quote, RateProvider, RateUnavailable, pair_name

__all__ = [
    "BinanceProvider",
    "CoinbaseProvider",
    "KrakenProvider",
    "RateAggregator",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

DEFAULT_TIMEOUT_SECONDS = 3.0
# A ticker answer is a few hundred bytes; anything far larger is not the documented format.
MAX_RESPONSE_BYTES = 64 * 1024

_BASE_RE = re.compile(r"[A-Z][A-Z0-9]{1,9}", re.ASCII)
_QUOTE_RE = re.compile(r"[A-Z]{3,4}", re.ASCII)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Malformed(Exception):
    """A provider's answer could not be used; the message is the reason (no response content)."""


def _refuse_constant(name: str) -> Any:
    raise _Malformed(f"JSON contains {name}")


def _parse_json(body: bytes) -> Any:
    try:
        # parse_float=Decimal: no float is ever created, even for an unexpected JSON number.
        return json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise _Malformed("response is not valid JSON") from None


def _field(obj: Any, key: str, what: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _Malformed(f"response has no {what}")
    return obj[key]


def _price(value: Any, what: str) -> Decimal:
    # The documented formats carry prices as decimal strings; a JSON number is not the format.
    if not isinstance(value, str):
        raise _Malformed(f"{what} is not a decimal string")
    try:
        price = parse_decimal(value, what)
    except PricingError:
        raise _Malformed(f"{what} is not a plain decimal number") from None
    if not price.is_finite() or price <= 0:
        raise _Malformed(f"{what} is not greater than 0")
    return price


class _HttpTickerProvider:
    """Shared HTTP plumbing: one GET with a hard deadline, a size cap and strict error mapping."""

    name: str = ""
    default_base_url: str = ""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Clock = _utc_now,
    ) -> None:
        """`client` is used as given and left open; without one the provider owns a client, which
        `aclose()` (or `async with`) closes. `timeout` (seconds) bounds the whole request."""
        if timeout <= 0:
            raise ValueError("timeout must be greater than 0")
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._timeout = timeout
        self._clock = clock
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> _HttpTickerProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def get_quote(self, base: str, quote: str) -> Quote:
        base, quote = base.upper(), quote.upper()
        pair = pair_name(base, quote)
        if _BASE_RE.fullmatch(base) is None or _QUOTE_RE.fullmatch(quote) is None:
            raise RateUnavailable(pair, [self.name], "not a valid pair")
        try:
            path, params = self._request(base, quote)
            body = await self._get(path, params)
            rate = self._parse(_parse_json(body), base, quote)
        except _Malformed as exc:
            reason = str(exc)
        except (TimeoutError, httpx.TimeoutException):
            reason = f"no answer within {self._timeout:g} s"
        except (httpx.HTTPError, OSError) as exc:
            reason = f"request failed ({type(exc).__name__})"
        except Exception as exc:
            # Contract: a provider fails with RateUnavailable only, whatever went wrong.
            log.exception("%s: unexpected error quoting %s", self.name, pair)
            reason = f"unexpected error ({type(exc).__name__})"
        else:
            return Quote(base=base, quote=quote, rate=rate, source=self.name, fetched_at=self._clock())
        log.warning("%s: no rate for %s: %s", self.name, pair, reason)
        raise RateUnavailable(pair, [self.name], reason)

    async def _get(self, path: str, params: dict[str, str]) -> bytes:
        # httpx's timeout applies per connect/read/write; asyncio.timeout also caps a server
        # that trickles bytes forever.
        async with asyncio.timeout(self._timeout):
            request = self._client.build_request(
                "GET", f"{self.base_url}{path}", params=params, timeout=self._timeout
            )
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code != 200:
                    raise _Malformed(f"HTTP status {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise _Malformed("response is too large")
                return bytes(body)
            finally:
                await response.aclose()

    def _request(self, base: str, quote: str) -> tuple[str, dict[str, str]]:
        raise NotImplementedError

    def _parse(self, payload: Any, base: str, quote: str) -> Decimal:
        raise NotImplementedError


class CoinbaseProvider(_HttpTickerProvider):
    """`GET /v2/prices/ETH-USD/spot` -> {"data": {"amount": "2400.15", "base": "ETH", "currency": "USD"}}."""

    name = "coinbase"
    default_base_url = "https://api.coinbase.com"

    def _request(self, base: str, quote: str) -> tuple[str, dict[str, str]]:
        return f"/v2/prices/{base}-{quote}/spot", {}

    def _parse(self, payload: Any, base: str, quote: str) -> Decimal:
        data = _field(payload, "data", "data object")
        if _field(data, "base", "data.base") != base:
            raise _Malformed("data.base does not match the requested pair")
        if _field(data, "currency", "data.currency") != quote:
            raise _Malformed("data.currency does not match the requested pair")
        return _price(_field(data, "amount", "data.amount"), "data.amount")


class KrakenProvider(_HttpTickerProvider):
    """`GET /0/public/Ticker?pair=XBTUSD` -> {"error": [], "result": {"XXBTZUSD": {"c": ["48000.1", "0.5"]}}}.

    The rate is the last trade price `c[0]`. Kraken calls BTC "XBT"; its result key adds legacy
    prefixes ("XXBTZUSD", "XETHZEUR"), so the single entry of `result` is taken and only checked
    to name the requested assets.
    """

    name = "kraken"
    default_base_url = "https://api.kraken.com"
    _SYMBOLS = {"BTC": "XBT"}

    def _request(self, base: str, quote: str) -> tuple[str, dict[str, str]]:
        return "/0/public/Ticker", {"pair": self._kraken_pair(base, quote)}

    def _kraken_pair(self, base: str, quote: str) -> str:
        return self._SYMBOLS.get(base, base) + self._SYMBOLS.get(quote, quote)

    def _parse(self, payload: Any, base: str, quote: str) -> Decimal:
        errors = _field(payload, "error", "error list")
        if not isinstance(errors, list):
            raise _Malformed("error is not a list")
        if errors:
            # Kraken's own codes ("EQuery:Unknown asset pair") are short and safe to report.
            shown = "; ".join(str(e)[:80] for e in errors[:3])
            raise _Malformed(f"Kraken error: {shown}")
        result = _field(payload, "result", "result object")
        if not isinstance(result, dict) or len(result) != 1:
            raise _Malformed("result does not hold exactly one pair")
        ((key, ticker),) = result.items()
        kbase = self._SYMBOLS.get(base, base)
        kquote = self._SYMBOLS.get(quote, quote)
        if not isinstance(key, str) or kbase not in key or not key.endswith(kquote):
            raise _Malformed("result pair does not match the requested pair")
        last = _field(ticker, "c", "last trade (c)")
        if not isinstance(last, list) or not last:
            raise _Malformed("last trade (c) is not a non-empty list")
        return _price(last[0], "last trade price")


class BinanceProvider(_HttpTickerProvider):
    """`GET /api/v3/ticker/price?symbol=ETHUSDT` -> {"symbol": "ETHUSDT", "price": "2400.20000000"}.

    Binance has no USD books, so a USD quote is read from the USDT book (USDT is taken at par
    with USD); the returned Quote names the requested USD pair.
    """

    name = "binance"
    default_base_url = "https://api.binance.com"
    _QUOTES = {"USD": "USDT"}

    def _request(self, base: str, quote: str) -> tuple[str, dict[str, str]]:
        return "/api/v3/ticker/price", {"symbol": self._symbol(base, quote)}

    def _symbol(self, base: str, quote: str) -> str:
        return base + self._QUOTES.get(quote, quote)

    def _parse(self, payload: Any, base: str, quote: str) -> Decimal:
        if _field(payload, "symbol", "symbol") != self._symbol(base, quote):
            raise _Malformed("symbol does not match the requested pair")
        return _price(_field(payload, "price", "price"), "price")


def check_spread(spread: object) -> Decimal:
    if not isinstance(spread, Decimal):
        raise TypeError(f"spread_percent must be a Decimal, got {type(spread).__name__}")
    if not spread.is_finite() or not (0 <= spread < 100):
        raise ValueError(f"spread_percent must be at least 0 and less than 100, got {spread}")
    return spread


# Room for parse_decimal's largest values (30 integer + 18 fractional digits) without rounding.
_EXACT = Context(prec=80)


def _median(rates: list[Decimal]) -> Decimal:
    ordered = sorted(rates)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    with localcontext(_EXACT):
        return (ordered[middle - 1] + ordered[middle]) / 2


@dataclass(frozen=True)
class _Cached:
    quote: Quote  # the median before spread, so a per-call spread can reuse it
    stored_at: datetime


class RateAggregator:
    """A RateProvider over several live providers: median of fresh quotes, less the merchant spread.

    - All providers are asked concurrently; failures and quotes older than `max_age` (by their
      `fetched_at` against `clock`) are dropped, and the median of the rest is the mid rate.
    - The aggregate's `fetched_at` is the oldest quote used, so its age is never understated.
    - The mid rate is cached per pair for `cache_ttl` (never beyond `max_age`); concurrent
      requests for one pair share a single round of provider calls. Failures are not cached.
    - `fallback` (e.g. the operator-set fixed provider) is asked only when no live provider gave
      a fresh quote; its quote's source reads "fallback(<source>)" and it is not cached.
    - With nothing fresh: RateUnavailable naming every provider tried; never a stale rate.
    """

    name: str = "aggregate"

    def __init__(
        self,
        providers: Sequence[RateProvider],
        *,
        max_age: timedelta,
        spread_percent: Decimal = Decimal(0),
        cache_ttl: timedelta = timedelta(seconds=10),
        fallback: RateProvider | None = None,
        provider_timeout: timedelta = timedelta(seconds=5),
        clock: Clock = _utc_now,
    ) -> None:
        if not providers and fallback is None:
            raise ValueError("at least one provider is required")
        names = [p.name for p in providers]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique, got {names}")
        if max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        if cache_ttl < timedelta(0):
            raise ValueError("cache_ttl must not be negative")
        if provider_timeout <= timedelta(0):
            raise ValueError("provider_timeout must be positive")
        self._providers = list(providers)
        self._max_age = max_age
        self._spread = check_spread(spread_percent)
        self._cache_ttl = cache_ttl
        self._fallback = fallback
        self._provider_timeout = provider_timeout.total_seconds()
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Task[Quote]] = {}

    async def get_quote(self, base: str, quote: str, *, spread_percent: Decimal | None = None) -> Quote:
        """The rate of 1 `base` in `quote` that the merchant is credited with.

        `spread_percent` overrides the configured spread for this call.
        """
        spread = self._spread if spread_percent is None else check_spread(spread_percent)
        mid = await self._mid_quote(base.upper(), quote.upper())
        if spread == 0:
            return mid
        # Direction: the merchant receives fewer fiat per coin (rate lowered by the spread), so
        # the payer sends slightly more crypto for the same fiat total; the difference covers
        # price movement and conversion costs while the invoice is open.
        with localcontext(_EXACT):
            rate = mid.rate * (1 - spread / 100)
        return Quote(
            base=mid.base,
            quote=mid.quote,
            rate=rate,
            source=f"{mid.source} less {spread}% spread",
            fetched_at=mid.fetched_at,
        )

    async def _mid_quote(self, base: str, quote: str) -> Quote:
        pair = pair_name(base, quote)
        cached = self._cache.get(pair)
        if cached is not None:
            now = self._clock()
            if now - cached.stored_at < self._cache_ttl and now - cached.quote.fetched_at <= self._max_age:
                return cached.quote
            del self._cache[pair]
        task = self._inflight.get(pair)
        if task is None:
            task = asyncio.create_task(self._fetch(base, quote))
            self._inflight[pair] = task
            task.add_done_callback(lambda done: self._forget(pair, done))
        # shield: one caller being cancelled must not cancel the round the others wait on.
        return await asyncio.shield(task)

    def _forget(self, pair: str, task: asyncio.Task[Quote]) -> None:
        if self._inflight.get(pair) is task:
            del self._inflight[pair]
        if not task.cancelled():
            task.exception()  # retrieved here in case every waiter was cancelled

    async def _ask(self, provider: RateProvider, base: str, quote: str) -> Quote:
        async with asyncio.timeout(self._provider_timeout):
            return await provider.get_quote(base, quote)

    def _problem(self, q: Quote, base: str, quote: str, now: datetime) -> str | None:
        if (q.base, q.quote) != (base, quote):
            return f"answered for {q.pair}"
        age = now - q.fetched_at
        if age > self._max_age:
            return f"stale quote ({age.total_seconds():g} s old)"
        return None

    @staticmethod
    def _failure(result: BaseException) -> str:
        if isinstance(result, RateUnavailable):
            return result.reason or "unavailable"
        if isinstance(result, TimeoutError):
            return "timed out"
        if isinstance(result, Exception):
            log.error("rate provider raised %r", result, exc_info=result)
            return f"unexpected error ({type(result).__name__})"
        raise result  # KeyboardInterrupt, SystemExit and the like are not provider failures

    async def _fetch(self, base: str, quote: str) -> Quote:
        pair = pair_name(base, quote)
        results = await asyncio.gather(
            *(self._ask(p, base, quote) for p in self._providers), return_exceptions=True
        )
        now = self._clock()
        fresh: list[tuple[str, Quote]] = []
        failures: list[str] = []
        for provider, result in zip(self._providers, results, strict=True):
            if isinstance(result, Quote):
                problem = self._problem(result, base, quote, now)
                if problem is None:
                    fresh.append((provider.name, result))
                    continue
            else:
                problem = self._failure(result)
            failures.append(f"{provider.name}: {problem}")
        tried = [p.name for p in self._providers]
        if failures:
            log.warning("rates for %s: %s", pair, "; ".join(failures))

        if fresh:
            mid = Quote(
                base=base,
                quote=quote,
                rate=_median([q.rate for _, q in fresh]),
                source=f"median({','.join(name for name, _ in fresh)})",
                fetched_at=min(q.fetched_at for _, q in fresh),
            )
            self._cache[pair] = _Cached(mid, now)
            return mid

        if self._fallback is not None:
            tried.append(self._fallback.name)
            try:
                fallback_quote = await self._ask(self._fallback, base, quote)
            except Exception as exc:
                failures.append(f"{self._fallback.name}: {self._failure(exc)}")
            else:
                problem = self._problem(fallback_quote, base, quote, self._clock())
                if problem is None:
                    log.warning("rates for %s: every live provider failed; using fallback", pair)
                    return Quote(
                        base=base,
                        quote=quote,
                        rate=fallback_quote.rate,
                        source=f"fallback({fallback_quote.source})",
                        fetched_at=fallback_quote.fetched_at,
                    )
                failures.append(f"{self._fallback.name}: {problem}")
        raise RateUnavailable(pair, tried, "; ".join(failures) or None)
