"""Baseline: the invoice schema as today's SQL migrations build it (libs/common/tables.py and
services/invoice/tables.py declare it).

The SQL files named below (libs/common/migrations/ and services/invoice/migrations/) are applied
by `schema.upgrade_shard` before any revision, each once: a fresh shard gets them all, a shard
migrated before Alembic only those it lacks. This revision records that state. The SQL files
never change and none is added: every change from here on is a revision after this one.
"""

from __future__ import annotations

from libs.common.schema import require_sql_applied

revision = "0001_baseline"
down_revision = None

SQL_MIGRATIONS = (
    "0001_event_store",
    "0002_dead_letters",
    "0002_relay_cursor",
    "1001_invoices",
    "1002_payments",
    "1003_audit_order",
    "1004_watch_index",
    "1005_audit_context",
    "1017_refunds",
    "1050_read_indexes",
    "1051_payments_merchant_index",
)


def upgrade() -> None:
    require_sql_applied(SQL_MIGRATIONS)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: drop the schema instead")
