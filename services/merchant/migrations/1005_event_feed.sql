-- Issue 17: the event feed (GET /v1/events). Each invoice event of a merchant gets the next
-- number of that merchant's sequence when the webhooks projection records it, in the same
-- transaction: event_feed_heads' row is updated (and so locked) to take the number, so two
-- transactions recording for one merchant take their numbers one after the other, in commit
-- order, and a rolled-back one gives its number back. A reader therefore never sees a gap that
-- fills in later. Rows older than CHECKOUT_EVENT_FEED_RETENTION_DAYS are deleted by upkeep.
CREATE TABLE event_feed_heads (
    merchant_id UUID PRIMARY KEY,
    last_sequence BIGINT NOT NULL
);

CREATE TABLE event_feed (
    merchant_id UUID NOT NULL,
    sequence BIGINT NOT NULL,
    event_id UUID NOT NULL,
    event_type VARCHAR(100) NOT NULL,
    -- The webhook body, byte for byte (text, as in webhook_events).
    body TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (merchant_id, sequence),
    -- A redelivered or replayed event is recorded once.
    UNIQUE (merchant_id, event_id)
);

CREATE INDEX idx_event_feed_type ON event_feed (merchant_id, event_type, sequence);
CREATE INDEX idx_event_feed_recorded ON event_feed (recorded_at);
