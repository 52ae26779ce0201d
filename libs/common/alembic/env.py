"""The one Alembic environment of every service schema, run by libs/common/schema.py.

It is driven from code (no alembic.ini): `schema.alembic_config` names this directory, the
service's revisions (`services/<name>/migrations/versions/`) and its schema, and hands over the
connection to migrate on, which already works in that schema (search_path) and whose shard the
caller holds the schema's migration lock for (and whose partitions it has listed, as no
transaction may be open when Alembic starts: it must begin its own per revision). The version table lives in the service's schema,
so each schema of each shard records its own revision.
"""

from __future__ import annotations

from alembic import context

from libs.common import schema

config = context.config
connection = config.attributes["connection"]

context.configure(
    connection=connection,
    target_metadata=config.attributes.get("metadata"),  # what --autogenerate compares with
    version_table_schema=config.attributes["schema"],
    # One transaction per revision, so a crash keeps the revisions already done, and a revision
    # that builds an index CONCURRENTLY (outside a transaction) commits what ran before it.
    transaction_per_migration=True,
    on_version_apply=schema.record_applied(config),
    **schema.context_options(config.attributes["partitions"]),
)

with context.begin_transaction():
    context.run_migrations()
