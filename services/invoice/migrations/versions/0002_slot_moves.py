"""Moving slots between shards online: the fence and change log a move needs on this schema
(libs/common/revisions.py `slot_moves`, the same on every service's schema)."""

from __future__ import annotations

from libs.common.revisions import drop_slot_moves, slot_moves

revision = "0002_slot_moves"
down_revision = "0001_baseline"


def upgrade() -> None:
    slot_moves()


def downgrade() -> None:
    drop_slot_moves()
