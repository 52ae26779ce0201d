"""Baseline: the customer schema as today's SQL migrations build it (libs/common/tables.py and
services/customer/tables.py declare it).

The SQL files named below (libs/common/migrations/ and services/customer/migrations/) are applied
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
    "1001_customers",
    "1002_payment_history_status",
)


def upgrade() -> None:
    require_sql_applied(SQL_MIGRATIONS)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: drop the schema instead")
