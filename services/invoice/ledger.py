"""The invoice side of the chain watchers: what to watch, and what a sighting does to an invoice.

Implements chains.base.Ledger over the shards this process serves. Every change goes through the
Invoice aggregate (services/invoice/domain.py), so a payment is recorded once per (tx, output)
however often a watcher reports it, and every step lands in the audit trail as `system:watcher`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from libs.common import ids
from libs.common.eventstore import utcnow
from libs.common.service import Runtime
from services.invoice import repository
from services.invoice.application import InvoiceApp
from services.invoice.chains.base import OpenPayment, PaymentKey, Transfer, WatchedAddress
from services.invoice.domain import Invoice
from services.invoice.inputs import Sighting
from services.invoice.pricing import CRYPTO

log = logging.getLogger("checkout.invoice.ledger")

WATCHER = "system:watcher"
EXPIRY = "system:expiry"
DEFAULT_LATE_WINDOW_SECONDS = 86_400
# A watcher polls every second or so; the whole set it follows (a day of invoices, thousands of
# rows on a large shard) is read again this often, and in between only the invoices added since.
FULL_READ_SECONDS = 60.0
# An invoice's id is minted a moment before it commits (the rate lookup, the transaction): each
# poll reads back this far, and one that took longer is found by the next full read.
NEW_INVOICE_LOOKBACK = dt.timedelta(minutes=2)


@dataclass
class _WatchSet:
    addresses: dict[str, WatchedAddress]
    read_at: float  # monotonic: when the whole set was last read
    polled_at: dt.datetime  # wall clock (ids carry it): when the last poll started


def _units_to_amount(units: int, asset: str) -> Decimal:
    return Decimal(units).scaleb(-CRYPTO[asset].decimals)


class InvoiceLedger:
    def __init__(self, runtime: Runtime, app: InvoiceApp) -> None:
        self.rt = runtime
        self.app = app
        # What `watched` follows per network, kept between polls; `record` also finds the
        # invoice of an address here without a query per transfer.
        self._watching: dict[str, _WatchSet] = {}

    def _required(self, network: str) -> int:
        config = self.rt.config.network(network)
        return config.confirmations if config else 1

    async def watched(self, network: str) -> Mapping[str, WatchedAddress]:
        """Open invoices on `network`, those closed within its late window, and the addresses of
        claimed refunds. Invoices are read whole every FULL_READ_SECONDS (which also lets go of
        those whose window has passed); in between, each poll adds only the invoices minted since
        the one before, from the primary key."""
        config = self.rt.config.network(network)
        late = config.late_window_seconds if config else DEFAULT_LATE_WINDOW_SECONDS
        polled_at = utcnow()
        watch = self._watching.get(network)
        if watch is None or time.monotonic() - watch.read_at >= FULL_READ_SECONDS:
            watch = _WatchSet({}, time.monotonic(), polled_at)
            for _, pool in self.rt.pools.items():
                self._add(watch, await repository.watched_invoices(pool, network, late))
            self._watching[network] = watch
        else:
            since = ids.first_id_at(watch.polled_at - NEW_INVOICE_LOOKBACK)
            for _, pool in self.rt.pools.items():
                self._add(watch, await repository.invoices_minted_since(pool, network, since))
            watch.polled_at = polled_at
        # Addresses payers claimed refunds to, every poll: few, and a claim is watched at once.
        # A transfer to one goes to its invoice, whose aggregate completes the refund.
        for _, pool in self.rt.pools.items():
            for row in await repository.claimed_refunds(pool, network):
                watch.addresses[row["address"].lower()] = WatchedAddress(
                    row["address"], row["invoice_id"], row["crypto_currency"]
                )
        return dict(watch.addresses)

    @staticmethod
    def _add(watch: _WatchSet, rows: Sequence[asyncpg.Record]) -> None:
        # In id order: two merchants who gave the same xpub get the same addresses, and the
        # newest invoice wins.
        for row in rows:
            watch.addresses[row["payment_address"].lower()] = WatchedAddress(
                row["payment_address"], row["id"], row["crypto_currency"]
            )

    async def _invoice_of(self, network: str, address: str) -> uuid.UUID | None:
        watch = self._watching.get(network)
        known = watch.addresses.get(address.lower()) if watch else None
        if known:
            return known.invoice_id
        for _, pool in self.rt.pools.items():
            invoice_id = await repository.invoice_at_address(pool, network, address)
            if invoice_id is not None:
                return invoice_id
        return None

    async def open_payments(self, network: str) -> Sequence[OpenPayment]:
        found: list[OpenPayment] = []
        for _, pool in self.rt.pools.items():
            rows = await repository.open_payments(pool, network)
            found.extend(
                OpenPayment(
                    PaymentKey(r["tx_hash"], r["output_index"]),
                    r["invoice_id"],
                    r["to_address"],
                    r["block_number"],
                    r["block_hash"],
                )
                for r in rows
            )
        return found

    async def record(self, transfers: Sequence[Transfer], tip: int) -> None:
        by_invoice: dict[uuid.UUID, list[Sighting]] = defaultdict(list)
        for transfer in transfers:
            invoice_id = await self._invoice_of(transfer.network, transfer.to_address)
            if invoice_id is None or transfer.asset not in CRYPTO:
                log.warning(
                    "no invoice for %s %s to %s (tx %s): ignored",
                    transfer.network,
                    transfer.asset,
                    transfer.to_address,
                    transfer.key.tx_hash,
                )
                continue
            block = transfer.block_number
            by_invoice[invoice_id].append(
                Sighting(
                    network=transfer.network,
                    tx_hash=transfer.key.tx_hash,
                    output_index=transfer.key.output_index,
                    asset=transfer.asset,
                    amount=_units_to_amount(transfer.amount_units, transfer.asset),
                    from_address=transfer.from_address or "",
                    to_address=transfer.to_address,
                    block_number=transfer.block_number,
                    block_hash=transfer.block_hash or "",
                    confirmations=max(0, tip - block + 1) if block is not None else 0,
                    required_confirmations=self._required(transfer.network),
                    mined_at=dt.datetime.fromtimestamp(transfer.block_time, dt.UTC)
                    if transfer.block_time is not None
                    else None,
                )
            )
        for invoice_id, sightings in by_invoice.items():

            def observe(invoice: Invoice, sightings: list[Sighting] = sightings) -> None:
                now = utcnow()
                for seen in sightings:
                    invoice.observe(seen, now)

            await self.app.change(invoice_id, observe, actor=WATCHER)
            log.info(
                "invoice %s: %s",
                invoice_id,
                ", ".join(f"{s.amount} {s.asset} in {s.tx_hash}:{s.output_index}" for s in sightings),
            )

    async def retract(self, network: str, keys: Sequence[PaymentKey], reason: str) -> None:
        by_invoice: dict[uuid.UUID, list[PaymentKey]] = defaultdict(list)
        for _, pool in self.rt.pools.items():
            rows = await repository.payments_by_keys(
                pool, network, [k.tx_hash.lower() for k in keys], [k.output_index for k in keys]
            )
            for row in rows:
                by_invoice[row["invoice_id"]].append(PaymentKey(row["tx_hash"], row["output_index"]))
        for invoice_id, lost in by_invoice.items():

            def take_back(invoice: Invoice, lost: list[PaymentKey] = lost) -> None:
                now = utcnow()
                for key in lost:
                    invoice.retract(key.tx_hash, key.output_index, reason, now)

            await self.app.change(invoice_id, take_back, actor=WATCHER)
            log.warning("invoice %s: %d payment(s) taken back: %s", invoice_id, len(lost), reason)

    async def update_confirmations(self, network: str, tip: int) -> None:
        for _, pool in self.rt.pools.items():
            for invoice_id in await repository.invoices_to_recount(pool, network, tip):
                await self.app.change(
                    invoice_id, lambda invoice: invoice.recount(tip, utcnow()), actor=WATCHER
                )

    async def expire_due(self, limit: int = 200) -> int:
        """Closes open invoices whose time is up (the seed's partial index on expires_at)."""
        expired = 0
        for _, pool in self.rt.pools.items():
            for invoice_id in await repository.due_for_expiry(pool, limit):
                await self.app.change(invoice_id, lambda invoice: invoice.expire(utcnow()), actor=EXPIRY)
                expired += 1
        if expired:
            log.info("expired %d invoice(s)", expired)
        return expired
