-- Contact emails claimed by merchant ids (libs/common/placement.py): one row per email, on the
-- shard of the email's slot, which makes contact emails unique platform-wide also for merchants
-- placed by tier on other shards. `slot` is the email's slot (what a slot move selects by).
CREATE TABLE email_claims (
    email TEXT PRIMARY KEY,
    merchant_id UUID NOT NULL,
    slot INT NOT NULL CHECK (slot >= 0 AND slot < 4096),
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
-- Every merchant so far lives in its email's slot: the slot its id carries.
INSERT INTO email_claims (email, merchant_id, slot, claimed_at)
SELECT lower(contact_email), id,
       ((get_byte(uuid_send(id), 6) & 15) << 8) | get_byte(uuid_send(id), 7), created_at
FROM merchants
ON CONFLICT DO NOTHING;
