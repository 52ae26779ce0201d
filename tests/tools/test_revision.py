"""A revision drafted from the declared tables brings a migrated shard to them."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, Text

from libs.common.config import Config
from libs.common.schema import differences, engine_for, upgrade_shard, write_revision
from services.customer import tables
from services.customer.service import SPEC


async def test_a_drafted_revision_creates_what_the_tables_declare_and_nothing_else(
    config: Config, tmp_path: Path
) -> None:
    shutil.copytree(SPEC.service_dir / "migrations", tmp_path / "migrations")
    metadata = MetaData()
    for table in tables.metadata.sorted_tables:
        table.to_metadata(metadata)
    Table(
        "loyalty_tiers",
        metadata,
        Column("tier", Integer, primary_key=True),
        Column("name", Text, nullable=False),
    )

    existing = sorted(p.stem for p in (tmp_path / "migrations" / "versions").glob("0*.py"))
    path = await write_revision(config.shard_dsn(0), "drafting", tmp_path, metadata, "loyalty tiers")

    # The next number after the service's newest revision.
    assert path.name == f"{len(existing) + 1:04d}_loyalty_tiers.py"
    draft = path.read_text()
    assert "op.create_table(" in draft and "'loyalty_tiers'" in draft
    assert draft.count("op.create_table(") == 1  # the rest of the schema is there already
    dsn = config.shard_dsn(1)
    assert (await upgrade_shard(dsn, "customer", tmp_path))[-len(existing) - 1 :] == [*existing, path.stem]
    engine = engine_for(dsn, "customer")
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(differences, metadata) == []
    finally:
        await engine.dispose()
