"""The event store: append with optimistic concurrency, load from snapshot + later events,
snapshots every N events, idempotent commands.

Layered by capability: `EventStore` appends and reads rows; `Repository` turns aggregates into
rows and back; `Commands` makes a command idempotent. Every method takes the connection of an
open transaction, so a service writes its events, its inline read models and its command log
atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
from google.protobuf.message import Message

from libs.common import consistency, context, events, ids, wakeups
from libs.common.aggregate import Aggregate
from libs.common.db import Connection
from libs.common.errors import Conflict

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ConcurrencyError(Conflict):
    """Another writer appended to the stream first; the caller may reload and retry."""


@dataclass(frozen=True)
class StoredEvent:
    id: uuid.UUID
    aggregate_id: uuid.UUID
    aggregate_type: str
    event_type: str
    version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    created_at: dt.datetime
    sequence_number: int
    transaction_id: int

    def message(self) -> Message:
        return events.decode(self.event_type, self.data)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StoredEvent:
        return cls(
            id=row["id"],
            aggregate_id=row["aggregate_id"],
            aggregate_type=row["aggregate_type"],
            event_type=row["event_type"],
            version=row["event_version"],
            data=row["event_data"],
            metadata=row["metadata"] or {},
            created_at=row["created_at"],
            sequence_number=row["sequence_number"],
            transaction_id=int(row["transaction_id"]),
        )


EVENT_COLUMNS = (
    "id, aggregate_id, aggregate_type, event_type, event_version, event_data, metadata, "
    "created_at, sequence_number, transaction_id::text::bigint AS transaction_id"
)


# One statement per append: the stream head is checked and moved, and the events are inserted
# only if it was (the INSERT selects FROM head, which is empty when the head refused), so a lost
# race returns no rows. Under READ COMMITTED a concurrent writer blocks on the head row, then
# re-checks `version = expected` against the committed version and updates nothing.
# $1 aggregate id, $2 type, $3 expected version, $4 new version, $5-$7 the events, $8 metadata,
# $9 time.
_START_HEAD = (
    "INSERT INTO streams (aggregate_id, aggregate_type, version) VALUES ($1, $2, $4) "
    "ON CONFLICT (aggregate_id) DO NOTHING RETURNING 1"
)
_MOVE_HEAD = (
    "UPDATE streams SET version = $4, updated_at = NOW() WHERE aggregate_id = $1 AND version = $3 RETURNING 1"
)
_RETURNING = "RETURNING event_version, sequence_number, transaction_id::text::bigint AS transaction_id"
_INSERT_ONE = (
    "INSERT INTO events (id, aggregate_id, aggregate_type, event_type, event_version, event_data, "
    "metadata, created_at) SELECT $5, $1, $2, $6, $3 + 1, $7::text::jsonb, $8::text::jsonb, $9 "
    f"FROM head {_RETURNING}"
)
_INSERT_MANY = (
    "INSERT INTO events (id, aggregate_id, aggregate_type, event_type, event_version, event_data, "
    "metadata, created_at) SELECT e.id, $1, $2, e.event_type, $3 + e.n::int, e.data::jsonb, "
    "$8::text::jsonb, $9 FROM head, unnest($5::uuid[], $6::text[], $7::text[]) WITH ORDINALITY "
    f"AS e(id, event_type, data, n) {_RETURNING}"
)
# (first append of the stream, one event) -> statement
_APPEND = {
    (True, True): f"WITH head AS ({_START_HEAD}) {_INSERT_ONE}",
    (True, False): f"WITH head AS ({_START_HEAD}) {_INSERT_MANY}",
    (False, True): f"WITH head AS ({_MOVE_HEAD}) {_INSERT_ONE}",
    (False, False): f"WITH head AS ({_MOVE_HEAD}) {_INSERT_MANY}",
}
# A connection that cannot tell us when its transaction ends (not from ShardPools) wakes the relay
# the old way, with a notification delivered at its commit.
_NOTIFY_SUFFIX = ", pg_notify($10, '') IS NULL AS notified"


class EventStore:
    def __init__(self, notify_channel: str, clock: Clock = utcnow) -> None:
        self.notify_channel = notify_channel
        self.clock = clock

    def _committed(self, pool: asyncpg.Pool) -> None:
        wakeups.committed(pool, self.notify_channel)

    async def append(
        self,
        conn: Connection,
        *,
        aggregate_id: uuid.UUID,
        aggregate_type: str,
        expected_version: int,
        new_events: Sequence[Message],
        metadata: dict[str, Any] | None = None,
    ) -> list[StoredEvent]:
        """Appends after `expected_version` or raises ConcurrencyError, in one round trip. Call
        inside a transaction; the relay is woken once the connection's transaction is over."""
        if not new_events:
            return []
        consistency.mark_write()  # the call's answer gets a consistency token
        meta = {**context.current().event_metadata(), **(metadata or {})}
        now = self.clock()
        slot = ids.slot_of(aggregate_id)
        event_ids = [ids.new_id(slot) for _ in new_events]
        types = [events.type_of(m) for m in new_events]
        data = [events.encode(m) for m in new_events]
        one = len(new_events) == 1
        sql = _APPEND[(expected_version == 0, one)]
        args: list[Any] = [aggregate_id, aggregate_type, expected_version, expected_version + len(new_events)]
        if one:
            args += [event_ids[0], types[0], json_dumps(data[0])]
        else:
            args += [event_ids, types, [json_dumps(d) for d in data]]
        args += [json_dumps(meta), now]
        after_release = getattr(conn, "after_release", None)
        if after_release is None:
            sql += _NOTIFY_SUFFIX
            args.append(self.notify_channel)
        rows = await conn.fetch(sql, *args)
        if not rows:
            raise ConcurrencyError(
                f"{aggregate_type} {aggregate_id} changed concurrently (expected version "
                f"{expected_version}); reload and retry"
            )
        if after_release is not None:
            after_release(self._committed)
        positions = {r["event_version"]: r for r in rows}
        stored = []
        for offset in range(len(new_events)):
            version = expected_version + offset + 1
            row = positions[version]
            stored.append(
                StoredEvent(
                    id=event_ids[offset],
                    aggregate_id=aggregate_id,
                    aggregate_type=aggregate_type,
                    event_type=types[offset],
                    version=version,
                    data=data[offset],
                    metadata=meta,
                    created_at=now,
                    sequence_number=row["sequence_number"],
                    transaction_id=int(row["transaction_id"]),
                )
            )
        return stored

    async def load(
        self, conn: Connection, aggregate_id: uuid.UUID, after_version: int = 0
    ) -> list[StoredEvent]:
        rows = await conn.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_id = $1 AND event_version > $2 "
            f"ORDER BY event_version",
            aggregate_id,
            after_version,
        )
        return [StoredEvent.from_row(r) for r in rows]

    async def read_all(
        self,
        conn: Connection,
        *,
        after_sequence: int = 0,
        limit: int = 1000,
        aggregate_type: str | None = None,
    ) -> list[StoredEvent]:
        """Events in sequence order, for rebuilding read models."""
        rows = await conn.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE sequence_number > $1 "
            f"AND ($2::text IS NULL OR aggregate_type = $2) ORDER BY sequence_number LIMIT $3",
            after_sequence,
            aggregate_type,
            limit,
        )
        return [StoredEvent.from_row(r) for r in rows]

    async def load_snapshot(
        self, conn: Connection, aggregate_id: uuid.UUID
    ) -> tuple[int, dict[str, Any]] | None:
        row = await conn.fetchrow(
            "SELECT version, data FROM aggregate_snapshots WHERE aggregate_id = $1", aggregate_id
        )
        return (row["version"], row["data"]) if row else None

    async def save_snapshot(
        self,
        conn: Connection,
        aggregate_id: uuid.UUID,
        aggregate_type: str,
        version: int,
        data: dict[str, Any],
    ) -> None:
        await conn.execute(
            "INSERT INTO aggregate_snapshots (aggregate_id, aggregate_type, version, data) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (aggregate_id) DO UPDATE "
            "SET version = EXCLUDED.version, data = EXCLUDED.data, created_at = NOW() "
            "WHERE aggregate_snapshots.version < EXCLUDED.version",
            aggregate_id,
            aggregate_type,
            version,
            data,
        )


