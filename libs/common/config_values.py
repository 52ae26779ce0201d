"""The kinds of value a CHECKOUT_* variable holds, and how each is read and checked.

`Config.from_env` (libs/common/config.py) says which variable sets which setting; this module
says what an integer, a duration, a flag, a rate limit or a shard set looks like, so every
variable of one kind is read the same way and a malformed one is a `ConfigError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

RATE_PROVIDERS = ("coinbase", "kraken", "binance", "fixed")
_RATE = re.compile(r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$")


class ConfigError(ValueError):
    """A variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class EnvReader:
    """One environment's variables, each read as its kind; unset or blank: the default."""

    env: Mapping[str, str]

    def text(self, name: str, default: str) -> str:
        return self.env.get(name, "").strip() or default

    def items(self, name: str) -> tuple[str, ...]:
        """A comma-separated list (blank items dropped)."""
        return split_list(self.text(name, ""))

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.text(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name, "true" if default else "false").lower()
        if raw not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{name} must be true or false, got {raw!r}")
        return raw in ("true", "1", "yes")

    def seconds(self, name: str, default: float) -> float:
        raw = self.text(name, str(default))
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
        if not value.is_finite() or value <= 0:
            raise ConfigError(f"{name} must be positive, got {raw!r}")
        return float(value)  # a duration, not money

    def url(self, name: str) -> str:
        return parse_http_url(self.text(name, ""), name)

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        raw = self.text(name, default).lower()
        if raw not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}, got {raw!r}")
        return raw

    def rate(self, name: str, default: str) -> str:
        raw = self.text(name, default)
        if not _RATE.match(raw):
            raise ConfigError(
                f"{name} must be like 600/minute (per second, minute, hour or day), got {raw!r}"
            )
        return raw


def split_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_rate_providers(raw: str) -> tuple[str, ...]:
    """`"coinbase,kraken,fixed"`: live providers (their median is used), then `fixed` as the
    fallback when none of them answers; `fixed` alone uses the configured table only."""
    name = "CHECKOUT_RATE_PROVIDERS"
    providers = tuple(p.strip().lower() for p in raw.split(","))
    if not all(providers):
        raise ConfigError(f"{name} must be a comma-separated list of {', '.join(RATE_PROVIDERS)}")
    unknown = [p for p in providers if p not in RATE_PROVIDERS]
    if unknown:
        raise ConfigError(f"{name}: unknown provider {unknown[0]!r}; known: {', '.join(RATE_PROVIDERS)}")
    if len(set(providers)) != len(providers):
        raise ConfigError(f"{name} names a provider more than once")
    if "fixed" in providers[:-1]:
        raise ConfigError(f"{name}: fixed is the fallback after the live providers, so it must come last")
    return providers


def parse_http_url(raw: str, name: str) -> str:
    """An http(s) base URL without a trailing slash, or "" when unset."""
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be an http(s) base URL, got {raw!r}")
    return raw.rstrip("/")


def parse_shard_set(raw: str, name: str) -> frozenset[int]:
    """`"0,2-3"` -> {0, 2, 3}."""
    shards: set[int] = set()
    for part in split_list(raw):
        try:
            low, _, high = part.partition("-")
            shards.update(range(int(low), int(high or low) + 1))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not a shard number or range") from None
    return frozenset(shards)


def parse_addresses(raw: str, name: str) -> tuple[str, ...]:
    """`host:port[,host:port...]`."""
    addresses = split_list(raw)
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{name}: {address!r} needs host:port")
    return addresses
