"""Baseline: the analytics schema as the SQL migrations below build it (see `require_sql_applied`)."""

from __future__ import annotations

from libs.common.schema import COMMON_SQL, require_sql_applied

revision = "0001_baseline"
down_revision = None

SQL_MIGRATIONS = (
    *COMMON_SQL,
    "1001_daily_metrics",
    "1002_paid_invoices",
    "1003_metrics_by_currency",
    "1004_unbounded_sums",
    "1050_platform_rollup",
)


def upgrade() -> None:
    require_sql_applied(SQL_MIGRATIONS)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: drop the schema instead")
