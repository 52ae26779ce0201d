"""Dead letters: events a projection could not apply, parked so that one bad event never stalls
the events after it.

`Parking` is the decision (count an event's failures, ignore outages, say when to give up) and
the `dead_letters` table (migration 0002) is the record. The consumer uses both one event at a
time; a consumer that applies batches falls back to one-by-one for a batch that fails, so only
the failing event is counted and parked. Parked events are not in `processed_events`: a rebuild
skips them too (the rebuilt read model equals the live one), and the operator's retry applies
them through the projection like a first delivery.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import asyncpg

from libs.common import ids, metrics
from libs.common.db import Connection
from libs.common.eventstore import utcnow
from libs.common.messaging import Envelope
from libs.common.outages import is_transient

ERROR_MAX_CHARS = 2000
# Failures remembered per consumer; an event forgotten (after this many others failed) starts
# counting again, which only delays its parking.
TRACKED_FAILURES_MAX = 10_000

COLUMNS = (
    "id, consumer, projection, event_id, event_type, error, attempts, first_seen_at, last_seen_at, envelope"
)


@dataclass(frozen=True)
class DeadLetter:
    id: uuid.UUID
    consumer: str
    projection: str
    event_id: uuid.UUID
    event_type: str
    error: str
    attempts: int
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    envelope: dict[str, Any]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> DeadLetter:
        values = {key: row[key] for key in COLUMNS.split(", ")}
        if isinstance(values["envelope"], str):  # a connection without the pools' JSON codec
            values["envelope"] = json.loads(values["envelope"])
        return cls(**values)

    def event(self) -> Envelope:
        return Envelope.from_bytes(json.dumps(self.envelope).encode())


@dataclass
class Failure:
    first_seen_at: dt.datetime
    attempts: int
    error: str


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:ERROR_MAX_CHARS]


class Parking:
    """One consumer's count of each event's failures, and the point at which it gives up.

    Outages and serialization conflicts (libs/common/outages.is_transient) are not the event's
    fault and never count: a database restart must not park every event that arrived during it.
    Counts live in memory: after a restart an event gets up to `max_attempts` fresh tries.
    """

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self._failures: OrderedDict[uuid.UUID, Failure] = OrderedDict()

    def failed(self, event_id: uuid.UUID, error: BaseException) -> Failure | None:
        """Records a failure; returns it when the event is to be parked now, else None."""
        if is_transient(error):
            return None
        failure = self._failures.pop(event_id, None) or Failure(utcnow(), 0, "")
        failure.attempts += 1
        failure.error = describe(error)
        # Kept until forgotten, so a park that fails (the database went away) is tried again.
        self._failures[event_id] = failure
        while len(self._failures) > TRACKED_FAILURES_MAX:
            self._failures.popitem(last=False)
        return failure if failure.attempts >= self.max_attempts else None

    def forget(self, event_id: uuid.UUID) -> None:
        """The event was applied or parked."""
        self._failures.pop(event_id, None)


async def park(
    conn: Connection,
    *,
    consumer: str,
    projection: str,
    event: Envelope,
    failure: Failure,
    slot: int,
    service: str,
) -> uuid.UUID:
    """Writes (or adds to) the event's dead letter; returns its id."""
    now = utcnow()
    letter_id: uuid.UUID = await conn.fetchval(
        f"""INSERT INTO dead_letters ({COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb)
            ON CONFLICT (projection, event_id) DO UPDATE
            SET error = EXCLUDED.error, attempts = dead_letters.attempts + EXCLUDED.attempts,
                last_seen_at = EXCLUDED.last_seen_at, consumer = EXCLUDED.consumer
            RETURNING id""",
        ids.new_id(slot),
        consumer,
        projection,
        event.id,
        event.type,
        failure.error,
        failure.attempts,
        failure.first_seen_at,
        now,
        event.to_bytes().decode(),
    )
    metrics.DEAD_LETTERS_PARKED.labels(service, projection).inc()
    return letter_id


async def parked_event_ids(conn: Connection, projection: str) -> set[uuid.UUID]:
    rows = await conn.fetch("SELECT event_id FROM dead_letters WHERE projection = $1", projection)
    return {r["event_id"] for r in rows}


async def fetch(conn: Connection, letter_id: uuid.UUID, *, lock: bool = False) -> DeadLetter | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM dead_letters WHERE id = $1{' FOR UPDATE' if lock else ''}", letter_id
    )
    return DeadLetter.from_row(row) if row else None


async def listing(
    conn: Connection,
    *,
    limit: int,
    before: uuid.UUID | None = None,
    projection: str = "",
    event_type: str = "",
) -> list[DeadLetter]:
    """Newest first (ids are time-ordered), after the cursor `before`, optionally filtered."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM dead_letters
            WHERE ($1::uuid IS NULL OR id < $1) AND ($2 = '' OR projection = $2)
              AND ($3 = '' OR event_type = $3)
            ORDER BY id DESC LIMIT $4""",
        before,
        projection,
        event_type,
        limit,
    )
    return [DeadLetter.from_row(r) for r in rows]


async def remove(conn: Connection, letter_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM dead_letters WHERE id = $1", letter_id)


async def failed_again(conn: Connection, letter_id: uuid.UUID, error: str) -> DeadLetter | None:
    row = await conn.fetchrow(
        f"""UPDATE dead_letters SET attempts = attempts + 1, error = $2, last_seen_at = $3
            WHERE id = $1 RETURNING {COLUMNS}""",
        letter_id,
        error[:ERROR_MAX_CHARS],
        utcnow(),
    )
    return DeadLetter.from_row(row) if row else None


async def count(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM dead_letters"))
