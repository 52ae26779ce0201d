"""Baseline: the merchant schema as the SQL migrations below build it (see `require_sql_applied`)."""

from __future__ import annotations

from libs.common.schema import COMMON_SQL, require_sql_applied

revision = "0001_baseline"
down_revision = None

SQL_MIGRATIONS = (
    *COMMON_SQL,
    "1001_merchants",
    "1002_webhooks",
    "1003_invoices_cancel",
    "1004_webhook_secrets",
    "1005_event_feed",
)


def upgrade() -> None:
    require_sql_applied(SQL_MIGRATIONS)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: drop the schema instead")
