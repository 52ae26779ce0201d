"""The deployment's exchange-rate source, built from configuration.

`CHECKOUT_RATE_PROVIDERS` lists the providers in order: the live ones (coinbase, kraken,
binance) are asked together and their fresh quotes' median is used; `fixed` (the
`CHECKOUT_FIXED_RATES` table), when listed, comes last and is the fallback used only when no live
provider gives a fresh quote. `fixed` alone - the default - never reaches the internet.

The merchant's spread is applied per call (`get_quote(..., spread_percent=...)`), so one
provider, with one cache of mid rates, serves every merchant.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from typing import Protocol

import httpx

from libs.common.config import Config, ConfigError
from services.invoice.rate_providers import (
    BinanceProvider,
    CoinbaseProvider,
    KrakenProvider,
    RateAggregator,
    check_spread,
)
from services.invoice.rates import DEFAULT_FIXED_RATES, FixedRateProvider, Quote, RateProvider

__all__ = ["ConfiguredRates", "SpreadRateProvider", "rate_provider_from_config"]

Clock = Callable[[], datetime]
_LIVE = {"coinbase": CoinbaseProvider, "kraken": KrakenProvider, "binance": BinanceProvider}
# Same precision as RateAggregator's spread arithmetic: exact for any rate parse_decimal accepts.
_EXACT = Context(prec=80)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SpreadRateProvider(Protocol):
    """A RateProvider that also takes the merchant's spread (percent, Decimal) per call."""

    name: str

    async def get_quote(self, base: str, quote: str, *, spread_percent: Decimal | None = None) -> Quote: ...


class ConfiguredRates:
    """What `rate_provider_from_config` builds: a RateProvider (and SpreadRateProvider) owning the
    HTTP client its live providers share; `aclose()` it at shutdown."""

    name = "configured"

    def __init__(
        self,
        source: RateAggregator | FixedRateProvider,
        providers: tuple[str, ...],
        client: httpx.AsyncClient | None,
    ) -> None:
        self._source = source
        self.providers = providers  # as configured, in order
        self._client = client  # owned; None when there is nothing to close

    async def get_quote(self, base: str, quote: str, *, spread_percent: Decimal | None = None) -> Quote:
        """The rate of 1 `base` in `quote` credited to the merchant: the mid rate less
        `spread_percent` (default 0). Raises RateUnavailable naming the pair and providers tried."""
        spread = Decimal(0) if spread_percent is None else check_spread(spread_percent)
        if isinstance(self._source, RateAggregator):
            return await self._source.get_quote(base, quote, spread_percent=spread)
        mid = await self._source.get_quote(base, quote)
        if spread == 0:
            return mid
        # The same direction as RateAggregator: fewer fiat per coin, so the payer sends a little
        # more crypto for the same fiat total.
        with localcontext(_EXACT):
            rate = mid.rate * (1 - spread / 100)
        return Quote(mid.base, mid.quote, rate, f"{mid.source} less {spread}% spread", mid.fetched_at)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def __aenter__(self) -> ConfiguredRates:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _fixed(config: Config, clock: Clock) -> FixedRateProvider:
    try:
        return FixedRateProvider.from_env_value(config.fixed_rates or DEFAULT_FIXED_RATES, clock=clock)
    except ValueError as error:
        raise ConfigError(f"CHECKOUT_FIXED_RATES: {error}") from None


def rate_provider_from_config(
    config: Config,
    *,
    client: httpx.AsyncClient | None = None,
    clock: Clock = _utc_now,
) -> ConfiguredRates:
    """The providers `config.rate_providers` names, aggregated. `client` (used as given and left
    open) is for tests; without one, the live providers share a client that `aclose()` closes.
    Raises ConfigError for a bad `CHECKOUT_FIXED_RATES`."""
    names = config.rate_providers
    fixed = _fixed(config, clock) if "fixed" in names else None
    live_names = [n for n in names if n != "fixed"]
    if not live_names:
        if fixed is None:
            raise ConfigError("CHECKOUT_RATE_PROVIDERS names no provider")
        return ConfiguredRates(fixed, names, None)

    owned = httpx.AsyncClient() if client is None else None
    http = client or owned
    assert http is not None
    urls = {
        "coinbase": config.rate_coinbase_url,
        "kraken": config.rate_kraken_url,
        "binance": config.rate_binance_url,
    }
    live: list[RateProvider] = [
        _LIVE[n](base_url=urls[n] or None, client=http, timeout=config.rate_timeout_seconds, clock=clock)
        for n in live_names
    ]
    aggregator = RateAggregator(
        live,
        max_age=timedelta(seconds=config.rate_max_age_seconds),
        cache_ttl=timedelta(seconds=config.rate_cache_seconds),
        fallback=fixed,
        # The providers enforce the configured timeout themselves; this only backs them up.
        provider_timeout=timedelta(seconds=config.rate_timeout_seconds + 1),
        clock=clock,
    )
    return ConfiguredRates(aggregator, names, owned)
