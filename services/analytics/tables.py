"""The analytics service's tables (schema `analytics` on every shard), declared once: read
models projected from invoice and merchant events, and the platform rollups that a trigger on
daily_metrics keeps. The trigger and its functions are not tables: they are in the migrations
only (migrations/1050_platform_rollup.sql), and the schema comparison does not see them. The
Alembic revisions are checked against this metadata; composed queries are written on it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Date, Index, Integer, Numeric, Table, Text, text
from sqlalchemy.dialects.postgresql import UUID

from libs.common.tables import TIMESTAMPTZ, service_metadata

metadata = service_metadata()

ZERO = text("0")

# A merchant's day per fiat currency (yen added to dollars is no amount). Quarterly partitions
# on metric_date, made ahead by the service and on demand for an event dated outside them. The
# sums are NUMERIC without precision: a day sums any number of invoices, so none can cap them.
daily_metrics = Table(
    "daily_metrics",
    metadata,
    Column("merchant_id", UUID(as_uuid=True), primary_key=True),
    Column("metric_date", Date, primary_key=True),
    Column("invoices_created", Integer, nullable=False, server_default=ZERO),
    Column("invoices_paid", Integer, nullable=False, server_default=ZERO),
    Column("amount_created", Numeric, nullable=False, server_default=ZERO),
    Column("amount_paid", Numeric, nullable=False, server_default=ZERO),
    # invoices_paid / invoices_created x 100 of one day: can pass 100 % (paid counts by pay day).
    Column("conversion_rate", Numeric, nullable=False, server_default=ZERO),
    Column("currency", Text, primary_key=True),
    postgresql_partition_by="RANGE (metric_date)",
)
Index("idx_daily_metrics_merchant_date", daily_metrics.c.merchant_id, daily_metrics.c.metric_date.desc())
Index("idx_daily_metrics_date_range", daily_metrics.c.metric_date.desc(), daily_metrics.c.merchant_id)

# The merchants of this shard, for the operator's shard view (from merchant.created).
merchant_directory = Table(
    "merchant_directory",
    metadata,
    Column("merchant_id", UUID(as_uuid=True), primary_key=True),
    Column("created_at", TIMESTAMPTZ, nullable=False),
)

# One row per invoice ever paid. `paid_on` is the UTC day of its first invoice.paid and never
# moves; `counted` says whether that day's sums include it now (a reorg takes it out, a later
# invoice.paid puts it back); `invoice_version` is the last status event applied.
paid_invoices = Table(
    "paid_invoices",
    metadata,
    Column("invoice_id", UUID(as_uuid=True), primary_key=True),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("paid_on", Date, nullable=False),
    Column("amount", Numeric, nullable=False),  # the invoice total, in `currency`
    Column("counted", Boolean, nullable=False),
    Column("invoice_version", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
)

# The rollups kept by the daily_metrics_rollup trigger (revision 1050's SQL): a shard's day per
# currency summed over merchants, and each merchant's active days and their span per currency.
platform_daily = Table(
    "platform_daily",
    metadata,
    Column("metric_date", Date, primary_key=True),
    Column("currency", Text, primary_key=True),
    Column("invoices_created", BigInteger, nullable=False, server_default=ZERO),
    Column("invoices_paid", BigInteger, nullable=False, server_default=ZERO),
    Column("amount_created", Numeric, nullable=False, server_default=ZERO),
    Column("amount_paid", Numeric, nullable=False, server_default=ZERO),
    Column("merchants_active", Integer, nullable=False, server_default=ZERO),
    # daily_metrics rows summed here: a day a reorg took back to zeros is still shown.
    Column("metric_rows", Integer, nullable=False, server_default=ZERO),
)

merchant_activity = Table(
    "merchant_activity",
    metadata,
    Column("merchant_id", UUID(as_uuid=True), primary_key=True),
    Column("currency", Text, primary_key=True),
    Column("metric_date", Date, primary_key=True),
)

merchant_currencies = Table(
    "merchant_currencies",
    metadata,
    Column("merchant_id", UUID(as_uuid=True), primary_key=True),
    Column("currency", Text, primary_key=True),
    Column("first_day", Date),  # NULL both when a reorg took back every active day
    Column("last_day", Date),
)
