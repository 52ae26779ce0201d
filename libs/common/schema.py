"""How a service schema on a shard is compared with its declared tables (services/*/tables.py).

Alembic's autogenerate reads the schema back and lists every difference from the metadata; the
Alembic environment (libs/common/alembic/env.py) and the schema check in the tests use the same
rules, so what `alembic revision --autogenerate` would write and what the test fails on agree.
What the comparison cannot see, or would misread, is left out here, each with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Connection, MetaData, Sequence, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

# Today's SQL runner's ledger (libs/common/db.py), which the baseline revisions stand on.
LEGACY_LEDGER = "schema_migrations"

IncludeName = Callable[[str | None, str, dict[str, str | None]], bool]


def partitions(connection: Connection) -> set[str]:
    """The partitions in the connection's schema (`events_2026_11`, `daily_metrics_2026_q4`...)."""
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relispartition AND n.nspname = current_schema()"
        )
    )
    return {row[0] for row in rows}


def include_name(skipped: set[str]) -> IncludeName:
    """Leaves out of the comparison the tables no revision declares:
    - partitions: the services create them ahead of time (libs/common/partitions.py) and move
      old ones to the archive schema, so which exist depends on the day, not on a revision;
      the metadata declares the partitioned parent (`postgresql_partition_by`);
    - the legacy runner's `schema_migrations`, kept so a replica of the previous release that
      starts during a deploy still finds its migrations applied (Alembic skips its own
      `alembic_version`)."""
    skipped = skipped | {LEGACY_LEDGER}

    def include(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
        return not (type_ == "table" and name in skipped)

    return include


def compare_server_default(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """A serial column (`events.sequence_number`, BIGSERIAL) is read back with no default: Alembic
    recognises the nextval() of the column's own sequence and drops it. Its metadata default is
    that same nextval(), so it would always differ; whether the sequence is there is another
    matter, checked by every append. Everything else: Alembic's own comparison (None)."""
    if isinstance(metadata_column.default, Sequence):
        return False
    return None


def context_options(skipped: set[str]) -> dict[str, Any]:
    return {
        "compare_type": True,
        "compare_server_default": compare_server_default,
        "include_name": include_name(skipped),
    }


def differences(connection: Connection, metadata: MetaData) -> list[Any]:
    """What autogenerate would write to bring the connection's schema (its search_path) to the
    metadata: empty when migrations and tables agree."""
    context = MigrationContext.configure(connection, opts=context_options(partitions(connection)))
    diffs: list[Any] = compare_metadata(context, metadata)
    return diffs


def engine_for(dsn: str, schema: str) -> AsyncEngine:
    """An engine on the asyncpg driver whose connections work in `schema` (as the services'
    pools do), opened per use: migrations and checks run seldom, and a pool would outlive them."""
    url = make_url(dsn).set(drivername="postgresql+asyncpg")
    return create_async_engine(
        url, poolclass=NullPool, connect_args={"server_settings": {"search_path": f"{schema},public"}}
    )
