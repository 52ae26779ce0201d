"""The relay: committed events to JetStream in commit order, never skipping one.

Why not follow `sequence_number`: a bigserial value is taken at INSERT, not at COMMIT, so a
transaction holding sequence 7 can commit after one holding 8; a reader that moved past 8 would
never see 7. Instead every event records its writing transaction (`xid8`). In one snapshot the
relay publishes the transactions it can see that it has not published yet, in order, and moves
its `floor` to the snapshot's xmin: every transaction below xmin had finished when the snapshot
was taken, so nothing below the floor can still appear. Transactions at or above the floor are
remembered one by one in `relay_published` until the floor passes them. A transaction that
commits late is therefore published when it becomes visible, after the ones that committed
before it: commit order as the relay observes it, with per-aggregate order guaranteed by the
stream head lock.

The cursor moves only after JetStream acknowledged every message; a crash in between republishes
them with the same `Nats-Msg-Id`, which JetStream de-duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

import asyncpg
from nats.js import JetStreamContext

from libs.common.eventstore import EVENT_COLUMNS, StoredEvent
from libs.common.messaging import Envelope, subject

log = logging.getLogger("checkout.relay")


class Relay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        schema: str,
        shard: int,
        notify_channel: str,
        subject_prefix: str = "events",
        poll_seconds: float = 1.0,
        batch_transactions: int = 200,
        name: str = "jetstream",
    ) -> None:
        self.pool = pool
        self.js = js
        self.schema = schema
        self.shard = shard
        self.notify_channel = notify_channel
        self.subject_prefix = subject_prefix
        self.poll_seconds = poll_seconds
        self.batch = batch_transactions
        self.name = name
        self.published = 0
        self._wake = asyncio.Event()

    async def publish_pending(self) -> int:
        """One pass; returns how many events it published."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO relay_state (name, floor) VALUES ($1, '0') ON CONFLICT DO NOTHING",
                self.name,
            )
            # One REPEATABLE READ snapshot, so xmin and the visible rows describe the same moment.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                floor = await conn.fetchval(
                    "SELECT floor::text::bigint FROM relay_state WHERE name = $1", self.name
                )
                xmin = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                txs = await conn.fetch(
                    """SELECT DISTINCT e.transaction_id::text::bigint AS tx FROM events e
                       WHERE e.transaction_id >= $2::text::xid8
                         AND NOT EXISTS (SELECT 1 FROM relay_published p
                                         WHERE p.name = $1 AND p.transaction_id = e.transaction_id)
                       ORDER BY 1 LIMIT $3""",
                    self.name,
                    str(floor),
                    self.batch,
                )
                tx_ids = [r["tx"] for r in txs]
                rows = (
                    await conn.fetch(
                        f"SELECT {EVENT_COLUMNS} FROM events "
                        f"WHERE transaction_id = ANY($1::text[]::xid8[]) "
                        f"ORDER BY transaction_id, sequence_number",
                        [str(t) for t in tx_ids],
                    )
                    if tx_ids
                    else []
                )
            for row in rows:
                envelope = Envelope.of(StoredEvent.from_row(row), self.shard)
                await self.js.publish(
                    subject(self.subject_prefix, self.shard, envelope.type),
                    envelope.to_bytes(),
                    headers=envelope.headers(),
                )
            # With a full batch some visible transactions may be left for the next pass, so
            # the floor may not pass them yet.
            new_floor = floor if len(tx_ids) == self.batch else max(floor, xmin)
            async with conn.transaction():
                if tx_ids:
                    await conn.executemany(
                        "INSERT INTO relay_published (name, transaction_id) VALUES ($1, $2::text::xid8) "
                        "ON CONFLICT DO NOTHING",
                        [(self.name, str(t)) for t in tx_ids],
                    )
                if new_floor != floor:
                    await conn.execute(
                        "UPDATE relay_state SET floor = $2::text::xid8, updated_at = NOW() WHERE name = $1",
                        self.name,
                        str(new_floor),
                    )
                    await conn.execute(
                        "DELETE FROM relay_published WHERE name = $1 AND transaction_id < $2::text::xid8",
                        self.name,
                        str(new_floor),
                    )
        self.published += len(rows)
        return len(rows)

    def _lock_key(self) -> int:
        return int.from_bytes(
            hashlib.sha256(f"relay:{self.schema}:{self.name}".encode()).digest()[:8], signed=True
        )

    async def run(self) -> None:
        """Publishes until cancelled. Only one relay per shard schema runs at a time (advisory
        lock), so replicas of a service do not race each other's cursor."""
        conn = await self.pool.acquire()
        locked = False

        def wake(*_: object) -> None:
            self._wake.set()

        try:
            while not (locked := await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key())):
                await asyncio.sleep(self.poll_seconds * 5)
            await conn.add_listener(self.notify_channel, wake)
            log.info("relay for %s shard %d started", self.schema, self.shard)
            while True:
                if conn.is_closed():
                    # The session holding our LISTEN and the lock is gone (a database restart):
                    # end this run, and the runtime's supervisor starts a fresh one.
                    raise asyncpg.InterfaceError(
                        f"relay {self.schema} shard {self.shard}: its session was lost"
                    )
                self._wake.clear()
                try:
                    published = await self.publish_pending()
                except (asyncpg.PostgresError, OSError, TimeoutError) as error:
                    log.warning("relay %s shard %d pass failed, retrying: %s", self.schema, self.shard, error)
                    published = 0
                    await asyncio.sleep(self.poll_seconds)
                if published:
                    continue
                # NOTIFY wakes us at once; the timeout is the fallback for a lost notification
                # and for transactions that were still open during the last pass.
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
                # arrives with its result, and then stop() would wait on this task for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wake.wait()
        finally:
            with contextlib.suppress(Exception):
                await conn.remove_listener(self.notify_channel, wake)
                if locked:
                    await conn.fetchval("SELECT pg_advisory_unlock($1)", self._lock_key())
            await self.pool.release(conn)

    async def lag(self) -> int:
        """Events not yet published (for the projection-lag metric)."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                """SELECT count(*) FROM events e, relay_state s
                   WHERE s.name = $1 AND e.transaction_id >= s.floor
                     AND NOT EXISTS (SELECT 1 FROM relay_published p
                                     WHERE p.name = s.name AND p.transaction_id = e.transaction_id)""",
                self.name,
            )
            return int(value)


def _lost(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # the pool took a dead connection back
        return True
