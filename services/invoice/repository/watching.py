"""SQL of the chain watchers' and the expiry job's per-poll questions (services/invoice/ledger.py)."""

from __future__ import annotations

import uuid

import asyncpg

from services.invoice.repository.invoices import Executor


async def watched_invoices(conn: Executor, network: str, late_seconds: int) -> list[asyncpg.Record]:
    """What a watcher follows on `network`, read whole once a minute (ledger.FULL_READ_SECONDS):
    open invoices, and closed ones whose expiry is less than `late_seconds` ago (a payment then
    is recorded as late)."""
    return list(
        await conn.fetch(
            """SELECT id, payment_address, crypto_currency FROM invoices
               WHERE network = $1
                 AND (status IN ('pending', 'partial', 'paid', 'invalid')
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
            """SELECT tx_hash, output_index, invoice_id, to_address, block_number,
                      NULLIF(block_hash, '') AS block_hash
               FROM payments WHERE network = $1 AND status IN ('detected', 'confirming')""",
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
        """SELECT DISTINCT invoice_id FROM payments
           WHERE network = $1 AND status IN ('detected', 'confirming')
             AND block_number IS NOT NULL AND confirmations <> GREATEST(0, $2 - block_number + 1)""",
        network,
        tip,
    )
    return [r["invoice_id"] for r in rows]


async def due_for_expiry(conn: Executor, limit: int) -> list[uuid.UUID]:
    """Open invoices whose time is up, oldest deadline first (the seed's partial index on expires_at)."""
    rows = await conn.fetch(
        """SELECT id FROM invoices WHERE status IN ('pending', 'partial') AND expires_at <= NOW()
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
