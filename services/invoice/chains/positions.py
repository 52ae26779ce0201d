"""Where a block-following watcher is: the recent blocks it processed, kept durably.

Written to every shard this process serves (each shard's `chain_blocks`), so whichever shards
a restarted process serves, it finds a position; it resumes from the lowest one among them, and
re-reading a block is harmless because the ledger records each payment once. The shards are
asked for on each use: one the process begins to serve while it runs (registered by an operator)
is written from then on, and until it holds a position the others' positions stand for it (its
invoices, moved in from another shard, were watched there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from services.invoice import repository

# Enough history to find the fork point of any reorg a dev chain or mainnet will show.
KEEP_BLOCKS = 256


@dataclass(frozen=True)
class Block:
    number: int
    hash: str
    parent_hash: str


class ChainPositions:
    def __init__(self, pools: Callable[[], Sequence[asyncpg.Pool]], network: str) -> None:
        if not pools():
            raise ValueError("a watcher needs at least one shard to keep its position in")
        self._pools = pools
        self.network = network

    @property
    def pools(self) -> Sequence[asyncpg.Pool]:
        return self._pools()

    async def head(self) -> Block | None:
        """The lowest of the shards' latest processed blocks (None: none has one, never ran)."""
        heads = []
        for pool in self.pools:
            row = await repository.latest_block(pool, self.network)
            if row is not None:
                heads.append(Block(row["block_number"], row["block_hash"], row["parent_hash"]))
        return min(heads, key=lambda b: b.number, default=None)

    async def hash_at(self, number: int) -> str | None:
        return await repository.block_hash_at(self.pools[0], self.network, number)

    async def lowest(self) -> int | None:
        return await repository.lowest_block(self.pools[0], self.network)

    async def save(self, blocks: Sequence[Block]) -> None:
        if not blocks:
            return
        rows = [(b.number, b.hash, b.parent_hash) for b in blocks]
        for pool in self.pools:
            await repository.save_blocks(pool, self.network, rows, blocks[-1].number - KEEP_BLOCKS)

    async def rollback_above(self, number: int) -> None:
        for pool in self.pools:
            await repository.forget_blocks_above(pool, self.network, number)