A = TypeVar("A", bound=Aggregate)


class Repository(Generic[A]):
    """Loads an aggregate from its latest snapshot plus later events; saves its pending events
    and, every `snapshot_every` versions, a new snapshot."""

    def __init__(self, store: EventStore, factory: Callable[[uuid.UUID], A], snapshot_every: int) -> None:
        self.store = store
        self.factory = factory
        self.snapshot_every = snapshot_every

    async def get(self, conn: Connection, aggregate_id: uuid.UUID) -> A | None:
        aggregate = self.factory(aggregate_id)
        snapshot = await self.store.load_snapshot(conn, aggregate_id)
        if snapshot:
            aggregate.restore(snapshot[1])
            aggregate.version = snapshot[0]
        for event in await self.store.load(conn, aggregate_id, aggregate.version):
            aggregate.replay(event.message(), event.version)
        return aggregate if aggregate.version else None

    async def save(self, conn: Connection, aggregate: A) -> list[StoredEvent]:
        expected = aggregate.version - len(aggregate.pending)
        stored = await self.store.append(
            conn,
            aggregate_id=aggregate.id,
            aggregate_type=aggregate.aggregate_type,
            expected_version=expected,
            new_events=aggregate.pending,
        )
        aggregate.pending = []
        if aggregate.version // self.snapshot_every > expected // self.snapshot_every:
            try:
                data = aggregate.snapshot()
            except NotImplementedError:
                return stored
            await self.store.save_snapshot(
                conn, aggregate.id, aggregate.aggregate_type, aggregate.version, data
            )
        return stored


