"""The event store: append with optimistic concurrency, load from snapshot + later events,
snapshots every N events.

Layered by capability: `EventStore` appends and reads rows; `Repository` turns aggregates into
rows and back; `Commands` (libs/common/commandlog.py) makes a command idempotent. Every method
takes the connection of an open transaction, so a service writes its events, its inline read
models and its command log atomically.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
    # The message an append was given, so the inline read models of the same command do not
    # parse the JSON it was just encoded to back again; None for an event read from the table.
    decoded: Message | None = field(default=None, compare=False, repr=False)

    def message(self) -> Message:
        if self.decoded is not None:
            return self.decoded
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
# (first append of the stream, one event) -> the CTEs `head` (one row if the head moved) and
# `appended` (the events' positions), the start of every append statement.
_APPEND_CTES = {
    (True, True): f"head AS ({_START_HEAD}), appended AS ({_INSERT_ONE})",
    (True, False): f"head AS ({_START_HEAD}), appended AS ({_INSERT_MANY})",
    (False, True): f"head AS ({_MOVE_HEAD}), appended AS ({_INSERT_ONE})",
    (False, False): f"head AS ({_MOVE_HEAD}), appended AS ({_INSERT_MANY})",
}
_APPEND_PARAMS = 9
# A connection that cannot tell us when its transaction ends (not from ShardPools) wakes the relay
# the old way, with a notification delivered at its commit (`{n}`: its parameter's number).
_NOTIFY_SUFFIX = ", pg_notify(${n}, '') IS NULL AS notified"


@dataclass(frozen=True)
class InlineWrite:
    """Read-model writes sent in the append's own statement, so a command that appends and
    writes its rows is one round trip, atomic without a transaction (no BEGIN and COMMIT).

    `ctes` is SQL of CTEs (`name AS (...)`, comma-separated) whose writes select `FROM head`, so
    they write nothing when the stream head refused the append; its parameters are numbered from
    $1 of `args`. `result` names the CTE whose one row the statement returns."""

    ctes: str
    args: Sequence[Any]
    result: str


@dataclass(frozen=True)
class Stream:
    """An aggregate's stream as an append expects to find it."""

    aggregate_id: uuid.UUID
    aggregate_type: str
    expected_version: int


@functools.cache
def _shifted(sql: str, by: int) -> str:
    """`sql` (our own statement text, never data) with each $n parameter renumbered to $n+by."""
    return re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + by}", sql)


@dataclass(frozen=True)
class _Append:
    """An append's statement start and parameters, and its events before their positions."""

    ctes: str
    args: list[Any]
    events: list[StoredEvent]

    def positioned(self, rows: Sequence[asyncpg.Record]) -> list[StoredEvent]:
        positions = {r["event_version"]: r for r in rows}
        return [
            replace(
                e,
                sequence_number=positions[e.version]["sequence_number"],
                transaction_id=int(positions[e.version]["transaction_id"]),
            )
            for e in self.events
        ]


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
        append = self._prepare(aggregate_id, aggregate_type, expected_version, new_events, metadata)
        rows = await self._send(conn, append, f"WITH {append.ctes} SELECT *", "appended", append.args)
        return append.positioned(rows)

    async def append_inline(
        self,
        conn: Connection,
        stream: Stream,
        new_events: Sequence[Message],
        inline: Callable[[list[StoredEvent]], InlineWrite],
    ) -> tuple[list[StoredEvent], asyncpg.Record]:
        """`append` and the read-model writes `inline` makes of the events, in one statement
        (atomic on its own, so it needs no transaction); returns the events and `result`'s row.
        ConcurrencyError when the head refused (then nothing was written)."""
        append = self._prepare(
            stream.aggregate_id, stream.aggregate_type, stream.expected_version, new_events, None
        )
        write = inline(append.events)
        ctes = _shifted(write.ctes, len(append.args))
        sql = (
            f"WITH {append.ctes}, {ctes} SELECT appended.event_version, appended.sequence_number, "
            f"appended.transaction_id, {write.result}.*"
        )
        rows = await self._send(conn, append, sql, f"appended, {write.result}", [*append.args, *write.args])
        return append.positioned(rows), rows[0]

    def _prepare(
        self,
        aggregate_id: uuid.UUID,
        aggregate_type: str,
        expected_version: int,
        new_events: Sequence[Message],
        metadata: dict[str, Any] | None,
    ) -> _Append:
        consistency.mark_write()  # the call's answer gets a consistency token
        meta = {**context.current().event_metadata(), **(metadata or {})}
        now = self.clock()
        slot = ids.slot_of(aggregate_id)
        stored = [
            StoredEvent(
                id=ids.new_id(slot),
                aggregate_id=aggregate_id,
                aggregate_type=aggregate_type,
                event_type=events.type_of(message),
                version=expected_version + offset + 1,
                data=events.encode(message),
                metadata=meta,
                created_at=now,
                sequence_number=0,  # known once inserted
                transaction_id=0,
                decoded=message,
            )
            for offset, message in enumerate(new_events)
        ]
        one = len(stored) == 1
        args: list[Any] = [aggregate_id, aggregate_type, expected_version, expected_version + len(stored)]
        if one:
            args += [stored[0].id, stored[0].event_type, json_dumps(stored[0].data)]
        else:
            args += [
                [e.id for e in stored],
                [e.event_type for e in stored],
                [json_dumps(e.data) for e in stored],
            ]
        args += [json_dumps(meta), now]
        assert len(args) == _APPEND_PARAMS
        return _Append(_APPEND_CTES[(expected_version == 0, one)], args, stored)

    async def _send(
        self, conn: Connection, append: _Append, select: str, sources: str, args: list[Any]
    ) -> list[asyncpg.Record]:
        """Runs `select` FROM `sources`, waking the relay once the events are committed."""
        after_release = getattr(conn, "after_release", None)
        if after_release is None:
            select += _NOTIFY_SUFFIX.format(n=len(args) + 1)
            args = [*args, self.notify_channel]
        rows = await conn.fetch(f"{select} FROM {sources}", *args)
        if not rows:
            first = append.events[0]
            raise ConcurrencyError(
                f"{first.aggregate_type} {first.aggregate_id} changed concurrently (expected version "
                f"{first.version - 1}); reload and retry"
            )
        if after_release is not None:
            after_release(self._committed)
        return rows

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
        await self._snapshot(conn, aggregate, expected)
        return stored

    async def save_inline(
        self, conn: Connection, aggregate: A, inline: Callable[[list[StoredEvent]], InlineWrite]
    ) -> tuple[list[StoredEvent], asyncpg.Record]:
        """`save` with the read-model writes `inline` makes, in the append's one statement (see
        `EventStore.append_inline`); needs no transaction. A snapshot due after it is a second
        statement: without a transaction a failure there loses only the snapshot, a cache."""
        expected = aggregate.version - len(aggregate.pending)
        stream = Stream(aggregate.id, aggregate.aggregate_type, expected)
        stored, row = await self.store.append_inline(conn, stream, aggregate.pending, inline)
        aggregate.pending = []
        await self._snapshot(conn, aggregate, expected)
        return stored, row

    async def _snapshot(self, conn: Connection, aggregate: A, expected: int) -> None:
        """A snapshot every `snapshot_every` versions, when the aggregate can take one."""
        if aggregate.version // self.snapshot_every > expected // self.snapshot_every:
            try:
                data = aggregate.snapshot()
            except NotImplementedError:
                return
            await self.store.save_snapshot(
                conn, aggregate.id, aggregate.aggregate_type, aggregate.version, data
            )


def json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
