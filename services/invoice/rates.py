"""Exchange-rate quotes for pricing invoices in crypto.

A rate is the price of 1 unit of the crypto `base` in the fiat `quote` (ETH-USD = 2400.00).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from services.invoice.pricing import PricingError, parse_decimal

__all__ = [
    "DEFAULT_FIXED_RATES",
    "FixedRateProvider",
    "Quote",
    "RateProvider",
    "RateUnavailable",
    "pair_name",
]

DEFAULT_FIXED_RATES = (
    "ETH-USD=2400.00,BTC-USD=48000.00,USDC-USD=1.00,ETH-EUR=2200.00,BTC-EUR=44000.00,USDC-EUR=0.92"
)

# BASE-QUOTE: a crypto symbol (letters/digits, e.g. USDC) and an ISO 4217 fiat code.
_PAIR_RE = re.compile(r"(?P<base>[A-Z][A-Z0-9]{1,9})-(?P<quote>[A-Z]{3})", re.ASCII)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def pair_name(base: str, quote: str) -> str:
    return f"{base}-{quote}"


def _check_rate(rate: object, what: str) -> None:
    if not isinstance(rate, Decimal):
        # Floats included: 0.92 as a float is 0.92000000000000003996...
        raise TypeError(f"{what} must be a Decimal, got {type(rate).__name__}")
    if not rate.is_finite() or rate <= 0:
        raise ValueError(f"{what} must be a finite number greater than 0, got {rate}")


@dataclass(frozen=True)
class Quote:
    base: str
    quote: str
    rate: Decimal
    source: str
    fetched_at: datetime

    def __post_init__(self) -> None:
        _check_rate(self.rate, "Quote.rate")
        # A naive timestamp cannot be compared with others safely when judging staleness.
        if self.fetched_at.tzinfo is None or self.fetched_at.utcoffset() is None:
            raise ValueError("Quote.fetched_at must be timezone-aware")

    @property
    def pair(self) -> str:
        return pair_name(self.base, self.quote)


class RateUnavailable(Exception):
    """No provider could quote `pair`."""

    def __init__(self, pair: str, providers_tried: list[str], reason: str | None = None) -> None:
        tried = ", ".join(providers_tried) if providers_tried else "none"
        message = f"no exchange rate available for {pair} (providers tried: {tried})"
        if reason:
            message = f"{message}: {reason}"
        super().__init__(message)
        self.pair = pair
        self.providers_tried = list(providers_tried)
        self.reason = reason

    def __reduce__(self) -> tuple[type[RateUnavailable], tuple[str, list[str], str | None]]:
        # The default reduce replays the message into __init__, which takes other arguments.
        return (type(self), (self.pair, self.providers_tried, self.reason))


class RateProvider(Protocol):
    name: str

    async def get_quote(self, base: str, quote: str) -> Quote:
        """Rate of 1 `base` in `quote`; raises RateUnavailable when it has none."""
        ...


class FixedRateProvider:
    """Rates from configuration: for development, tests, and as an operator-set fallback."""

    name: str = "fixed"

    def __init__(
        self,
        rates: Mapping[str, Decimal],
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """`rates` maps "BASE-QUOTE" (e.g. "ETH-USD") to the price of 1 BASE in QUOTE."""
        checked: dict[str, Decimal] = {}
        for pair, rate in rates.items():
            if _PAIR_RE.fullmatch(pair) is None:
                raise ValueError(f"invalid pair {pair!r}: expected BASE-QUOTE such as ETH-USD")
            # Checked here so a bad table fails at startup rather than on the first invoice.
            _check_rate(rate, pair)
            checked[pair] = rate
        self._rates = checked
        self._clock = clock

    @classmethod
    def from_env_value(
        cls,
        s: str,
        clock: Callable[[], datetime] = _utc_now,
    ) -> FixedRateProvider:
        """Parse "ETH-USD=2400.00,BTC-USD=48000" (whitespace around entries is ignored)."""
        if not isinstance(s, str):
            raise TypeError(f"expected a string, got {type(s).__name__}")
        if not s.strip():
            raise ValueError("no rates given: expected entries like ETH-USD=2400.00")
        rates: dict[str, Decimal] = {}
        for position, raw in enumerate(s.split(","), start=1):
            entry = raw.strip()
            pair, sep, rate_text = entry.partition("=")
            pair = pair.strip().upper()
            rate_text = rate_text.strip()
            where = f"rate entry {position} {entry!r}"
            if not sep:
                raise ValueError(f"invalid {where}: expected BASE-QUOTE=RATE such as ETH-USD=2400.00")
            if _PAIR_RE.fullmatch(pair) is None:
                raise ValueError(f"invalid {where}: pair must look like ETH-USD")
            try:
                rate = parse_decimal(rate_text, pair)
            except PricingError as exc:
                raise ValueError(f"invalid {where}: rate {exc.reason}") from None
            if rate <= 0:
                raise ValueError(f"invalid {where}: rate must be greater than 0")
            if pair in rates:
                raise ValueError(f"invalid {where}: {pair} is given more than once")
            rates[pair] = rate
        return cls(rates, clock=clock)

    async def get_quote(self, base: str, quote: str) -> Quote:
        # Symbols are upper case everywhere else (CRYPTO, FIAT_MINOR_UNITS); accept any case here.
        base, quote = base.upper(), quote.upper()
        pair = pair_name(base, quote)
        rate = self._rates.get(pair)
        if rate is None:
            raise RateUnavailable(pair, [self.name])
        return Quote(base=base, quote=quote, rate=rate, source="fixed", fetched_at=self._clock())
