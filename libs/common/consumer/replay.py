"""Rebuilding a read model from events, skipping (and reporting) parked and failing ones."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from libs.common import deadletters, ids
from libs.common.consumer.projection import Projection
from libs.common.eventstore import utcnow
from libs.common.messaging import Envelope
from libs.common.outages import is_transient

log = logging.getLogger("checkout.consumer")


@dataclass(frozen=True)
class Skipped:
    event_id: uuid.UUID
    event_type: str
    reason: str


@dataclass
class RebuildReport:
    applied: int = 0
    skipped: list[Skipped] = field(default_factory=list)


async def rebuild(
    pool: asyncpg.Pool,
    projection: Projection,
    events: Sequence[Envelope],
    reset_sql: str,
    *,
    service: str = "",
    progress: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Drops a read model (`reset_sql`) and re-applies `events` in order, in one transaction.
    `progress(n)` is told of each event done (applied or skipped): checkout-admin's progress bar.

    Events parked as dead letters are skipped, as the live consumer skipped them, so the result
    equals the live read model. An event that fails now is parked (and skipped) rather than
    aborting the rebuild; an outage still aborts it (nothing is changed then)."""
    report = RebuildReport()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(reset_sql)
        await conn.execute("DELETE FROM processed_events WHERE projection = $1", projection.name)
        parked = await deadletters.parked_event_ids(conn, projection.name)
        for event in events:
            if progress is not None:
                progress(1)
            if event.id in parked:
                report.skipped.append(Skipped(event.id, event.type, "parked as a dead letter"))
                continue
            try:
                async with conn.transaction():  # a savepoint per event
                    await conn.execute(
                        "INSERT INTO processed_events (projection, event_id) VALUES ($1, $2)",
                        projection.name,
                        event.id,
                    )
                    await projection.apply(conn, event)
            except Exception as error:
                if is_transient(error):
                    raise
                failure = deadletters.Failure(utcnow(), 1, deadletters.describe(error))
                await deadletters.park(
                    conn,
                    consumer=f"rebuild:{projection.name}",
                    projection=projection.name,
                    event=event,
                    failure=failure,
                    slot=ids.slot_of(event.aggregate_id),
                    service=service,
                )
                parked.add(event.id)
                report.skipped.append(Skipped(event.id, event.type, failure.error))
                log.warning("rebuild of %s skipped event %s: %s", projection.name, event.id, failure.error)
                continue
            report.applied += 1
    return report
