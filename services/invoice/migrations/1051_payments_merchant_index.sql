-- migration: no transaction
-- Issue 17: the payments export reads a merchant's payments in id order (keyset pages); built
-- CONCURRENTLY, as 1050's are, so a live shard keeps recording payments meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_payments_merchant_id ON payments (merchant_id, id);
