-- Events a projection consumer gave up on: after CHECKOUT_CONSUMER_MAX_ATTEMPTS failures that
-- were not outages, the event is parked here (and acked) so the events after it flow on. The
-- operator lists and retries them (GET /v1/admin/dead-letters); a retry that applies removes
-- the row. `id` carries the shard's slot like every platform id, so it routes without a lookup.
CREATE TABLE dead_letters (
    id UUID PRIMARY KEY,
    consumer TEXT NOT NULL,
    projection TEXT NOT NULL,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    envelope JSONB NOT NULL,
    UNIQUE (projection, event_id)
);

CREATE INDEX idx_dead_letters_newest ON dead_letters (id DESC);
