"""The values an Invoice's commands take from outside it: the rate the application locked, the
address it allocated, and a transfer a watcher saw. Plain frozen values, so the aggregate
decides with no I/O of its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class LockedRate:
    rate: Decimal
    source: str
    fetched_at: dt.datetime
    pair: str


@dataclass(frozen=True)
class PaymentTarget:
    network: str
    address_index: int
    address: str
    uri: str


@dataclass(frozen=True)
class Sighting:
    """A transfer to the invoice's address as a watcher saw it (amount in the asset's units)."""

    network: str
    tx_hash: str
    output_index: int
    asset: str
    amount: Decimal
    from_address: str
    to_address: str
    block_number: int | None
    block_hash: str
    confirmations: int
    required_confirmations: int
    mined_at: dt.datetime | None = None  # the block's time; None while unconfirmed
