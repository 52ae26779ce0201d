-- Issue 3: payments keyed by (tx_hash, output index), not tx_hash alone: one Bitcoin transaction
-- can pay several invoices (several outputs), and one EVM transaction can carry its own value
-- and token transfers. output_index: ERC-20 log index, Bitcoin vout, -1 for an EVM tx's value.
DROP INDEX IF EXISTS idx_payments_tx_hash;
ALTER TABLE payments
    ADD COLUMN merchant_id UUID,
    ADD COLUMN network VARCHAR(20) NOT NULL DEFAULT '',
    ADD COLUMN output_index INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN asset VARCHAR(20) NOT NULL DEFAULT '',
    ADD COLUMN late BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN status_reason TEXT,
    ADD COLUMN updated_at TIMESTAMPTZ;
CREATE UNIQUE INDEX uq_payments_tx_output ON payments (tx_hash, output_index);
CREATE INDEX idx_payments_open_network ON payments (network, block_number)
    WHERE status IN ('detected', 'confirming');

ALTER TABLE invoices
    ADD COLUMN overpaid BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN paid_late BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN status_reason TEXT;
-- What the watchers follow: open invoices, and closed ones still inside the late window.
CREATE INDEX idx_invoices_network_expires ON invoices (network, expires_at);

-- The EVM watcher's durable position: the recent blocks it has processed, with their hashes,
-- so a restart resumes where it stopped and a reorg is found by comparing parent hashes.
CREATE TABLE chain_blocks (
    network VARCHAR(20) NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash VARCHAR(100) NOT NULL,
    parent_hash VARCHAR(100) NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (network, block_number)
);
