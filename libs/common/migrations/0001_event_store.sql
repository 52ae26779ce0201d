-- The event store every service keeps in its own schema on every shard (seed: events,
-- aggregate_snapshots), plus the tables that make it safe: the stream heads that guard
-- concurrency, the command log for idempotency, and the relay's and consumers' positions.

CREATE TABLE events (
    id UUID NOT NULL,
    aggregate_id UUID NOT NULL,
    aggregate_type VARCHAR(50) NOT NULL,
    event_type VARCHAR(100) NOT NULL,
    event_version INTEGER NOT NULL,
    event_data JSONB NOT NULL,
    metadata JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    sequence_number BIGSERIAL,
    -- The writing transaction: the relay reads only what no open transaction can precede.
    transaction_id XID8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX idx_events_aggregate_lookup ON events (aggregate_id, event_version);
CREATE INDEX idx_events_type_timeline ON events (aggregate_type, created_at DESC);
CREATE INDEX idx_events_sequence ON events (sequence_number);
CREATE INDEX idx_events_created_at ON events (created_at);
CREATE INDEX idx_events_metadata_gin ON events USING gin (metadata);
CREATE INDEX idx_events_transaction ON events (transaction_id, sequence_number);

-- A unique (aggregate_id, event_version) index on `events` would have to include created_at
-- (the partition key), so it could not stop two writers whose events land in different months.
-- The head row per stream is the guard instead: `UPDATE ... WHERE version = expected`.
CREATE TABLE streams (
    aggregate_id UUID PRIMARY KEY,
    aggregate_type VARCHAR(50) NOT NULL,
    version INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE aggregate_snapshots (
    aggregate_id UUID PRIMARY KEY,
    aggregate_type VARCHAR(50) NOT NULL,
    version INTEGER NOT NULL,
    data JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- First result of each idempotent command, replayed to a retry with the same key.
CREATE TABLE command_log (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response BYTEA,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (scope, idempotency_key)
);

-- Relay position: every transaction below `floor` is published; above it, the published ones
-- are listed, so a transaction that commits late is still found.
CREATE TABLE relay_state (
    name TEXT PRIMARY KEY,
    floor XID8 NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE relay_published (
    name TEXT NOT NULL,
    transaction_id XID8 NOT NULL,
    PRIMARY KEY (name, transaction_id)
);

-- Events a consumer has applied, written in the same transaction as its read-model change.
CREATE TABLE processed_events (
    projection TEXT NOT NULL,
    event_id UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (projection, event_id)
);
