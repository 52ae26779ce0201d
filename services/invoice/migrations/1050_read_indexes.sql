-- migration: no transaction
-- Issue 18: indexes the reads need at a million invoices a shard, built CONCURRENTLY so a live
-- shard keeps taking invoices and payments while they build (see libs/common/db.py).

-- Search within one merchant: the invoice's words plus one lexeme naming its merchant, so one GIN
-- lookup answers "this merchant's invoices with these words" (btree_gin's composite, without
-- the extension). The merchant lexeme has a space, which no word of a parsed text ever has. The
-- expression is repository.SEARCH_DOCUMENT's, character for character.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_invoices_merchant_search ON invoices USING gin (
    (array_to_tsvector(ARRAY['merchant ' || merchant_id::text])
     || to_tsvector('english', title || ' ' || coalesce(description, ''))));

-- A merchant's invoices in one status, newest first (ids are time-ordered), windows included.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_invoices_merchant_status_id ON invoices (merchant_id, status, id DESC);

-- Replaced by the two above: every search is a merchant's, and no read orders by created_at.
-- Each also cost a GIN or B-tree insert on every invoice update.
DROP INDEX CONCURRENTLY IF EXISTS idx_invoices_text_search;
DROP INDEX CONCURRENTLY IF EXISTS idx_invoices_merchant_status;

-- The planner's statistics for the new expression (word and merchant frequencies).
ANALYZE invoices;