R = TypeVar("R")


class Commands:
    """Idempotent commands: a retry with the same key returns the first result and appends
    nothing; the same key with a different request is a Conflict."""

    @staticmethod
    async def run(
        pool: asyncpg.Pool,
        scope: str,
        handler: Callable[[Connection], Awaitable[R]],
        encode: Callable[[R], bytes],
        decode: Callable[[bytes], R],
        request_hash: str = "",
    ) -> R:
        async with pool.acquire() as conn:
            return await Commands.run_on(conn, scope, handler, encode, decode, request_hash)

    @staticmethod
    async def replay(
        conn: Connection, scope: str, decode: Callable[[bytes], R], request_hash: str = ""
    ) -> R | None:
        """The first result of this request's idempotency key, or None when there is no key or
        no finished command under it yet. For work a command does before its transaction (that a
        retry should not repeat); `run_on` still settles a race between two first tries."""
        ctx = context.current()
        if not ctx.idempotency_key:
            return None
        row = await conn.fetchrow(
            "SELECT request_hash, response FROM command_log WHERE scope = $1 AND idempotency_key = $2",
            scope,
            ctx.idempotency_key,
        )
        if row is None or row["response"] is None:
            return None
        return Commands._answer(row, ctx.idempotency_hash or request_hash, decode)

    @staticmethod
    async def run_on(
        conn: Connection,
        scope: str,
        handler: Callable[[Connection], Awaitable[R]],
        encode: Callable[[R], bytes],
        decode: Callable[[bytes], R],
        request_hash: str = "",
    ) -> R:
        """`run` on a connection the caller holds (outside a transaction)."""
        ctx = context.current()
        key = ctx.idempotency_key
        if not key:
            async with conn.transaction():
                return await handler(conn)
        request_hash = ctx.idempotency_hash or request_hash
        async with conn.transaction():
            # Claiming the key first makes a concurrent duplicate wait on this row until we
            # commit, after which it finds our result instead of running the command twice.
            claimed = await conn.fetchval(
                "INSERT INTO command_log (scope, idempotency_key, request_hash) "
                "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
                scope,
                key,
                request_hash,
            )
            if claimed:
                result = await handler(conn)
                await conn.execute(
                    "UPDATE command_log SET response = $3 WHERE scope = $1 AND idempotency_key = $2",
                    scope,
                    key,
                    encode(result),
                )
                return result
        row = await conn.fetchrow(
            "SELECT request_hash, response FROM command_log WHERE scope = $1 AND idempotency_key = $2",
            scope,
            key,
        )
        assert row is not None and row["response"] is not None
        return Commands._answer(row, request_hash, decode)

    @staticmethod
    def _answer(row: asyncpg.Record, request_hash: str, decode: Callable[[bytes], R]) -> R:
        if row["request_hash"] != request_hash:
            raise Conflict(
                "Idempotency-Key was already used with a different request",
                [],
            )
        context.command_replayed.set(True)
        consistency.mark_write()  # a retry's answer is the first one's, token included
        return decode(row["response"])


def json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
