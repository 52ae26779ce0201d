"""The Bitcoin watcher: follows an Esplora server and reports payments to watched addresses.

Esplora answers per address, not per block, so one poll re-reads the history of every watched
address and reports everything it sees; the ledger is idempotent, so seeing a payment again
(after a restart, or on every poll until it is confirmed) never counts it twice. Reorgs are
caught two ways: a sighting in a recent block is kept only if that block is still the best
chain's block at its height, and an open payment the chain no longer shows is looked up by txid
before it is retracted - a list that merely failed to load, or was cut short, never retracts.
A reorged transaction that went back to the mempool is reported again as unconfirmed (its
confirmations restart at 0) rather than retracted: it is still on its way, as a fresh mempool
payment is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from libs.common import metrics
from libs.common.networks import NetworkConfig
from services.invoice.chains.base import Ledger, OpenPayment, PaymentKey, Transfer
from services.invoice.chains.esplora import EsploraClient, EsploraError, EsploraTx

__all__ = ["ASSET", "BitcoinWatcher", "PollResult"]

log = logging.getLogger("checkout.invoice.bitcoin")

ASSET = "BTC"
DEFAULT_CONCURRENCY = 8
# Sightings in blocks this close to the tip are checked against the best chain's block hash.
# Deeper blocks are taken as Esplora reports them: a reorg that deep is not expected, and
# checking every old block of every address each poll would cost a request per block.
DEFAULT_REORG_WINDOW = 12


@dataclass(frozen=True)
class PollResult:
    tip: int
    seen: int  # transfers to watched addresses reported to the ledger
    retracted: tuple[PaymentKey, ...]
    failed_addresses: tuple[str, ...]  # lower-cased; could not be read, so their payments untouched


def _targets(addresses: Iterable[str]) -> dict[str, str]:
    # Matched case-insensitively (the ledger may key addresses lower-cased); reported as stored.
    return {address.lower(): address for address in addresses}


def _transfers(network: str, tx: EsploraTx, targets: Mapping[str, str]) -> Iterable[Transfer]:
    for output in tx.outputs:
        to_address = targets.get(output.address.lower()) if output.address is not None else None
        if to_address is not None:
            yield Transfer(
                network=network,
                key=PaymentKey(tx.txid, output.index),
                to_address=to_address,
                from_address=tx.from_address,
                asset=ASSET,
                amount_units=output.value,
                block_number=tx.status.block_height,
                block_hash=tx.status.block_hash,
                block_time=tx.status.block_time,
            )


def _gone_reason(block_hash: str | None, block_number: int | None) -> str:
    if not block_hash or block_number is None:  # a ledger may store "no block" as ""
        return "dropped from the mempool: the node no longer knows the transaction"
    return (
        f"reorged away: block {block_hash} at height {block_number} is no longer "
        "in the best chain and the transaction is in no other block nor the mempool"
    )


class BitcoinWatcher:
    """One per Bitcoin network per process. `run()` polls until cancelled."""

    def __init__(
        self,
        network: NetworkConfig,
        ledger: Ledger,
        client: EsploraClient,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        reorg_window: int = DEFAULT_REORG_WINDOW,
    ) -> None:
        if network.kind != "bitcoin":
            raise ValueError(f"{network.name} is not a bitcoin network")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.network = network
        self.ledger = ledger
        self.client = client
        self._concurrency = concurrency
        # A payment is open until confirmed, so its block must stay inside the checked window.
        self._reorg_window = max(reorg_window, network.confirmations + 1)
        self._last_seen: dict[PaymentKey, str | None] = {}  # for logging what changed only
        self.polls = 0
        self.failed_polls = 0
        self.last_error: str | None = None

    async def run(self) -> None:
        """Poll every `network.poll_seconds`; a failed poll is logged and retried next time."""
        name = self.network.name
        log.info("%s watcher: following %s", name, self.client.base_url)
        while True:
            try:
                await self.poll_once()
            except EsploraError as error:
                self._failed(error)
                log.warning(
                    "%s watcher: poll failed, retrying in %g s: %s", name, self.network.poll_seconds, error
                )
            except Exception as error:
                # A ledger or programming error: still keep watching, but with the traceback.
                self._failed(error)
                log.exception("%s watcher: poll failed, retrying in %g s", name, self.network.poll_seconds)
            else:
                self.polls += 1
                self.last_error = None
                # Every poll reads each watched address's history as of the tip: nothing behind.
                metrics.WATCHER_HEAD_LAG.labels(name).set(0)
            await asyncio.sleep(self.network.poll_seconds)

    def _failed(self, error: Exception) -> None:
        self.failed_polls += 1
        self.last_error = f"{type(error).__name__}: {error}"

    async def poll_once(self) -> PollResult:
        """One pass: report what the watched addresses received, retract what the chain dropped,
        recount confirmations. Raises EsploraError when the tip or a block hash cannot be read."""
        name = self.network.name
        limit = asyncio.Semaphore(self._concurrency)
        tip = await self.client.tip_height()
        watched = await self.ledger.watched(name)

        async def history(address: str) -> list[EsploraTx]:
            async with limit:
                return await self.client.address_txs(address)

        addresses = [w.address for w in watched.values()]
        targets = _targets(addresses)
        results = await asyncio.gather(*(history(a) for a in addresses), return_exceptions=True)
        failed: set[str] = set()
        sightings: dict[PaymentKey, Transfer] = {}
        for address, result in zip(addresses, results, strict=True):
            if isinstance(result, EsploraError | ValueError):
                failed.add(address.lower())
                log.warning("%s watcher: cannot read %s this poll: %s", name, address, result)
                continue
            if isinstance(result, BaseException):
                raise result
            for transfer in (t for tx in result for t in _transfers(name, tx, targets)):
                known = sightings.get(transfer.key)
                # Two lists read moments apart can disagree; the later, mined view wins.
                if known is None or (known.block_hash is None and transfer.block_hash is not None):
                    sightings[transfer.key] = transfer

        canonical = _CanonicalBlocks(self.client, tip, self._reorg_window)
        for key, transfer in list(sightings.items()):
            if not await canonical.holds(transfer):
                # Not recorded: the open-payment check below looks the transaction up afresh.
                log.info("%s watcher: %s:%d seen in stale block %s", name, *_key(key), transfer.block_hash)
                del sightings[key]

        # Blocks mined since the tip was read count too (their canonical hash was just checked).
        tip = _highest(tip, sightings.values())
        if sightings:
            self._log_sightings(sightings.values())
            await self.ledger.record(list(sightings.values()), tip)

        retract, again = await self._check_open(sightings, failed, canonical, limit)
        if again:
            tip = _highest(tip, again)
            self._log_sightings(again)
            await self.ledger.record(again, tip)
        seen_now = sightings.keys() | {t.key for t in again}
        self._last_seen = {k: v for k, v in self._last_seen.items() if k in seen_now}
        by_reason: dict[str, list[PaymentKey]] = defaultdict(list)
        for key, reason in retract:
            by_reason[reason].append(key)
        for reason, keys in by_reason.items():
            log.info(
                "%s watcher: retracting %s: %s",
                name,
                ", ".join(f"{k.tx_hash}:{k.output_index}" for k in keys),
                reason,
            )
            await self.ledger.retract(name, keys, reason)
        await self.ledger.update_confirmations(name, tip)
        log.debug(
            "%s watcher: tip %d, %d addresses, %d transfers, %d failed",
            name,
            tip,
            len(addresses),
            len(sightings),
            len(failed),
        )
        return PollResult(
            tip, len(sightings) + len(again), tuple(k for k, _ in retract), tuple(sorted(failed))
        )

    async def _check_open(
        self,
        sightings: Mapping[PaymentKey, Transfer],
        failed: set[str],
        canonical: _CanonicalBlocks,
        limit: asyncio.Semaphore,
    ) -> tuple[list[tuple[PaymentKey, str]], list[Transfer]]:
        """Open payments this poll did not see: (those the chain no longer holds, those found
        again by txid - re-mined, back in the mempool, or past the listed history)."""
        name = self.network.name
        missing = [
            p
            for p in await self.ledger.open_payments(name)
            # Never retract on missing data: an address we could not read tells us nothing.
            if p.key not in sightings and p.to_address.lower() not in failed
        ]

        async def lookup(payment: OpenPayment) -> EsploraTx | None:
            async with limit:
                return await self.client.transaction(payment.key.tx_hash)

        found = await asyncio.gather(*(lookup(p) for p in missing), return_exceptions=True)
        retract: list[tuple[PaymentKey, str]] = []
        again: list[Transfer] = []
        for payment, result in zip(missing, found, strict=True):
            if isinstance(result, EsploraError):
                log.warning("%s watcher: cannot look up %s this poll: %s", name, payment.key.tx_hash, result)
                continue
            if isinstance(result, BaseException):
                raise result
            if result is None:
                retract.append((payment.key, _gone_reason(payment.block_hash, payment.block_number)))
                continue
            transfer = next(
                (t for t in _transfers(name, result, _targets([payment.to_address])) if t.key == payment.key),
                None,
            )
            if transfer is None:
                log.error("%s watcher: %s:%d does not pay %s", name, *_key(payment.key), payment.to_address)
            elif await canonical.holds(transfer):
                again.append(transfer)
            else:
                # Esplora still places it in a block the best chain no longer has: not elsewhere.
                retract.append((payment.key, _gone_reason(transfer.block_hash, transfer.block_number)))
        return retract, again

    def _log_sightings(self, transfers: Iterable[Transfer]) -> None:
        # INFO for what this instance has not seen before (new, mined, moved); DEBUG otherwise.
        name = self.network.name
        for t in transfers:
            where = f"block {t.block_number} ({t.block_hash})" if t.block_hash else "the mempool"
            level = logging.INFO if self._last_seen.get(t.key, "unseen") != t.block_hash else logging.DEBUG
            log.log(
                level,
                "%s watcher: %s:%d pays %d sats to %s in %s",
                name,
                *_key(t.key),
                t.amount_units,
                t.to_address,
                where,
            )
            self._last_seen[t.key] = t.block_hash


def _highest(tip: int, transfers: Iterable[Transfer]) -> int:
    return max([tip, *(t.block_number for t in transfers if t.block_number is not None)])


def _key(key: PaymentKey) -> tuple[str, int]:
    return key.tx_hash, key.output_index


class _CanonicalBlocks:
    """Block hashes of the best chain near the tip, read once per poll."""

    def __init__(self, client: EsploraClient, tip: int, window: int) -> None:
        self._client = client
        self._lowest_checked = tip - window
        self._hashes: dict[int, str | None] = {}

    async def holds(self, transfer: Transfer) -> bool:
        """Whether the transfer's block (if any) is the best chain's block at its height."""
        height = transfer.block_number
        if transfer.block_hash is None or height is None or height <= self._lowest_checked:
            return True
        if height not in self._hashes:
            self._hashes[height] = await self._client.block_hash_at(height)
        return self._hashes[height] == transfer.block_hash
