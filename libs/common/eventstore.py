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

from libs.common import consistency, context, events, ids
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


class EventStore:
    def __init__(self, notify_channel: str, clock: Clock = utcnow) -> None:
        self.notify_channel = notify_channel
        self.clock = clock

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
        """Appends after `expected_version` or raises ConcurrencyError. Call inside a transaction."""
        if not new_events:
            return []
        consistency.mark_write()  # the call's answer gets a consistency token
        new_version = expected_version + len(new_events)
        if expected_version == 0:
            status = await conn.execute(
                "INSERT INTO streams (aggregate_id, aggregate_type, version) VALUES ($1, $2, $3) "
                "ON CONFLICT (aggregate_id) DO NOTHING",
                aggregate_id,
                aggregate_type,
                new_version,
            )
        else:
            # Under READ COMMITTED a concurrent writer blocks on the row lock, then re-checks the
            # WHERE against the committed version and updates nothing: the loser learns it here.
            status = await conn.execute(
                "UPDATE streams SET version = $3, updated_at = NOW() "
                "WHERE aggregate_id = $1 AND version = $2",
                aggregate_id,
                expected_version,
                new_version,
            )
        if status.endswith(" 0"):
            raise ConcurrencyError(
                f"{aggregate_type} {aggregate_id} changed concurrently (expected version "
                f"{expected_version}); reload and retry"
            )
        meta = {**context.current().event_metadata(), **(metadata or {})}
        now = self.clock()
        slot = ids.slot_of(aggregate_id)
        stored = []
        for offset, message in enumerate(new_events, start=1):
            row = await conn.fetchrow(
                f"INSERT INTO events (id, aggregate_id, aggregate_type, event_type, event_version, "
                f"event_data, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                f"RETURNING {EVENT_COLUMNS}",
                ids.new_id(slot),
                aggregate_id,
                aggregate_type,
                events.type_of(message),
                expected_version + offset,
                events.encode(message),
                meta,
                now,
            )
            assert row is not None
            stored.append(StoredEvent.from_row(row))
        await conn.execute("SELECT pg_notify($1, '')", self.notify_channel)
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
        ctx = context.current()
        key = ctx.idempotency_key
        if not key:
            async with pool.acquire() as conn, conn.transaction():
                return await handler(conn)
        request_hash = ctx.idempotency_hash or request_hash
        async with pool.acquire() as conn:
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
        consistency.mark_write()  # a retry's answer is the first one's, token included
        if row["request_hash"] != request_hash:
            raise Conflict(
                "Idempotency-Key was already used with a different request",
                [],
            )
        context.command_replayed.set(True)
        return decode(row["response"])


def json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
