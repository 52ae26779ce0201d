"""The customer service's tables (schema `customer` on every shard), declared once: read models
projected from invoice events. The Alembic revisions in migrations/ are checked against this
metadata; composed queries are written on it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, Numeric, String, Table, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from libs.common.tables import TIMESTAMPTZ, service_metadata

metadata = service_metadata()

customers = Table(
    "customers",
    metadata,
    # Derived by the invoice service from (merchant, lower(email)): libs/common/ids.derived_id.
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("email", String(320), nullable=False),
    Column("status", String(20), nullable=False, server_default=text("'active'::character varying")),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
    Column("last_seen_at", TIMESTAMPTZ),
    Column("invoice_count", Integer, nullable=False, server_default=text("0")),
)
# One customer per merchant and email, whatever the case the payer typed it in.
Index("customers_merchant_email_key", customers.c.merchant_id, func.lower(customers.c.email), unique=True)
# Derived ids are not time-ordered, so lists page by (created_at, id).
Index(
    "idx_customers_merchant_created",
    customers.c.merchant_id,
    customers.c.created_at.desc(),
    customers.c.id.desc(),
)

# No foreign key to customers: projections are eventually consistent, and a payment event that
# overtakes its customer must not become a message that can never be applied.
payment_history = Table(
    "payment_history",
    metadata,
    Column("customer_id", UUID(as_uuid=True), primary_key=True),
    Column("invoice_id", UUID(as_uuid=True), primary_key=True),
    Column("amount", Numeric, nullable=False),  # exact, at whatever scale its currency needs
    Column("currency", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("paid_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    # The invoice version of the last status applied: a replayed older event never overwrites.
    Column("invoice_version", BigInteger, nullable=False, server_default=text("0")),
    # Status events without a customer id find their row by invoice alone.
    Index("idx_payment_history_invoice", "invoice_id"),
)
Index(
    "idx_payment_history_customer_created",
    payment_history.c.customer_id,
    payment_history.c.created_at.desc(),
    payment_history.c.invoice_id.desc(),
)
