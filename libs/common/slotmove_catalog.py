"""Which rows belong to a slot: the tables a merchant's data lives in, per service schema.

Every table a merchant's data lives in names, in one of its columns, an id that carries the
owner's slot (libs/common/ids.py); `CATALOG` lists them per service schema, parents before
children (foreign keys), with that column. `describe` reads each one's columns and primary key
as a database has them, the `Table` the copy engine (libs/common/slotmove.py) works on.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.db import Connection
from libs.common.shardmap import SLOT_COUNT

# The slot of a row, per table (mostly that of an id column, by the schema's slot_of), in the
# order a copy must insert them. Tables not here are a shard's own state, not a merchant's: the relay's
# cursor, the watchers' chain_blocks, the analytics rollups (kept by a trigger on daily_metrics).
_SCOPE_ID = (
    "{slot_of}(substring({row}.scope from "
    "'[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}')::uuid)"
)
_EVENT_STORE = (
    ("streams", "{slot_of}({row}.aggregate_id)"),
    ("events", "{slot_of}({row}.aggregate_id)"),
    ("aggregate_snapshots", "{slot_of}({row}.aggregate_id)"),
    ("command_log", _SCOPE_ID),
    ("processed_events", "{slot_of}({row}.event_id)"),
    ("dead_letters", "{slot_of}({row}.event_id)"),
)
CATALOG: dict[str, tuple[tuple[str, str], ...]] = {
    "merchant": (
        *_EVENT_STORE,
        ("merchants", "{slot_of}({row}.id)"),
        ("api_keys", "{slot_of}({row}.merchant_id)"),
        ("webhook_endpoints", "{slot_of}({row}.merchant_id)"),
        ("webhook_endpoint_health", "{slot_of}({row}.endpoint_id)"),
        ("webhook_secrets", "{slot_of}({row}.merchant_id)"),
        ("invoice_summaries", "{slot_of}({row}.merchant_id)"),
        ("webhook_events", "{slot_of}({row}.merchant_id)"),
        ("webhook_deliveries", "{slot_of}({row}.merchant_id)"),
        ("webhook_attempts", "{slot_of}({row}.delivery_id)"),
        ("notification_templates", "{slot_of}({row}.merchant_id)"),
        ("notification_deliveries", "{slot_of}({row}.merchant_id)"),
        ("event_feed_heads", "{slot_of}({row}.merchant_id)"),
        ("event_feed", "{slot_of}({row}.merchant_id)"),
        ("email_claims", "{row}.slot"),  # the email's slot, which the merchant's id may not carry
    ),
    "invoice": (
        *_EVENT_STORE,
        ("merchant_profiles", "{slot_of}({row}.merchant_id)"),
        ("address_allocations", "{slot_of}({row}.merchant_id)"),
        ("invoices", "{slot_of}({row}.id)"),
        ("payments", "{slot_of}({row}.invoice_id)"),
        ("audit_entries", "{slot_of}({row}.invoice_id)"),
        ("refunds", "{slot_of}({row}.invoice_id)"),
    ),
    "customer": (
        *_EVENT_STORE,
        ("customers", "{slot_of}({row}.merchant_id)"),
        ("payment_history", "{slot_of}({row}.invoice_id)"),
    ),
    "analytics": (
        *_EVENT_STORE,
        ("merchant_directory", "{slot_of}({row}.merchant_id)"),
        ("daily_metrics", "{slot_of}({row}.merchant_id)"),
        ("paid_invoices", "{slot_of}({row}.invoice_id)"),
    ),
}
# A shard's own tables: never moved (the coverage test holds every other table to CATALOG).
SHARD_LOCAL = frozenset(
    {
        "schema_migrations",
        "alembic_version",
        "relay_state",
        "relay_published",
        "slot_fences",
        "slot_changes",
        "chain_blocks",
        "platform_daily",
        "merchant_activity",
        "merchant_currencies",
    }
)


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    key: str  # the row's slot: SQL templated with {row} (the row's name) and {slot_of}
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]
    partitioned: bool

    @property
    def qualified(self) -> str:
        return f'"{self.schema}"."{self.name}"'

    def slot_of(self, row: str) -> str:
        """The SQL for the slot of the row named `row`."""
        return self.key.format(row=row, slot_of=f'"{self.schema}".slot_of')

    @property
    def order(self) -> tuple[str, ...]:
        """The order rows are copied in: the source's store order for events (an aggregate's
        events must reach the target in their order, and ids are not ordered within a
        millisecond), the primary key otherwise."""
        return ("sequence_number",) if self.immutable else self.primary_key

    @property
    def immutable(self) -> bool:
        """Events are never updated: a copy inserts or leaves them (and keeps T's sequence)."""
        return self.name == "events"


@dataclass(frozen=True)
class SlotRange:
    """Inclusive, as operators write them ("0-511")."""

    first: int
    last: int


async def describe(conn: Connection, schema: str) -> list[Table]:
    """The catalog's tables of `schema` as this database has them (columns, primary key)."""
    tables = []
    for name, key in CATALOG[schema]:
        rows = await conn.fetch(
            """SELECT a.attname, c.relkind::text AS relkind
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               WHERE n.nspname = $1 AND c.relname = $2 ORDER BY a.attnum""",
            schema,
            name,
        )
        if not rows:
            raise LookupError(f"{schema}.{name} is missing (are the migrations applied?)")
        columns = tuple(
            r["attname"] for r in rows if not (name == "events" and r["attname"] == "sequence_number")
        )
        pk = await conn.fetch(
            """SELECT a.attname FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
               WHERE i.indrelid = $1::regclass AND i.indisprimary
               ORDER BY array_position(i.indkey, a.attnum)""",
            f'"{schema}"."{name}"',
        )
        tables.append(
            Table(schema, name, key, columns, tuple(r["attname"] for r in pk), rows[0]["relkind"] == "p")
        )
    return tables


def parse_slots(text: str) -> SlotRange:
    """ "0-511" or "7" as an inclusive range; ValueError names what is wrong."""
    first, _, last = text.strip().partition("-")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError:
        raise ValueError('slots must be a slot or a range of slots, e.g. "0-511"') from None
    if not 0 <= lo <= hi < SLOT_COUNT:
        raise ValueError(f"slots must lie within 0-{SLOT_COUNT - 1}, the first not after the last")
    return SlotRange(lo, hi)
