"""The relay: committed events to JetStream in commit order, never skipping one.

Why not follow `sequence_number`: a bigserial value is taken at INSERT, not at COMMIT, so a
transaction holding sequence 7 can commit after one holding 8; a reader that moved past 8 would
never see 7. Instead every event records its writing transaction (`xid8`), and the relay reads
with the transaction snapshot of its own query: every transaction below the snapshot's `xmax`
that is not in its in-progress list (`xip`) has finished, every other one may still commit. So
after a pass that published all it saw, the events still to come belong to transactions at or
above `xmax` (the `floor`) or listed in `xip` (`pending`), and the next pass reads exactly those:
an index range from the floor plus a few index probes, never the backlog again. A transaction
that commits late is therefore published when it becomes visible, and each pass publishes in
sequence order, which is commit order per aggregate (the stream head lock makes a writer wait for
the previous writer of its aggregate to commit before it takes its sequence number).

A backlog larger than one batch is read in slices by sequence number: the cursor remembers the
last sequence published (`cut`) and the transactions still open when that slice was read
(`late_floor`, `late_pending`), whose events below the cut are published with the next slice.

Publishing keeps a window of acknowledgements in flight; only one event per aggregate is in
flight at a time, so even a reconnect in the middle of a window cannot store an aggregate's events
out of order. The cursor moves, once per batch, only after JetStream acknowledged every message;
a crash in between republishes them with the same `Nats-Msg-Id`, which JetStream de-duplicates.
The acks come back on one inbox of the relay's (libs/common/jspublish.py), not through nats-py's
`publish_async`, whose per-message machinery cost as much as the publish; a relay runs one pass
at a time (its loop, or a caller's `publish_pending`), and its window is that pass's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import asyncpg
import nats.errors
from nats.js import JetStreamContext
from opentelemetry import trace

from libs.common import telemetry, wakeups
from libs.common.db import Connection
from libs.common.jspublish import AckWindow
from libs.common.messaging import Wire, subject, wire_columns

log = logging.getLogger("checkout.relay")
tracer = trace.get_tracer("checkout.relay")

WINDOW = 256
ACK_TIMEOUT_SECONDS = 10.0
FIRST_SLICE = 100  # events of a pass's first read (the later ones read `batch_events`)

_SNAPSHOT = "pg_current_snapshot()::text AS snapshot"
# From xid 3 up: events a slot move copied in carry xid 2 (libs/common/slotmove.py COPIED_XID);
# they were published by the shard they came from, and no live transaction has an xid below 3.
# One statement, so the rows and the snapshot describe the same moment. The LEFT JOIN returns the
# snapshot even when there is nothing to publish.
_READ_NEW = f"""SELECT {_SNAPSHOT}, e.* FROM (SELECT 1) one LEFT JOIN LATERAL (
    SELECT {wire_columns("$4")} FROM events
    WHERE transaction_id >= greatest($1::text::xid8, '3') OR transaction_id = ANY($2::text[]::xid8[])
    ORDER BY sequence_number LIMIT $3) e ON true ORDER BY e.sequence_number"""
_READ_SLICE = f"""SELECT {_SNAPSHOT}, e.* FROM (SELECT 1) one LEFT JOIN LATERAL (
    (SELECT {wire_columns("$7")} FROM events
     WHERE (transaction_id >= greatest($1::text::xid8, '3') OR transaction_id = ANY($2::text[]::xid8[]))
       AND sequence_number > $4
     ORDER BY sequence_number LIMIT $3)
    UNION ALL
    (SELECT {wire_columns("$7")} FROM events
     WHERE (transaction_id >= greatest($5::text::xid8, '3') OR transaction_id = ANY($6::text[]::xid8[]))
       AND sequence_number <= $4)) e ON true ORDER BY e.sequence_number"""


_CURSOR_COLUMNS = (
    "floor::text AS floor, pending::text[] AS pending, cut, late_floor::text AS late_floor, "
    "late_pending::text[] AS late_pending"
)


@dataclass(frozen=True)
class Cursor:
    """Which transactions may still hold unpublished events (see the module docstring)."""

    floor: int = 0
    pending: tuple[int, ...] = ()
    cut: int = 0
    late_floor: int | None = None
    late_pending: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class Snapshot:
    xmax: int
    xip: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        _, xmax, xip = text.split(":")
        return cls(int(xmax), tuple(int(x) for x in xip.split(",") if x))


def _xids(values: tuple[int, ...]) -> list[str]:
    return [str(v) for v in values]


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
        batch_events: int = 1000,
        window: int = WINDOW,
        name: str = "jetstream",
    ) -> None:
        self.pool = pool
        self.js = js
        self.schema = schema
        self.shard = shard
        self.notify_channel = notify_channel
        self.subject_prefix = subject_prefix
        self.poll_seconds = poll_seconds
        self.batch = batch_events
        self.window = window
        self.name = name
        self.published = 0
        self._wake = asyncio.Event()
        # Set while run() holds the relay's lock: its cursor is then the only one and lives here.
        self._session: Connection | None = None
        self._cursor: Cursor | None = None
        self._acks: AckWindow | None = None

    def wake(self) -> None:
        self._wake.set()

    # -- the cursor --------------------------------------------------------------------------------
    async def _load(self, conn: Connection) -> Cursor:
        # DO NOTHING and a plain read, not DO UPDATE: loading takes no row lock.
        row = await conn.fetchrow(
            f"""WITH created AS (
                    INSERT INTO relay_state (name, floor) VALUES ($1, '0') ON CONFLICT (name) DO NOTHING
                    RETURNING {_CURSOR_COLUMNS})
                SELECT * FROM created
                UNION ALL SELECT {_CURSOR_COLUMNS} FROM relay_state WHERE name = $1""",
            self.name,
        )
        assert row is not None
        return Cursor(
            floor=int(row["floor"]),
            pending=tuple(int(x) for x in row["pending"]),
            cut=row["cut"],
            late_floor=int(row["late_floor"]) if row["late_floor"] is not None else None,
            late_pending=tuple(int(x) for x in row["late_pending"]),
        )

    async def _save(self, conn: Connection, cursor: Cursor) -> None:
        await conn.execute(
            """UPDATE relay_state SET floor = $2::text::xid8, pending = $3::text[]::xid8[], cut = $4,
                   late_floor = $5::text::xid8, late_pending = $6::text[]::xid8[], updated_at = NOW()
               WHERE name = $1""",
            self.name,
            str(cursor.floor),
            _xids(cursor.pending),
            cursor.cut,
            None if cursor.late_floor is None else str(cursor.late_floor),
            _xids(cursor.late_pending),
        )

    # -- passes ------------------------------------------------------------------------------------
    async def publish_pending(self) -> int:
        """One pass; returns how many events it published."""
        return await self._passes(once=True)

    async def publish_all(self) -> int:
        """Passes until one finds nothing; returns how many events they published. Each pass
        reads the next batch while the previous one is being acknowledged."""
        return await self._passes(once=False)

    async def _passes(self, *, once: bool) -> int:
        if self._session is not None:
            return await self._run_passes(self._session, once)
        async with self.pool.acquire() as conn:
            return await self._run_passes(conn, once)

    async def _run_passes(self, conn: Connection, once: bool) -> int:
        cursor = self._cursor if self._session is not None and self._cursor is not None else None
        if cursor is None:
            cursor = await self._load(conn)
        total = 0
        window = _Window(self, self.window)
        # (the futures of a batch sent but not yet known to be stored, the cursor after it)
        unsaved: tuple[Sent, Cursor] | None = None
        try:
            # A short first slice: publishing starts after a small read, not a full one.
            batch, moved = await self._read(conn, cursor, self.batch if once else FIRST_SLICE)
            while batch:
                sending = asyncio.ensure_future(window.send(batch))
                try:
                    # The cursor a pass moves to is known once it has read, so the next read need
                    # not wait for this batch's acks; only saving the cursor does. The previous
                    # batch's cursor is saved meanwhile (its acks came in while this one is sent),
                    # so the window never empties between batches.
                    ahead = None if once else await self._read(conn, moved, self.batch)
                    if unsaved is not None:
                        await self._saved(conn, window, *unsaved)
                        unsaved = None
                finally:
                    sent = await sending
                unsaved = (sent, moved)
                total += len(batch)
                cursor = moved
                if ahead is None:
                    break
                batch, moved = ahead
            else:
                # Nothing (more) to publish: the saved cursor stays valid and this one only
                # narrows it, but a saved slice is replaced, so the next read is the plain one.
                if unsaved is not None:
                    unsaved = (unsaved[0], moved)
                elif cursor.cut or cursor.late_floor is not None:
                    await self._save(conn, moved)
                cursor = moved
            if unsaved is not None:
                await self._saved(conn, window, *unsaved)
        finally:
            window.abandon()
        self._cursor = cursor if self._session is not None else None
        return total

    async def _saved(self, conn: Connection, window: _Window, sent: Sent, cursor: Cursor) -> None:
        """Saves `cursor` once JetStream has stored every message sent before it."""
        await window.stored(sent)
        await self._save(conn, cursor)
        self.published += sent.events

    async def _read(self, conn: Connection, cursor: Cursor, limit: int) -> tuple[list[Wire], Cursor]:
        """Up to `limit` events after `cursor`, and the cursor to save once they are published."""
        if cursor.late_floor is None and not cursor.cut:
            rows = await conn.fetch(_READ_NEW, str(cursor.floor), _xids(cursor.pending), limit, self.shard)
        else:
            rows = await conn.fetch(
                _READ_SLICE,
                str(cursor.floor),
                _xids(cursor.pending),
                limit,
                cursor.cut,
                None if cursor.late_floor is None else str(cursor.late_floor),
                _xids(cursor.late_pending),
                self.shard,
            )
        snapshot = Snapshot.parse(rows[0]["snapshot"])
        events = [Wire.from_row(r) for r in rows if r["id"] is not None]
        if sum(1 for e in events if e.sequence_number > cursor.cut) >= limit:
            # Events after the cut wait for the next slice; those of transactions open now and
            # below the cut are found through late_floor / late_pending.
            moved = replace(
                cursor, cut=events[-1].sequence_number, late_floor=snapshot.xmax, late_pending=snapshot.xip
            )
        else:
            moved = Cursor(floor=snapshot.xmax, pending=snapshot.xip)
        return events, moved

    async def _publish_traced(self, acks: AckWindow, topic: str, event: Wire) -> int:
        """The publish as a PRODUCER span under the writer's, ended by the stream's ack; the
        message's headers carry this span to the consumers."""
        span = tracer.start_span(
            f"publish {event.type}",
            context=telemetry.extract(event.headers),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "publish",
                "messaging.destination.name": topic,
                "messaging.message.id": event.id,
            },
        )
        headers = {**event.headers, **telemetry.inject(trace.set_span_in_context(span))}
        return await acks.publish(topic, event.payload, headers, span)

    def acks(self) -> AckWindow:
        """The relay's ack inbox (one subscription, made on the first publish)."""
        if self._acks is None:
            # JetStreamContext keeps its connection private; the acks arrive on that connection.
            self._acks = AckWindow(self.js._nc)
        return self._acks

    # -- running -----------------------------------------------------------------------------------
    def _lock_key(self) -> int:
        return int.from_bytes(
            hashlib.sha256(f"relay:{self.schema}:{self.name}".encode()).digest()[:8], signed=True
        )

    async def run(self) -> None:
        """Publishes until cancelled. Only one relay per shard schema runs at a time (advisory
        lock), so replicas of a service do not race each other's cursor."""
        conn = await self.pool.acquire()
        changed_session = getattr(conn, "changed_session", None)
        if changed_session is not None:
            changed_session()  # the lock, LISTEN and plan mode are reset when it goes back
        locked = False

        def notified(*_: object) -> None:
            self._wake.set()

        try:
            # The cursor's values decide the plan (a range from a recent floor is a few index
            # pages); a generic plan cannot know that.
            await conn.execute("SET plan_cache_mode = force_custom_plan")
            while not (locked := await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key())):
                await asyncio.sleep(self.poll_seconds * 5)
            await conn.add_listener(self.notify_channel, notified)
            wakeups.serve(self.pool, self.notify_channel, self.wake)
            self._session, self._cursor = conn, None
            log.info("relay for %s shard %d started", self.schema, self.shard)
            while True:
                if _lost(conn):
                    # The session holding our LISTEN and the lock is gone (a database restart):
                    # end this run, and the runtime's supervisor starts a fresh one.
                    raise asyncpg.InterfaceError(
                        f"relay {self.schema} shard {self.shard}: its session was lost"
                    )
                self._wake.clear()
                try:
                    published = await self.publish_all()
                except (asyncpg.PostgresError, OSError, TimeoutError, nats.errors.Error) as error:
                    log.warning("relay %s shard %d pass failed, retrying: %s", self.schema, self.shard, error)
                    self._cursor = None  # re-read what was really saved
                    published = 0
                    await asyncio.sleep(self.poll_seconds)
                if published:
                    continue
                # A commit wakes us at once; the timeout is the fallback for a lost wake and for
                # transactions that were still open during the last pass.
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
                # arrives with its result, and then stop() would wait on this task for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wake.wait()
        finally:
            self._session, self._cursor = None, None
            wakeups.unserve(self.pool, self.notify_channel, self.wake)
            if self._acks is not None:
                acks, self._acks = self._acks, None
                with contextlib.suppress(Exception):
                    await acks.close()
            with contextlib.suppress(Exception):
                await conn.remove_listener(self.notify_channel, notified)
                if locked:
                    await conn.fetchval("SELECT pg_advisory_unlock($1)", self._lock_key())
            await self.pool.release(conn)

    async def lag(self) -> tuple[int, float]:
        """Events not yet published and the age in seconds of the oldest of them (0.0: none), for
        the relay-lag metrics: those of the transactions its saved cursor still waits on."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT count(*) AS events,
                          COALESCE(EXTRACT(EPOCH FROM now() - min(e.created_at)), 0)::float8 AS age
                   FROM events e, relay_state s
                   WHERE s.name = $1 AND (e.transaction_id >= s.floor OR e.transaction_id = ANY(s.pending))
                     AND (s.cut = 0 OR e.sequence_number > s.cut
                          OR e.transaction_id >= s.late_floor OR e.transaction_id = ANY(s.late_pending))""",
                self.name,
            )
            assert row is not None  # an aggregate always returns one row
            return int(row["events"]), max(0.0, float(row["age"]))


