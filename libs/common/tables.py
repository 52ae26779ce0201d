"""The event store's tables, which every service keeps in its own schema on every shard.

SQLAlchemy Core metadata, declared once: the Alembic revisions are checked against it
(tests/common/test_schema.py) and composed queries are written on it. Tables carry no schema:
a service's connections set `search_path` to its own schema (libs/common/db.py), so one table
object serves every service and shard. The hot paths (append, relay, the consumers' tracking
writes) stay raw asyncpg SQL on the same tables.

Each service's metadata starts as a copy of these (`service_metadata`), then adds its own.
Partitions (`events_2026_11`, ...) are not declared: the services create them ahead of time
(libs/common/partitions.py), and the schema check leaves them out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.types import UserDefinedType


class XID8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (`pg_current_xact_id()`), which SQLAlchemy lacks."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "XID8"


# Reflection (Alembic's comparison) names column types by this map; without the entry it warns
# and compares xid8 columns as NullType, so a changed type would go unseen.
ischema_names.setdefault("xid8", XID8)

TIMESTAMPTZ = DateTime(timezone=True)
NOW = text("now()")

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("aggregate_id", UUID(as_uuid=True), nullable=False),
    Column("aggregate_type", String(50), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("event_version", Integer, nullable=False),
    Column("event_data", JSONB, nullable=False),
    Column("metadata", JSONB),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    # BIGSERIAL: the sequence is the global order the relay publishes in.
    Column(
        "sequence_number",
        BigInteger,
        Sequence("events_sequence_number_seq"),
        nullable=False,
        server_default=text("nextval('events_sequence_number_seq'::regclass)"),
    ),
    # The writing transaction: the relay reads only what no open transaction can precede.
    Column("transaction_id", XID8, nullable=False, server_default=text("pg_current_xact_id()")),
    # A primary key of a partitioned table must include the partition key.
    PrimaryKeyConstraint("id", "created_at"),
    Index("idx_events_aggregate_lookup", "aggregate_id", "event_version"),
    Index("idx_events_sequence", "sequence_number"),
    Index("idx_events_created_at", "created_at"),
    Index("idx_events_metadata_gin", "metadata", postgresql_using="gin"),
    Index("idx_events_transaction", "transaction_id", "sequence_number"),
    postgresql_partition_by="RANGE (created_at)",  # monthly partitions, made ahead by the service
)
Index("idx_events_type_timeline", events.c.aggregate_type, events.c.created_at.desc())

# The head row per stream guards concurrency (`UPDATE ... WHERE version = expected`): a unique
# (aggregate_id, event_version) on `events` would have to include the partition key.
streams = Table(
    "streams",
    metadata,
    Column("aggregate_id", UUID(as_uuid=True), primary_key=True),
    Column("aggregate_type", String(50), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
)

aggregate_snapshots = Table(
    "aggregate_snapshots",
    metadata,
    Column("aggregate_id", UUID(as_uuid=True), primary_key=True),
    Column("aggregate_type", String(50), nullable=False),
    Column("version", Integer, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
)

# First result of each idempotent command, replayed to a retry with the same key.
command_log = Table(
    "command_log",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("idempotency_key", Text, primary_key=True),
    Column("request_hash", Text, nullable=False),
    Column("response", LargeBinary),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
)

# The relay's cursor (libs/common/relay.py explains floor, pending, cut and the late_* pair).
relay_state = Table(
    "relay_state",
    metadata,
    Column("name", Text, primary_key=True),
    Column("floor", XID8, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("pending", ARRAY(XID8), nullable=False, server_default=text("'{}'::xid8[]")),
    Column("cut", BigInteger, nullable=False, server_default=text("0")),
    Column("late_floor", XID8),
    Column("late_pending", ARRAY(XID8), nullable=False, server_default=text("'{}'::xid8[]")),
)

# No longer written nor read (the relay's cursor replaced it); left in place, empty.
relay_published = Table(
    "relay_published",
    metadata,
    Column("name", Text, primary_key=True),
    Column("transaction_id", XID8, primary_key=True),
)

# Events a consumer has applied, written in the same transaction as its read-model change.
processed_events = Table(
    "processed_events",
    metadata,
    Column("projection", Text, primary_key=True),
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("processed_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
)

# Events a projection consumer gave up on, parked for the operator (GET /v1/admin/dead-letters).
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("consumer", Text, nullable=False),
    Column("projection", Text, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_seen_at", TIMESTAMPTZ, nullable=False),
    Column("last_seen_at", TIMESTAMPTZ, nullable=False),
    Column("envelope", JSONB, nullable=False),
    UniqueConstraint("projection", "event_id"),
)
Index("idx_dead_letters_newest", dead_letters.c.id.desc())

# The slot ranges this shard is giving away (libs/common/slotmove.py): while `copying`, writes to
# their rows are recorded in slot_changes for the mover's catch-up; once `moved`, such a write
# fails with SQLSTATE CKMOV. A `moved` row stays: a process with an old shard map is refused.
slot_fences = Table(
    "slot_fences",
    metadata,
    Column("move_id", BigInteger, primary_key=True, autoincrement=False),
    Column("first_slot", Integer, nullable=False),
    Column("last_slot", Integer, nullable=False),  # inclusive
    Column("to_shard", Integer, nullable=False),
    Column("state", Text, CheckConstraint("state IN ('copying', 'moved')"), nullable=False),
)

# Rows written in a moving slot since its move began: table and primary key, in write order.
slot_changes = Table(
    "slot_changes",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("move_id", BigInteger, nullable=False),
    Column("table_name", Text, nullable=False),
    Column("row_key", JSONB, nullable=False),
    Index("idx_slot_changes_move", "move_id", "id"),
)


def service_metadata() -> MetaData:
    """A service's own metadata, holding a copy of the event-store tables (a table belongs to
    one MetaData, and each service's migrations compare against all the tables of its schema)."""
    own = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(own)
    return own
