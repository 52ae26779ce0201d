"""Core statements compiled for asyncpg (libs/common/sqlcore.py) run on a plain asyncpg
connection with their arguments in the compiler's order, and a value left out fails loudly."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import Column, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import UUID

from libs.common.sqlcore import newest_first
from tools.devservers import Servers

NOTES = Table(
    "notes",
    MetaData(),
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("body", Text, nullable=False),
)


async def test_a_keyset_page_with_a_filter_returns_the_rows_it_names_newest_first(servers: Servers) -> None:
    conn = await asyncpg.connect(servers.database_url)
    try:
        await conn.execute(
            "CREATE TEMP TABLE notes (id uuid PRIMARY KEY, kind text NOT NULL, body text NOT NULL)"
        )
        made = sorted(uuid.uuid4() for _ in range(6))  # in id order, as our time-ordered ids are
        for n, note_id in enumerate(made):
            await conn.execute("INSERT INTO notes VALUES ($1, $2, $3)", note_id, "ab"[n % 2], f"note {n}")

        everything = newest_first(NOTES, "id, body", (), paged=False)
        rows = await conn.fetch(everything.sql, *everything.args({"limit": 4}))
        assert [r["body"] for r in rows] == ["note 5", "note 4", "note 3", "note 2"]

        page = newest_first(NOTES, "id, body", ("kind",), paged=True)
        rows = await conn.fetch(page.sql, *page.args({"kind": "a", "before": made[4], "limit": 10}))
        assert [r["id"] for r in rows] == [made[2], made[0]]
    finally:
        await conn.close()


def test_a_value_left_out_is_an_error_never_a_null() -> None:
    query = newest_first(NOTES, "id", ("kind",), paged=False)
    with pytest.raises(KeyError, match="kind"):
        query.args({"limit": 10})
    assert query.args({"kind": "a", "limit": 10, "unused": uuid.uuid4()}) == ["a", 10]
