"""Alembic revision bodies every service schema shares: the event store's own changes, which
each service's revision (services/*/migrations/versions/) applies to its schema by calling them.

One statement per `op.execute` (the revisions run on asyncpg, which takes one at a time).
"""

from __future__ import annotations

from alembic import op


def slot_moves() -> None:
    """What moving slots between shards online needs on every schema (libs/common/slotmove.py)."""
    # The slot an id carries: bits 64..75 of a platform UUID (libs/common/ids.py `slot_of`), i.e.
    # hex digits 13..16 of its 32 with the version nibble masked off. NULL for NULL.
    op.execute(
        """CREATE FUNCTION slot_of(id UUID) RETURNS INTEGER
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
            SELECT ('x' || substr(replace(id::text, '-', ''), 13, 4))::bit(16)::int & 4095
        $$"""
    )
    # Declared in libs/common/tables.py (slot_fences, slot_changes), which says what they hold.
    op.execute(
        """CREATE TABLE slot_fences (
            move_id BIGINT PRIMARY KEY,
            first_slot INTEGER NOT NULL,
            last_slot INTEGER NOT NULL,
            to_shard INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('copying', 'moved'))
        )"""
    )
    op.execute(
        """CREATE TABLE slot_changes (
            id BIGSERIAL PRIMARY KEY,
            move_id BIGINT NOT NULL,
            table_name TEXT NOT NULL,
            row_key JSONB NOT NULL
        )"""
    )
    op.execute("CREATE INDEX idx_slot_changes_move ON slot_changes (move_id, id)")


def drop_slot_moves() -> None:
    op.execute("DROP TABLE slot_changes")
    op.execute("DROP TABLE slot_fences")
    op.execute("DROP FUNCTION slot_of(UUID)")
