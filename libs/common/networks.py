"""Blockchain networks a deployment watches: the seed's `system_configuration.blockchain_networks`.

Read from `CHECKOUT_NETWORKS`, a JSON object (or `@path` to a JSON file) keyed by network name:

    {"ethereum": {"kind": "evm", "node_url": "http://127.0.0.1:8545", "chain_id": 1337,
                  "confirmations": 3, "poll_seconds": 1,
                  "tokens": [{"symbol": "USDC", "contract": "0x…", "decimals": 6}]},
     "bitcoin":  {"kind": "bitcoin", "node_url": "http://127.0.0.1:3002",
                  "confirmations": 2, "poll_seconds": 5}}

`node_url` is an EVM JSON-RPC endpoint or an Esplora REST base URL. A network that is not
configured is not watched: invoices can still be created for it, and stay `pending`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

KINDS = {"ethereum": "evm", "bitcoin": "bitcoin"}
_CONTRACT_RE = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_SYMBOL_RE = re.compile(r"[A-Z][A-Z0-9]{1,9}", re.ASCII)


class NetworkConfigError(ValueError):
    """CHECKOUT_NETWORKS is malformed; the message says where."""


@dataclass(frozen=True)
class Token:
    symbol: str
    contract: str  # as configured (checksummed or lower case)
    decimals: int


@dataclass(frozen=True)
class NetworkConfig:
    name: str  # "ethereum" or "bitcoin": the invoice's network
    kind: Literal["evm", "bitcoin"]
    node_url: str
    chain_id: int | None = None
    confirmations: int = 1
    poll_seconds: float = 5.0
    tokens: tuple[Token, ...] = ()
    # Where a watcher with no saved position starts; None = the tip when it first runs.
    start_block: int | None = None
    # How far back a payment to an expired invoice is still watched (recorded as paid late).
    late_window_seconds: int = 86_400
    extra: Mapping[str, Any] = field(default_factory=dict)

    def token(self, symbol: str) -> Token | None:
        return next((t for t in self.tokens if t.symbol == symbol), None)


def _int(obj: Mapping[str, Any], key: str, where: str, default: int | None, minimum: int) -> int | None:
    value = obj.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NetworkConfigError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _network(name: str, obj: Any) -> NetworkConfig:
    where = f"CHECKOUT_NETWORKS.{name}"
    if name not in KINDS:
        raise NetworkConfigError(f"{where}: unknown network; known: {', '.join(KINDS)}")
    if not isinstance(obj, dict):
        raise NetworkConfigError(f"{where} must be an object")
    kind = obj.get("kind", KINDS[name])
    if kind != KINDS[name]:
        raise NetworkConfigError(f"{where}.kind must be {KINDS[name]!r}")
    url = obj.get("node_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise NetworkConfigError(f"{where}.node_url must be an http(s) URL")
    try:
        poll = Decimal(str(obj.get("poll_seconds", 5)))
    except InvalidOperation:
        poll = Decimal(0)
    if not poll.is_finite() or poll <= 0:
        raise NetworkConfigError(f"{where}.poll_seconds must be a positive number")
    tokens = []
    raw_tokens = obj.get("tokens", [])
    if not isinstance(raw_tokens, list) or (raw_tokens and kind != "evm"):
        raise NetworkConfigError(f"{where}.tokens must be a list (EVM networks only)")
    for n, t in enumerate(raw_tokens):
        tw = f"{where}.tokens[{n}]"
        if not isinstance(t, dict):
            raise NetworkConfigError(f"{tw} must be an object")
        symbol, contract = t.get("symbol"), t.get("contract")
        if not isinstance(symbol, str) or not _SYMBOL_RE.fullmatch(symbol):
            raise NetworkConfigError(f"{tw}.symbol must be an upper-case ticker")
        if not isinstance(contract, str) or not _CONTRACT_RE.fullmatch(contract):
            raise NetworkConfigError(f"{tw}.contract must be a 0x-prefixed 20-byte address")
        decimals = _int(t, "decimals", tw, None, 0)
        if decimals is None or decimals > 18:
            raise NetworkConfigError(f"{tw}.decimals must be an integer between 0 and 18")
        tokens.append(Token(symbol, contract, decimals))
    chain_id = _int(obj, "chain_id", where, None, 1)
    if kind == "evm" and chain_id is None:
        raise NetworkConfigError(f"{where}.chain_id is required for an EVM network")
    confirmations = _int(obj, "confirmations", where, 1, 1)
    late = _int(obj, "late_window_seconds", where, 86_400, 0)
    assert confirmations is not None and late is not None
    return NetworkConfig(
        name=name,
        kind=kind,
        node_url=url.rstrip("/"),
        chain_id=chain_id,
        confirmations=confirmations,
        poll_seconds=float(poll),  # a duration, not money
        tokens=tuple(tokens),
        start_block=_int(obj, "start_block", where, None, 0),
        late_window_seconds=late,
    )


def parse_networks(raw: str) -> tuple[NetworkConfig, ...]:
    """`CHECKOUT_NETWORKS`: inline JSON, `@path` to a JSON file, or empty (no watchers)."""
    raw = raw.strip()
    if not raw:
        return ()
    if raw.startswith("@"):
        try:
            raw = Path(raw[1:]).read_text()
        except OSError as error:
            raise NetworkConfigError(f"CHECKOUT_NETWORKS: cannot read {raw[1:]}: {error}") from None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as error:
        raise NetworkConfigError(f"CHECKOUT_NETWORKS is not valid JSON: {error}") from None
    if not isinstance(obj, dict):
        raise NetworkConfigError("CHECKOUT_NETWORKS must be a JSON object keyed by network name")
    return tuple(_network(name, value) for name, value in obj.items())
