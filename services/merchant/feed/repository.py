"""SQL for the event feed (migration 1005_event_feed.sql says why the sequence is gapless)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from libs.common.db import Connection

Db = Connection | asyncpg.Pool


async def record(
    conn: Connection, merchant_id: uuid.UUID, event_id: uuid.UUID, event_type: str, body: str
) -> int | None:
    """Appends the event to the merchant's feed with the next sequence number, in the caller's
    transaction; None (and no number taken) if it is there already.

    recorded_at is the clock at the insert, after the head's row lock is held: a later number
    is never recorded earlier, so retention (by recorded_at) only ever cuts a feed's oldest end."""
    if await conn.fetchval(
        "SELECT 1 FROM event_feed WHERE merchant_id = $1 AND event_id = $2", merchant_id, event_id
    ):
        return None
    sequence: int = await conn.fetchval(
        """INSERT INTO event_feed_heads (merchant_id, last_sequence) VALUES ($1, 1)
           ON CONFLICT (merchant_id) DO UPDATE SET last_sequence = event_feed_heads.last_sequence + 1
           RETURNING last_sequence""",
        merchant_id,
    )
    await conn.execute(
        """INSERT INTO event_feed (merchant_id, sequence, event_id, event_type, body, recorded_at)
           VALUES ($1, $2, $3, $4, $5, clock_timestamp())""",
        merchant_id,
        sequence,
        event_id,
        event_type,
        body,
    )
    return sequence


@dataclass(frozen=True)
class Entry:
    merchant_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    body: str


async def record_many(conn: Connection, entries: Sequence[Entry]) -> None:
    """`record` of each entry in turn, in three statements: the entries already there are left
    out, each merchant's head moves once by its count of new ones (heads locked in merchant
    order), and the new entries take the numbers in between, in their order."""
    there = {
        (r["merchant_id"], r["event_id"])
        for r in await conn.fetch(
            """SELECT f.merchant_id, f.event_id FROM event_feed f
               JOIN unnest($1::uuid[], $2::uuid[]) AS e(merchant_id, event_id)
                 ON f.merchant_id = e.merchant_id AND f.event_id = e.event_id""",
            [e.merchant_id for e in entries],
            [e.event_id for e in entries],
        )
    }
    new: list[Entry] = []
    for entry in entries:
        if (entry.merchant_id, entry.event_id) not in there:
            there.add((entry.merchant_id, entry.event_id))
            new.append(entry)
    if not new:
        return
    counts = Counter(e.merchant_id for e in new)
    merchants = sorted(counts)
    heads = await conn.fetch(
        """INSERT INTO event_feed_heads (merchant_id, last_sequence)
           SELECT * FROM unnest($1::uuid[], $2::bigint[]) ORDER BY 1
           ON CONFLICT (merchant_id) DO UPDATE
               SET last_sequence = event_feed_heads.last_sequence + EXCLUDED.last_sequence
           RETURNING merchant_id, last_sequence""",
        merchants,
        [counts[m] for m in merchants],
    )
    following = {r["merchant_id"]: r["last_sequence"] - counts[r["merchant_id"]] for r in heads}
    sequences = []
    for entry in new:
        following[entry.merchant_id] += 1
        sequences.append(following[entry.merchant_id])
    await conn.execute(
        """INSERT INTO event_feed (merchant_id, sequence, event_id, event_type, body, recorded_at)
           SELECT m, s, e, t, b, clock_timestamp()
           FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::text[]) AS n(m, s, e, t, b)
           ORDER BY s""",
        [e.merchant_id for e in new],
        sequences,
        [e.event_id for e in new],
        [e.event_type for e in new],
        [e.body for e in new],
    )


async def events_after(
    db: Db, merchant_id: uuid.UUID, after: int, types: Sequence[str], limit: int
) -> list[asyncpg.Record]:
    """The merchant's events after sequence `after`, in order, of `types` (all when empty)."""
    columns = "sequence, event_id, event_type, body, recorded_at"
    if types:
        return list(
            await db.fetch(
                f"""SELECT {columns} FROM event_feed
                    WHERE merchant_id = $1 AND sequence > $2 AND event_type = ANY($3::text[])
                    ORDER BY sequence LIMIT $4""",
                merchant_id,
                after,
                list(types),
                limit,
            )
        )
    return list(
        await db.fetch(
            f"""SELECT {columns} FROM event_feed WHERE merchant_id = $1 AND sequence > $2
                ORDER BY sequence LIMIT $3""",
            merchant_id,
            after,
            limit,
        )
    )


async def oldest_kept(db: Db, merchant_id: uuid.UUID) -> int | None:
    """The lowest sequence the merchant's feed still holds; with none held, the next one it will
    number; None for a merchant that has recorded nothing."""
    found: int | None = await db.fetchval(
        """SELECT COALESCE(
               (SELECT min(sequence) FROM event_feed WHERE merchant_id = $1),
               (SELECT last_sequence + 1 FROM event_feed_heads WHERE merchant_id = $1))""",
        merchant_id,
    )
    return found


async def delete_recorded_before(db: Db, before: dt.datetime, batch: int) -> int:
    """Deletes up to `batch` events recorded before `before` (oldest first); how many it did."""
    status: str = await db.execute(
        """DELETE FROM event_feed WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM event_feed WHERE recorded_at < $1 ORDER BY recorded_at LIMIT $2))""",
        before,
        batch,
    )
    return int(status.split()[-1])
