-- payment_history follows the invoice's status events (payments on chain).

-- The invoice aggregate version of the last status applied to the row: a replayed older event
-- (a relay's redelivery, a rebuild fed out of order) never overwrites a newer status.
ALTER TABLE payment_history ADD COLUMN invoice_version BIGINT NOT NULL DEFAULT 0;

-- Status events without a customer id find their row by invoice alone.
CREATE INDEX idx_payment_history_invoice ON payment_history (invoice_id);
