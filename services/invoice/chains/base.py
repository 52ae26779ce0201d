"""What every chain watcher shares: the transfers it reports and the ledger it reports them to.

A watcher knows a chain (EVM JSON-RPC, Bitcoin Esplora); the ledger knows invoices. The watcher
asks the ledger which addresses to watch, reports what it sees (`record`), takes back what the
chain no longer holds (`retract`) and tells it the tip so confirmations are counted
(`update_confirmations`). Every ledger call is idempotent: a watcher that restarts and reports a
block again changes nothing, so "resume from the last durable position" never double-counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# The payment key's output index for an EVM transaction's own value (ETH sent with the
# transaction). ERC-20 transfers use their log index (>= 0), Bitcoin its vout (>= 0).
NATIVE_VALUE_INDEX = -1


@dataclass(frozen=True)
class PaymentKey:
    """What makes a payment unique on its network: a transaction and which part of it paid."""

    tx_hash: str
    output_index: int


@dataclass(frozen=True)
class Transfer:
    """Value seen on chain arriving at a watched address."""

    network: str  # the configured network name ("ethereum", "bitcoin", ...)
    key: PaymentKey
    to_address: str  # as the invoice stores it (EVM: EIP-55 checksummed; BTC: bech32 lower case)
    from_address: str | None
    asset: str  # "ETH", "USDC", "BTC": must be the invoice's crypto_currency to count
    amount_units: int  # base units (wei, token units, sats)
    block_number: int | None  # None while unconfirmed (mempool)
    block_hash: str | None
    # The block's timestamp (unix seconds), when known: decides whether a payment was on time.
    block_time: int | None = None


@dataclass(frozen=True)
class WatchedAddress:
    address: str
    invoice_id: uuid.UUID
    asset: str


@dataclass(frozen=True)
class OpenPayment:
    """A payment the ledger still follows (detected or confirming) on a network."""

    key: PaymentKey
    invoice_id: uuid.UUID
    to_address: str
    block_number: int | None
    block_hash: str | None


class Ledger(Protocol):
    async def watched(self, network: str) -> Mapping[str, WatchedAddress]:
        """Addresses to watch on `network`, keyed by address (EVM keys lower-cased)."""
        ...

    async def open_payments(self, network: str) -> Sequence[OpenPayment]:
        """Payments on `network` not yet confirmed, reorged or failed."""
        ...

    async def record(self, transfers: Sequence[Transfer], tip: int) -> None:
        """New sightings, or a known payment seen again (e.g. mined after the mempool)."""
        ...

    async def retract(self, network: str, keys: Sequence[PaymentKey], reason: str) -> None:
        """Payments the chain no longer holds (reorged away, dropped from the mempool)."""
        ...

    async def update_confirmations(self, network: str, tip: int) -> None:
        """Recount confirmations of open payments against the tip height."""
        ...
