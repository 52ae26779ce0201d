"""Contact emails claimed by merchant ids, so that a merchant placed by its plan's tier on
another shard keeps its contact email unique platform-wide (libs/common/placement.py).

Every merchant so far lives in its email's slot, the slot its id carries: the claims are
backfilled from the merchants with that slot.
"""

from __future__ import annotations

from alembic import op

revision = "0002_email_claims"
down_revision = "0001_baseline"


def upgrade() -> None:
    op.execute(
        """CREATE TABLE email_claims (
            email TEXT PRIMARY KEY,
            merchant_id UUID NOT NULL,
            slot INT NOT NULL CHECK (slot >= 0 AND slot < 4096),
            claimed_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
        )"""
    )
    op.execute(
        """INSERT INTO email_claims (email, merchant_id, slot, claimed_at)
        SELECT lower(contact_email), id,
               ((get_byte(uuid_send(id), 6) & 15) << 8) | get_byte(uuid_send(id), 7), created_at
        FROM merchants
        ON CONFLICT DO NOTHING"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE email_claims")
