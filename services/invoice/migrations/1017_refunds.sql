-- Issue 17: refunds, part of the Invoice aggregate (its events are in the invoice's stream).
-- The read model of each refund, and the invoice's total of refunds the watcher saw paid.
CREATE TABLE IF NOT EXISTS refunds (
    id UUID PRIMARY KEY,
    invoice_id UUID NOT NULL,
    merchant_id UUID NOT NULL,
    status VARCHAR(20) NOT NULL,
    amount NUMERIC NOT NULL,
    currency VARCHAR(10) NOT NULL,
    crypto_amount NUMERIC NOT NULL,
    crypto_currency VARCHAR(20) NOT NULL,
    network VARCHAR(20) NOT NULL,
    rate TEXT NOT NULL,
    rate_basis VARCHAR(10) NOT NULL,
    rate_source TEXT NOT NULL,
    reason TEXT,
    address TEXT,
    tx_hash TEXT,
    output_index INTEGER,
    created_at TIMESTAMPTZ NOT NULL,
    claimed_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    cancelled_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_refunds_invoice ON refunds (invoice_id, id);
-- What the watchers follow besides invoices: addresses payers claimed refunds to.
CREATE INDEX IF NOT EXISTS idx_refunds_claimed ON refunds (network) WHERE status = 'claimed';

ALTER TABLE invoices ADD COLUMN IF NOT EXISTS amount_refunded NUMERIC NOT NULL DEFAULT 0;
