"""The invoice service's tables (schema `invoice` on every shard), declared once.

Read models of the Invoice aggregate (invoices, payments, refunds, audit_entries), the address
allocator, the watchers' chain position, and this service's copy of the merchant data it needs.
The Alembic revisions in migrations/ are checked against this metadata; composed queries are
written on it.
"""

from __future__ import annotations

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from libs.common.tables import NOW, TIMESTAMPTZ, service_metadata
from services.invoice.state import (
    CLOSED_STATUSES,
    LIVE_PAYMENT_STATUSES,
    OPEN_STATUSES,
    PAYMENT_STATUSES,
    STATUSES,
)

metadata = service_metadata()

EMPTY_OBJECT = text("'{}'::jsonb")
# The status lists partial indexes carry, from the vocabulary (state.py), in its order. The queries
# those indexes serve (repository/watching.py) render the same lists into their text.
# What the watchers follow: statuses the chain can still change (not closed, not confirmed).
WATCHED_STATUSES = tuple(s for s in STATUSES if s not in CLOSED_STATUSES and s != "confirmed")
# What the expiry job may expire.
EXPIRABLE_STATUSES = tuple(s for s in STATUSES if s in OPEN_STATUSES)
# Payments still short of their confirmations: live, not yet confirmed.
CONFIRMING_PAYMENT_STATUSES = tuple(
    s for s in PAYMENT_STATUSES if s in LIVE_PAYMENT_STATUSES and s != "confirmed"
)

# An invoice's words plus one lexeme naming its merchant (the space in it is in no parsed word),
# so one GIN lookup answers "this merchant's invoices with these words". repository/invoices.py's
# SEARCH_DOCUMENT is this expression without the parentheses around `title || ' '`, which
# PostgreSQL prints (|| groups from the left, so both parse to one tree and the planner takes
# the query's for the index's); with them, the schema check can compare it with the index.
SEARCH_DOCUMENT = text(
    "(array_to_tsvector(ARRAY['merchant ' || merchant_id::text]) "
    "|| to_tsvector('english', (title || ' ') || coalesce(description, '')))"
)

