-- Money is kept per fiat currency: an invoice's total is in its own currency, and yen added to
-- dollars is no amount at all. A merchant's day now has one daily_metrics row per currency it
-- invoiced or was paid in; paid_invoices remembers the currency its amount is in, so a reorg
-- takes the amount back from the row it was added to.

-- Rows written before this migration are taken as USD. There was no deployment with other
-- currencies when it was written; if one ever has rows in several, rebuild the projection from
-- the invoice events instead (`libs.common.consumer.rebuild` with the projection's reset_sql),
-- which writes every row with its invoice's own currency. The default is dropped afterwards so
-- that a write without a currency fails rather than being counted as dollars.
ALTER TABLE daily_metrics ADD COLUMN currency TEXT NOT NULL DEFAULT 'USD';
ALTER TABLE daily_metrics ALTER COLUMN currency DROP DEFAULT;
ALTER TABLE paid_invoices ADD COLUMN currency TEXT NOT NULL DEFAULT 'USD';
ALTER TABLE paid_invoices ALTER COLUMN currency DROP DEFAULT;

-- A primary key of a partitioned table must include the partition key (metric_date); this one
-- is replaced on the parent and Postgres replaces it on every partition.
ALTER TABLE daily_metrics DROP CONSTRAINT daily_metrics_pkey;
ALTER TABLE daily_metrics ADD PRIMARY KEY (merchant_id, metric_date, currency);
