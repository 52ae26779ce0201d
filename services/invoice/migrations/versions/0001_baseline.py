"""Baseline: the invoice schema as the SQL migrations below build it (see `require_sql_applied`)."""

from __future__ import annotations

from libs.common.schema import COMMON_SQL, require_sql_applied

revision = "0001_baseline"
down_revision = None

SQL_MIGRATIONS = (
    *COMMON_SQL,
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