# Money is NUMERIC (exact): fiat in its currency's minor unit, crypto to the asset's decimals.
invoices = Table(
    "invoices",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("customer_id", UUID(as_uuid=True)),
    Column("customer_email", String(254)),
    Column("title", String(200), nullable=False),
    Column("description", Text),
    Column("items", JSONB, nullable=False),
    Column("subtotal", Numeric, nullable=False),
    Column("tax", Numeric, nullable=False),
    Column("total", Numeric, nullable=False),
    Column("currency", String(10), nullable=False),
    Column("crypto_currency", String(20), nullable=False),
    Column("crypto_amount", Numeric, nullable=False),
    Column("amount_paid", Numeric, nullable=False, server_default=text("0")),
    Column("network", String(20), nullable=False),
    Column("address_index", BigInteger, nullable=False),
    Column("payment_address", String(100), nullable=False),
    Column("payment_uri", Text, nullable=False),
    Column("status", String(20), nullable=False, server_default=text("'pending'::character varying")),
    Column("exchange_rate", JSONB, nullable=False),
    Column("payment_tolerance", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("expires_at", TIMESTAMPTZ, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
    Column("paid_at", TIMESTAMPTZ),
    Column("overpaid", Boolean, nullable=False, server_default=text("false")),
    Column("paid_late", Boolean, nullable=False, server_default=text("false")),
    Column("status_reason", Text),
    # The total of refunds the watcher saw paid.
    Column("amount_refunded", Numeric, nullable=False, server_default=text("0")),
    Index("idx_invoices_merchant_search", SEARCH_DOCUMENT, postgresql_using="gin"),
)

Index(
    "idx_invoices_expires_pending",
    invoices.c.expires_at,
    postgresql_where=invoices.c.status.in_(EXPIRABLE_STATUSES),
)
Index("idx_invoices_payment_address", invoices.c.payment_address)
Index("idx_invoices_metadata_gin", invoices.c.metadata, postgresql_using="gin")
# Listing is newest first by id (ids are time-ordered), per merchant and per customer.
Index("idx_invoices_merchant_id", invoices.c.merchant_id, invoices.c.id.desc())
Index(
    "idx_invoices_customer",
    invoices.c.merchant_id,
    invoices.c.customer_id,
    invoices.c.id.desc(),
    postgresql_where=invoices.c.customer_id.isnot(None),
)
# The address allocator never hands an index out twice; this is the safety net if it ever did.
Index(
    "uq_invoices_merchant_network_address",
    invoices.c.merchant_id,
    invoices.c.network,
    invoices.c.payment_address,
    unique=True,
)
# What the watchers follow: open invoices, and closed ones still inside the late window.
Index("idx_invoices_network_expires", invoices.c.network, invoices.c.expires_at)
Index(
    "idx_invoices_network_open",
    invoices.c.network,
    invoices.c.id,
    postgresql_where=invoices.c.status.in_(WATCHED_STATUSES),
)
# A merchant's invoices in one status, newest first, windows included.
Index("idx_invoices_merchant_status_id", invoices.c.merchant_id, invoices.c.status, invoices.c.id.desc())

# Keyed by (tx_hash, output_index): one Bitcoin transaction can pay several invoices, and one EVM
# transaction carry its value and token transfers. output_index: ERC-20 log index, Bitcoin vout,
# -1 for an EVM transaction's value.
payments = Table(
    "payments",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("invoice_id", UUID(as_uuid=True), ForeignKey("invoices.id"), nullable=False),
    Column("tx_hash", String(100), nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("from_address", String(100)),
    Column("to_address", String(100), nullable=False),
    Column("status", String(20), nullable=False, server_default=text("'detected'::character varying")),
    Column("confirmations", Integer, nullable=False, server_default=text("0")),
    Column("required_confirmations", Integer, nullable=False),
    Column("block_number", BigInteger),
    Column("block_hash", String(100)),
    Column("network_fee", Numeric),
    Column("detected_at", TIMESTAMPTZ, nullable=False),
    Column("confirmed_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("merchant_id", UUID(as_uuid=True)),
    Column("network", String(20), nullable=False, server_default=text("''::character varying")),
    Column("output_index", Integer, nullable=False, server_default=text("0")),
    Column("asset", String(20), nullable=False, server_default=text("''::character varying")),
    Column("late", Boolean, nullable=False, server_default=text("false")),
    Column("status_reason", Text),
    Column("updated_at", TIMESTAMPTZ),
)
UNCONFIRMED = payments.c.status.in_(CONFIRMING_PAYMENT_STATUSES)
Index("idx_payments_status_pending", payments.c.status, payments.c.detected_at, postgresql_where=UNCONFIRMED)
Index("idx_payments_invoice", payments.c.invoice_id, payments.c.detected_at)
Index("uq_payments_tx_output", payments.c.tx_hash, payments.c.output_index, unique=True)
Index("idx_payments_open_network", payments.c.network, payments.c.block_number, postgresql_where=UNCONFIRMED)
# The payments export reads a merchant's payments in id order (keyset pages).
Index("idx_payments_merchant_id", payments.c.merchant_id, payments.c.id)

# Monthly partitions are made ahead by the service (ServiceSpec.partitioned); the primary key of
# a partitioned table must include the partition column, hence (id, timestamp).
audit_entries = Table(
    "audit_entries",
    metadata,
    Column("id", UUID(as_uuid=True), nullable=False),
    Column("invoice_id", UUID(as_uuid=True), ForeignKey("invoices.id"), nullable=False),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("event", String(100), nullable=False),
    # Actor and request id come from the caller's request context: text, as in event metadata.
    Column("actor", Text, nullable=False),
    Column("timestamp", TIMESTAMPTZ, nullable=False),
    Column("ip_address", String(45)),
    Column("user_agent", String(500)),
    Column("request_id", Text),
    Column("data", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    # The events of one command share a timestamp: a trail is ordered by aggregate version.
    Column("event_version", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("id", "timestamp"),
    Index("idx_audit_entries_invoice_version", "invoice_id", "event_version"),
    postgresql_partition_by="RANGE (timestamp)",
)
Index("idx_audit_entries_timeline", audit_entries.c.invoice_id, audit_entries.c.timestamp.desc())

# The next unused child index per merchant, network and extended key (a new xpub starts at 0),
# bumped with a row lock inside the invoice's transaction: concurrent creates never share one,
# and a failed create gives it back.
address_allocations = Table(
    "address_allocations",
    metadata,
    Column("merchant_id", UUID(as_uuid=True), primary_key=True),
    Column("network", String(20), primary_key=True),
    Column("xpub_hash", CHAR(64), primary_key=True),
    Column("next_index", BigInteger, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
)

# This service's view of merchants (merchant.created / merchant.updated). Each field carries the
# time of the change it reflects, so events applied out of order never overwrite newer data.
merchant_profiles = Table(
    "merchant_profiles",
    metadata,
    Column("merchant_id", UUID(as_uuid=True), primary_key=True),
    Column("wallets", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("settings", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column(
        "wallets_updated_at",
        TIMESTAMPTZ,
        nullable=False,
        server_default=text("'-infinity'::timestamp with time zone"),
    ),
    Column(
        "settings_updated_at",
        TIMESTAMPTZ,
        nullable=False,
        server_default=text("'-infinity'::timestamp with time zone"),
    ),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
)

# The EVM watcher's durable position: the recent blocks it processed with their hashes, so a
# restart resumes where it stopped and a reorg is found by comparing parent hashes.
chain_blocks = Table(
    "chain_blocks",
    metadata,
    Column("network", String(20), primary_key=True),
    Column("block_number", BigInteger, primary_key=True),
    Column("block_hash", String(100), nullable=False),
    Column("parent_hash", String(100), nullable=False),
    Column("processed_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
)

# The read model of each refund (its events are in the invoice's stream).
refunds = Table(
    "refunds",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("invoice_id", UUID(as_uuid=True), nullable=False),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("amount", Numeric, nullable=False),
    Column("currency", String(10), nullable=False),
    Column("crypto_amount", Numeric, nullable=False),
    Column("crypto_currency", String(20), nullable=False),
    Column("network", String(20), nullable=False),
    Column("rate", Text, nullable=False),
    Column("rate_basis", String(10), nullable=False),
    Column("rate_source", Text, nullable=False),
    Column("reason", Text),
    Column("address", Text),
    Column("tx_hash", Text),
    Column("output_index", Integer),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("claimed_at", TIMESTAMPTZ),
    Column("completed_at", TIMESTAMPTZ),
    Column("cancelled_at", TIMESTAMPTZ),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
    Index("idx_refunds_invoice", "invoice_id", "id"),
)
# What the watchers follow besides invoices: addresses payers claimed refunds to.
Index("idx_refunds_claimed", refunds.c.network, postgresql_where=refunds.c.status == "claimed")
