"""Baseline: the customer schema as the SQL migrations below build it (see `require_sql_applied`)."""

from __future__ import annotations

from libs.common.schema import COMMON_SQL, require_sql_applied

revision = "0001_baseline"
down_revision = None

SQL_MIGRATIONS = (
    *COMMON_SQL,
    "1001_customers",
    "1002_payment_history_status",
)


def upgrade() -> None:
    require_sql_applied(SQL_MIGRATIONS)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: drop the schema instead")
