"""The EVM watcher: follows a node over JSON-RPC block by block.

Per poll: check that the last processed block is still on the chain (a reorg otherwise: find
the fork by comparing stored and canonical hashes, take back the payments above it, and rescan);
read the new blocks (native value to watched addresses, with a successful receipt) and the
`Transfer` logs of the configured tokens; report them to the ledger; store the blocks as the new
position; recount confirmations against the tip. A crash between reporting and storing only
means a block is read twice, which the ledger ignores.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from libs.common import metrics
from libs.common.evm_rpc import EvmRpc, RpcError, RpcUnavailable, hex_int
from libs.common.networks import NetworkConfig
from services.invoice.chains.base import NATIVE_VALUE_INDEX, Ledger, PaymentKey, Transfer, WatchedAddress
from services.invoice.chains.positions import KEEP_BLOCKS, Block, ChainPositions

log = logging.getLogger("checkout.invoice.evm")

# keccak256("Transfer(address,address,uint256)")
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
NATIVE_ASSET = "ETH"
MAX_BLOCKS_PER_POLL = 200


class ChainChanged(Exception):
    """The blocks read in this poll do not link up: a reorg is under way; the next poll handles it."""


def _block(raw: Mapping[str, Any]) -> Block:
    try:
        return Block(hex_int(raw["number"], "block number"), str(raw["hash"]), str(raw["parentHash"]))
    except KeyError as missing:
        raise RpcUnavailable(f"a block without {missing}") from None


def _address_of_topic(topic: str) -> str:
    return "0x" + topic[-40:].lower()


class EvmWatcher:
    def __init__(
        self, network: NetworkConfig, ledger: Ledger, rpc: EvmRpc, positions: ChainPositions
    ) -> None:
        self.network = network
        self.ledger = ledger
        self.rpc = rpc
        self.positions = positions
        self.tokens = {t.contract.lower(): t for t in network.tokens}

    async def run(self) -> None:
        log.info(
            "watching %s at %s (%d confirmations)",
            self.network.name,
            self.rpc.url,
            self.network.confirmations,
        )
        while True:
            try:
                await self.poll_once()
            except (RpcUnavailable, RpcError, ChainChanged, asyncpg.PostgresError, OSError) as error:
                log.warning(
                    "%s watcher: %s; retrying in %ss", self.network.name, error, self.network.poll_seconds
                )
            await asyncio.sleep(self.network.poll_seconds)

    async def poll_once(self) -> int:
        """One pass; returns the number of blocks processed."""
        tip = await self.rpc.block_number()
        head = await self.positions.head()
        if head is None:
            start = self.network.start_block if self.network.start_block is not None else tip
        else:
            fork = await self._fork_point(head, tip)
            if fork < head.number:
                await self._roll_back(fork)
            start = fork + 1
        end = min(tip, start + MAX_BLOCKS_PER_POLL - 1)
        processed = 0
        if start <= end:
            processed = await self._scan(start, end, tip)
        await self.ledger.update_confirmations(self.network.name, tip)
        metrics.WATCHER_HEAD_LAG.labels(self.network.name).set(max(0, tip - max(end, start - 1)))
        return processed

    async def _fork_point(self, head: Block, tip: int) -> int:
        """The highest stored block that is still canonical."""
        if head.number <= tip and await self._canonical(head.number, head.hash):
            return head.number  # every poll without a reorg: one call, nothing more read
        number = min(head.number, tip)
        lowest = await self.positions.lowest() or 0
        while number >= lowest:
            if await self._canonical(number, await self.positions.hash_at(number)):
                return number
            number -= 1
        # No stored block is on this chain: a reorg deeper than what is kept, or a node that was
        # reset. Rescan the most recent blocks (re-reporting is harmless) rather than skip any.
        restart = max(0, min(lowest, tip - KEEP_BLOCKS + 1))
        log.error(
            "%s: no stored block is on the node's chain; rescanning from block %d", self.network.name, restart
        )
        return restart - 1

    async def _canonical(self, number: int, stored_hash: str | None) -> bool:
        block = await self.rpc.block(number, full=False)
        return stored_hash is not None and block is not None and block.get("hash") == stored_hash

    async def _roll_back(self, fork: int) -> None:
        lost: dict[int, list[PaymentKey]] = {}
        for payment in await self.ledger.open_payments(self.network.name):
            if payment.block_number is not None and payment.block_number > fork:
                lost.setdefault(payment.block_number, []).append(payment.key)
        for number, keys in sorted(lost.items()):
            await self.ledger.retract(
                self.network.name,
                keys,
                f"block {number} is no longer in the chain (reorg above block {fork})",
            )
        await self.positions.rollback_above(fork)
        log.warning(
            "%s: reorg: rolled back to block %d, %d payment(s) taken back",
            self.network.name,
            fork,
            sum(len(k) for k in lost.values()),
        )

    async def _scan(self, start: int, end: int, tip: int) -> int:
        watched = await self.ledger.watched(self.network.name)
        previous = await self.positions.hash_at(start - 1)
        blocks: list[Block] = []
        raws: list[Mapping[str, Any]] = []
        for number in range(start, end + 1):
            raw = await self.rpc.block(number, full=True)
            if raw is None:
                break  # the tip moved back under us
            block = _block(raw)
            if previous is not None and block.parent_hash != previous:
                if not blocks:
                    raise ChainChanged(f"block {number} does not follow the stored block {number - 1}")
                break
            blocks.append(block)
            raws.append(raw)
            previous = block.hash
        if not blocks:
            return 0
        transfers = await self._native(raws, watched)
        transfers += await self._token_transfers(blocks, raws, watched)
        if transfers:
            await self.ledger.record(transfers, tip)
        await self.positions.save(blocks)
        return len(blocks)

    async def _native(
        self, raws: Sequence[Mapping[str, Any]], watched: Mapping[str, WatchedAddress]
    ) -> list[Transfer]:
        found = []
        for raw in raws:
            for tx in raw.get("transactions") or []:
                if not isinstance(tx, dict):
                    raise RpcUnavailable("eth_getBlockByNumber returned transaction hashes, not objects")
                to = (tx.get("to") or "").lower()
                target = watched.get(to)
                if target is None or target.asset != NATIVE_ASSET:
                    continue
                value = hex_int(tx.get("value"), "value")
                if value <= 0:
                    continue
                receipt = await self.rpc.receipt(tx["hash"])
                if receipt is None or receipt.get("status") != "0x1":
                    log.info(
                        "%s: tx %s to %s failed or has no receipt: not a payment",
                        self.network.name,
                        tx["hash"],
                        target.address,
                    )
                    continue
                found.append(
                    Transfer(
                        network=self.network.name,
                        key=PaymentKey(str(tx["hash"]).lower(), NATIVE_VALUE_INDEX),
                        to_address=target.address,
                        from_address=tx.get("from"),
                        asset=NATIVE_ASSET,
                        amount_units=value,
                        block_number=hex_int(raw["number"]),
                        block_hash=str(raw["hash"]),
                        block_time=hex_int(raw.get("timestamp"), "timestamp"),
                    )
                )
        return found

    async def _token_transfers(
        self,
        blocks: Sequence[Block],
        raws: Sequence[Mapping[str, Any]],
        watched: Mapping[str, WatchedAddress],
    ) -> list[Transfer]:
        if not self.tokens:
            return []
        logs = await self.rpc.logs(blocks[0].number, blocks[-1].number, list(self.tokens), [TRANSFER_TOPIC])
        hashes = {b.number: b.hash for b in blocks}
        times = {hex_int(r["number"]): hex_int(r.get("timestamp"), "timestamp") for r in raws}
        found = []
        for entry in logs:
            if not isinstance(entry, dict) or entry.get("removed"):
                continue
            topics = entry.get("topics") or []
            token = self.tokens.get(str(entry.get("address", "")).lower())
            if token is None or len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
                continue
            target = watched.get(_address_of_topic(topics[2]))
            if target is None or target.asset != token.symbol:
                continue
            number = hex_int(entry.get("blockNumber"), "log block number")
            if hashes.get(number) != entry.get("blockHash"):
                raise ChainChanged(f"a log of block {number} names another block hash")
            found.append(
                Transfer(
                    network=self.network.name,
                    key=PaymentKey(
                        str(entry["transactionHash"]).lower(), hex_int(entry.get("logIndex"), "log index")
                    ),
                    to_address=target.address,
                    from_address=_address_of_topic(topics[1]),
                    asset=token.symbol,
                    amount_units=hex_int(entry.get("data"), "transfer value"),
                    block_number=number,
                    block_hash=hashes[number],
                    block_time=times.get(number),
                )
            )
        return found
