"""SQL of the chain watchers' and the expiry job's per-poll questions (services/invoice/ledger.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import asyncpg

from services.invoice.repository.invoices import Executor
from services.invoice.tables import CONFIRMING_PAYMENT_STATUSES, EXPIRABLE_STATUSES, WATCHED_STATUSES


def _sql_list(statuses: Iterable[str]) -> str:
    """An SQL list literal of our own status names. In the text, not a parameter: a partial index
    on the list (tables.py) serves only a query whose own text implies its predicate."""
    assert all(s.isidentifier() for s in statuses)
    return ", ".join(f"'{s}'" for s in statuses)


_WATCHED = _sql_list(WATCHED_STATUSES)  # idx_invoices_watch
_CONFIRMING = _sql_list(CONFIRMING_PAYMENT_STATUSES)  # idx_payments_open_network
_EXPIRABLE = _sql_list(EXPIRABLE_STATUSES)  # idx_invoices_expires_pending


async def watched_invoices(conn: Executor, network: str, late_seconds: int) -> list[asyncpg.Record]:
    """What a watcher follows on `network`, read whole once a minute (ledger.FULL_READ_SECONDS):
    open invoices, and closed ones whose expiry is less than `late_seconds` ago (a payment then
    is recorded as late)."""
    return list(
        await conn.fetch(
            f"""SELECT id, payment_address, crypto_currency FROM invoices
               WHERE network = $1
                 AND (status IN ({_WATCHED})
                      OR expires_at > NOW() - make_interval(secs => $2))
               ORDER BY id""",
            network,
            late_seconds,
        )
    )


async def invoices_minted_since(conn: Executor, network: str, first_id: uuid.UUID) -> list[asyncpg.Record]:
    """Invoices on `network` whose id is `first_id` or later: what a watcher adds between two
    full reads of `watched_invoices` (ids are time-ordered, so the primary key answers it)."""
    return list(
        await conn.fetch(
            """SELECT id, payment_address, crypto_currency FROM invoices
               WHERE network = $1 AND id >= $2 ORDER BY id""",
            network,
            first_id,
        )
    )


async def invoice_at_address(conn: Executor, network: str, address: str) -> uuid.UUID | None:
    invoice_id = await conn.fetchval(
        "SELECT id FROM invoices WHERE network = $1 AND payment_address = $2", network, address
    )
    return None if invoice_id is None else uuid.UUID(str(invoice_id))


async def open_payments(conn: Executor, network: str) -> list[asyncpg.Record]:
    """Payments on `network` still short of their confirmations (the watchers' reorg check)."""
    return list(
        await conn.fetch(
            f"""SELECT tx_hash, output_index, invoice_id, to_address, block_number,
                      NULLIF(block_hash, '') AS block_hash
               FROM payments WHERE network = $1 AND status IN ({_CONFIRMING})""",
            network,
        )
    )


async def payments_by_keys(
    conn: Executor, network: str, tx_hashes: list[str], output_indexes: list[int]
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT invoice_id, tx_hash, output_index FROM payments
               WHERE network = $1 AND (tx_hash, output_index) IN
                     (SELECT * FROM unnest($2::text[], $3::int[]))""",
            network,
            tx_hashes,
            output_indexes,
        )
    )


async def invoices_to_recount(conn: Executor, network: str, tip: int) -> list[uuid.UUID]:
    """Invoices with an open payment whose confirmation count differs from what `tip` gives."""
    rows = await conn.fetch(
        f"""SELECT DISTINCT invoice_id FROM payments
           WHERE network = $1 AND status IN ({_CONFIRMING})
             AND block_number IS NOT NULL AND confirmations <> GREATEST(0, $2 - block_number + 1)""",
        network,
        tip,
    )
    return [r["invoice_id"] for r in rows]


async def due_for_expiry(conn: Executor, limit: int) -> list[uuid.UUID]:
    """Open invoices whose time is up, oldest deadline first (the seed's partial index on expires_at)."""
    rows = await conn.fetch(
        f"""SELECT id FROM invoices WHERE status IN ({_EXPIRABLE}) AND expires_at <= NOW()
           ORDER BY expires_at LIMIT $1""",
        limit,
    )
    return [r["id"] for r in rows]


async def claimed_refunds(conn: Executor, network: str) -> list[asyncpg.Record]:
    """Refunds a payer claimed and the merchant has yet to pay: the watchers follow their addresses."""
    return await conn.fetch(
        """SELECT id, invoice_id, address, crypto_currency FROM refunds
           WHERE status = 'claimed' AND network = $1 ORDER BY id""",
        network,
    )


# -- a block-following watcher's position (services/invoice/chains/positions.py) ------------------


async def latest_block(pool: asyncpg.Pool, network: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        """SELECT block_number, block_hash, parent_hash FROM chain_blocks
           WHERE network = $1 ORDER BY block_number DESC LIMIT 1""",
        network,
    )


async def block_hash_at(pool: asyncpg.Pool, network: str, number: int) -> str | None:
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT block_hash FROM chain_blocks WHERE network = $1 AND block_number = $2",
        network,
        number,
    )


async def lowest_block(pool: asyncpg.Pool, network: str) -> int | None:
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT min(block_number) FROM chain_blocks WHERE network = $1", network
    )


async def save_blocks(
    pool: asyncpg.Pool, network: str, blocks: Sequence[tuple[int, str, str]], keep_above: int
) -> None:
    """Records `blocks` (number, hash, parent hash) and forgets those at or below `keep_above`,
    in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            """INSERT INTO chain_blocks (network, block_number, block_hash, parent_hash)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (network, block_number) DO UPDATE
               SET block_hash = EXCLUDED.block_hash, parent_hash = EXCLUDED.parent_hash,
                   processed_at = NOW()""",
            [(network, number, hash_, parent) for number, hash_, parent in blocks],
        )
        await conn.execute(
            "DELETE FROM chain_blocks WHERE network = $1 AND block_number <= $2", network, keep_above
        )


async def forget_blocks_above(pool: asyncpg.Pool, network: str, number: int) -> None:
    await pool.execute("DELETE FROM chain_blocks WHERE network = $1 AND block_number > $2", network, number)
