-- Analytics read models, projected from invoice and merchant events.

-- Seed: daily_metrics, quarterly range partitions on metric_date (the service creates them
-- ahead of time, and on demand for an event dated outside them). Money is NUMERIC with room
-- for crypto scale, never float.
CREATE TABLE daily_metrics (
    merchant_id UUID NOT NULL,
    metric_date DATE NOT NULL,
    invoices_created INTEGER NOT NULL DEFAULT 0,
    invoices_paid INTEGER NOT NULL DEFAULT 0,
    amount_created NUMERIC(20, 8) NOT NULL DEFAULT 0,
    amount_paid NUMERIC(20, 8) NOT NULL DEFAULT 0,
    conversion_rate NUMERIC(5, 2) NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, metric_date)
) PARTITION BY RANGE (metric_date);

CREATE INDEX idx_daily_metrics_merchant_date ON daily_metrics (merchant_id, metric_date DESC);
CREATE INDEX idx_daily_metrics_date_range ON daily_metrics (metric_date DESC, merchant_id);

-- The merchants of this shard, for the operator's shard view (from merchant.created).
CREATE TABLE merchant_directory (
    merchant_id UUID PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL
);
