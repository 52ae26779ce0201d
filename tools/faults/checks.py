"""What must hold after any fault: every stored event is on JetStream and applied by every
projection that subscribes to it (or parked as a dead letter, which is reported).

Read straight from the shard databases and the stream, so it checks the services rather than
asking them: each service's `events` table, each durable consumer (its name says service,
projection and shard; its filter says the event types), and each consumer's `processed_events`
and `dead_letters` rows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs.common.config import SERVICES, Config
from libs.common.messaging import Envelope


@dataclass(frozen=True)
class Durable:
    name: str
    service: str
    projection: str
    shard: int
    event_types: frozenset[str]


@dataclass
class EventAudit:
    stored: int = 0
    on_stream: int = 0
    duplicates_on_stream: int = 0  # the same event id under two stream sequences
    unpublished: list[uuid.UUID] = field(default_factory=list)
    unapplied: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    parked: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # messages a durable has not acked yet

    @property
    def missing(self) -> int:
        return len(self.unpublished) + sum(len(v) for v in self.unapplied.values())

    @property
    def settled(self) -> bool:
        return self.missing == 0 and not any(self.pending.values())

    def summary(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "on_stream": self.on_stream,
            "duplicates_on_stream": self.duplicates_on_stream,
            "unpublished": len(self.unpublished),
            "unapplied": {k: len(v) for k, v in self.unapplied.items() if v},
            "parked": {k: v for k, v in self.parked.items() if v},
            "pending": {k: v for k, v in self.pending.items() if v},
        }


def parse_durable(name: str, filters: list[str], subject_prefix: str) -> Durable | None:
    """`invoice-merchant_profiles-s0` with filters `<prefix>.s0.merchant.created`, ..."""
    service, _, rest = name.partition("-")
    projection, _, shard = rest.rpartition("-s")
    if service not in SERVICES or not projection or not shard.isdigit():
        return None
    head = f"{subject_prefix}.s{shard}."
    types = frozenset(f.removeprefix(head) for f in filters if f.startswith(head))
    return Durable(name, service, projection, int(shard), types)


async def durables(js: JetStreamContext, config: Config) -> list[Durable]:
    found: list[Durable] = []
    for info in await js.consumers_info(config.stream_name):
        filters = info.config.filter_subjects or (
            [info.config.filter_subject] if info.config.filter_subject else []
        )
        durable = parse_durable(info.name, list(filters), config.subject_prefix)
        if durable is not None:
            found.append(durable)
    return found


async def stream_event_ids(js: JetStreamContext, config: Config) -> Counter[uuid.UUID]:
    """How many times each event id is on the stream (more than once: a duplicate)."""
    counts: Counter[uuid.UUID] = Counter()
    try:
        info = await js.stream_info(config.stream_name)
    except NotFoundError:
        return counts
    first, last = info.state.first_seq, info.state.last_seq
    for seq in range(first, last + 1):
        try:
            message = await js.get_msg(config.stream_name, seq)
        except NotFoundError:
            continue
        if message.data:
            counts[Envelope.from_bytes(message.data).id] += 1
    return counts


async def _shard_rows(config: Config, shard: int, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(config.shard_dsn(shard))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def stored_events(config: Config) -> dict[int, dict[uuid.UUID, str]]:
    """Every event of every service, per shard: id -> type."""
    found: dict[int, dict[uuid.UUID, str]] = {}
    for shard in config.shards:
        events: dict[uuid.UUID, str] = {}
        schemas = await _shard_rows(
            config,
            shard,
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'events' "
            "AND table_schema = ANY($1::text[])",
            list(SERVICES),
        )
        for row in schemas:
            rows = await _shard_rows(
                config, shard, f'SELECT id, event_type FROM "{row["table_schema"]}".events'
            )
            events.update({r["id"]: r["event_type"] for r in rows})
        found[shard] = events
    return found


async def audit_events(config: Config, js: JetStreamContext) -> EventAudit:
    audit = EventAudit()
    stored = await stored_events(config)
    on_stream = await stream_event_ids(js, config)
    audit.stored = sum(len(events) for events in stored.values())
    audit.on_stream = len(on_stream)
    audit.duplicates_on_stream = sum(n - 1 for n in on_stream.values() if n > 1)
    audit.unpublished = sorted(i for events in stored.values() for i in events if i not in on_stream)
    for durable in await durables(js, config):
        expected = {i for i, t in stored[durable.shard].items() if t in durable.event_types}
        schema = durable.service
        applied = await _shard_rows(
            config,
            durable.shard,
            f'SELECT event_id FROM "{schema}".processed_events WHERE projection = $1',
            durable.projection,
        )
        parked = await _shard_rows(
            config,
            durable.shard,
            f'SELECT event_id FROM "{schema}".dead_letters WHERE projection = $1',
            durable.projection,
        )
        done = {r["event_id"] for r in applied} | {r["event_id"] for r in parked}
        audit.unapplied[durable.name] = sorted(expected - done)
        audit.parked[durable.name] = len(parked)
        info = await js.consumer_info(config.stream_name, durable.name)
        audit.pending[durable.name] = info.num_pending + info.num_ack_pending
    return audit


async def settled_audit(config: Config, timeout: float = 60.0) -> EventAudit:
    """Audits until every event is published and applied, or the deadline passes (then the last
    audit says what is missing)."""
    nc = await nats.connect(config.nats_url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            audit = await audit_events(config, js)
            if audit.settled or time.monotonic() > deadline:
                return audit
            await asyncio.sleep(0.5)
    finally:
        await nc.close()