class _Window:
    """Publishes a pass's batches with up to `size` acknowledgements in flight, across batches;
    an aggregate's next event is sent only once its previous one is stored, so even a reconnect
    in the middle of a window cannot store an aggregate's events out of order."""

    def __init__(self, relay: Relay, size: int) -> None:
        self.relay = relay
        self.size = size
        self.acks = relay.acks()
        self.last_of: dict[str, int] = {}
        self.subjects: dict[str, str] = {}

    async def send(self, events: list[Wire]) -> Sent:
        """Sends `events` in order; returns the numbers of their acknowledgements (`stored`)."""
        relay, acks, last_of, subjects = self.relay, self.acks, self.last_of, self.subjects
        first = last = 0
        async with asyncio.timeout(ACK_TIMEOUT_SECONDS + len(events) / 1000):
            for event in events:
                previous = last_of.get(event.aggregate_id)
                if previous is not None and acks.pending(previous):
                    await acks.acked(previous)  # the aggregate's previous event is stored first
                while acks.in_flight >= self.size:
                    await acks.acked(acks.oldest())
                topic = subjects.get(event.type)
                if topic is None:
                    topic = subjects[event.type] = subject(relay.subject_prefix, relay.shard, event.type)
                if telemetry.sampled(event.headers):
                    last = await relay._publish_traced(acks, topic, event)
                else:
                    last = await acks.publish(topic, event.payload, event.headers, None)
                first = first or last
                last_of[event.aggregate_id] = last
        return Sent(first, last, len(events))

    async def stored(self, sent: Sent) -> None:
        async with asyncio.timeout(ACK_TIMEOUT_SECONDS):
            await self.acks.all_acked(sent.first, sent.last)

    def abandon(self) -> None:
        # A failed window leaves acks that will never come; forgetting them frees their slots.
        self.acks.reset()


class Sent(NamedTuple):
    """The acknowledgement numbers of a batch sent (`first` 0: nothing sent)."""

    first: int
    last: int
    events: int


def _lost(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # the pool took a dead connection back
        return True
