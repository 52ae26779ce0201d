-- The relay's cursor without a list of published transactions (libs/common/relay.py explains it):
-- `floor` and `pending` say which transactions may still hold unpublished events; while a
-- backlog is drained in slices, `cut` is the last sequence number published and `late_floor` /
-- `late_pending` the transactions that were still open when that slice was read.
-- An upgraded relay starts from its old floor, so the transactions it had published above it are
-- published once more: JetStream drops them as duplicates (Nats-Msg-Id) inside its window, and
-- the consumers' processed_events make any later copy a no-op.
ALTER TABLE relay_state
    ADD COLUMN pending XID8[] NOT NULL DEFAULT '{}',
    ADD COLUMN cut BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN late_floor XID8,
    ADD COLUMN late_pending XID8[] NOT NULL DEFAULT '{}';
-- relay_published is no longer written (nor read); it is left in place, empty from now on.
DELETE FROM relay_published;
