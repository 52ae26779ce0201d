-- Invoice service: its read models (seed: invoices, payments, audit_entries), the address
-- allocator, and its own projection of the merchant data it needs (wallets, settings).

CREATE TABLE invoices (
    id UUID PRIMARY KEY,
    merchant_id UUID NOT NULL,
    customer_id UUID,
    customer_email VARCHAR(254),
    title VARCHAR(200) NOT NULL,
    description TEXT,
    items JSONB NOT NULL,
    -- Money is NUMERIC (exact); fiat in its currency's minor unit, crypto to the asset's decimals.
    subtotal NUMERIC NOT NULL,
    tax NUMERIC NOT NULL,
    total NUMERIC NOT NULL,
    currency VARCHAR(10) NOT NULL,
    crypto_currency VARCHAR(20) NOT NULL,
    crypto_amount NUMERIC NOT NULL,
    amount_paid NUMERIC NOT NULL DEFAULT 0,
    network VARCHAR(20) NOT NULL,
    address_index BIGINT NOT NULL,
    payment_address VARCHAR(100) NOT NULL,
    payment_uri TEXT NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    exchange_rate JSONB NOT NULL,
    payment_tolerance JSONB NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    paid_at TIMESTAMPTZ
);

CREATE INDEX idx_invoices_merchant_status ON invoices (merchant_id, status, created_at DESC);
CREATE INDEX idx_invoices_expires_pending ON invoices (expires_at) WHERE status IN ('pending', 'partial');
CREATE INDEX idx_invoices_payment_address ON invoices (payment_address);
-- Search must use this exact expression to use the index (see repository.search).
CREATE INDEX idx_invoices_text_search
    ON invoices USING gin (to_tsvector('english', title || ' ' || coalesce(description, '')));
CREATE INDEX idx_invoices_metadata_gin ON invoices USING gin (metadata);
-- Listing is newest first by id (ids are time-ordered), per merchant and per customer.
CREATE INDEX idx_invoices_merchant_id ON invoices (merchant_id, id DESC);
CREATE INDEX idx_invoices_customer ON invoices (merchant_id, customer_id, id DESC)
    WHERE customer_id IS NOT NULL;
-- The address allocator never hands an index out twice; this is the safety net if it ever did.
CREATE UNIQUE INDEX uq_invoices_merchant_network_address
    ON invoices (merchant_id, network, payment_address);

CREATE TABLE payments (
    id UUID PRIMARY KEY,
    invoice_id UUID NOT NULL REFERENCES invoices (id),
    tx_hash VARCHAR(100) NOT NULL,
    amount NUMERIC NOT NULL,
    from_address VARCHAR(100),
    to_address VARCHAR(100) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'detected',
    confirmations INTEGER NOT NULL DEFAULT 0,
    required_confirmations INTEGER NOT NULL,
    block_number BIGINT,
    block_hash VARCHAR(100),
    network_fee NUMERIC,
    detected_at TIMESTAMPTZ NOT NULL,
    confirmed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE UNIQUE INDEX idx_payments_tx_hash ON payments (tx_hash);
CREATE INDEX idx_payments_status_pending ON payments (status, detected_at)
    WHERE status IN ('detected', 'confirming');
CREATE INDEX idx_payments_invoice ON payments (invoice_id, detected_at);

-- Monthly partitions are created ahead by the service (ServiceSpec.partitioned). A primary key
-- on a partitioned table must include the partition column, hence (id, timestamp).
CREATE TABLE audit_entries (
    id UUID NOT NULL,
    invoice_id UUID NOT NULL REFERENCES invoices (id),
    merchant_id UUID NOT NULL,
    event VARCHAR(100) NOT NULL,
    actor VARCHAR(200) NOT NULL,
    timestamp TIMESTAMPTZ NOT NULL,
    ip_address VARCHAR(45),
    user_agent VARCHAR(500),
    request_id VARCHAR(100),
    data JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, timestamp)
) PARTITION BY RANGE (timestamp);

CREATE INDEX idx_audit_entries_timeline ON audit_entries (invoice_id, timestamp DESC);

-- Write side of address derivation: the next unused child index per merchant, network and
-- extended key (a new xpub starts again at 0). Bumped with a row lock inside the invoice's
-- transaction, so concurrent creates never share an index and a failed create gives it back.
CREATE TABLE address_allocations (
    merchant_id UUID NOT NULL,
    network VARCHAR(20) NOT NULL,
    xpub_hash CHAR(64) NOT NULL,
    next_index BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (merchant_id, network, xpub_hash)
);

-- This service's view of merchants, fed by merchant.created / merchant.updated from NATS (and
-- by GetMerchant when it lags). Each field carries the time of the change it reflects, so
-- events applied out of order (a redelivery after a failure) never overwrite newer data.
CREATE TABLE merchant_profiles (
    merchant_id UUID PRIMARY KEY,
    wallets JSONB NOT NULL DEFAULT '{}',
    settings JSONB NOT NULL DEFAULT '{}',
    wallets_updated_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    settings_updated_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    updated_at TIMESTAMPTZ NOT NULL
);
