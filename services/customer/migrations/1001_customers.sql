-- Customer service read models (seed: customers, payment_history), projected from invoice events.

CREATE TABLE customers (
    -- Derived by the invoice service from (merchant, lower(email)); see libs/common/ids.derived_id.
    id UUID PRIMARY KEY,
    merchant_id UUID NOT NULL,
    email VARCHAR(320) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'active',
    metadata JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ,
    invoice_count INTEGER NOT NULL DEFAULT 0
);

-- One customer per merchant and email, whatever the case the payer typed it in.
CREATE UNIQUE INDEX customers_merchant_email_key ON customers (merchant_id, lower(email));
-- Derived ids are not time-ordered, so lists page by (created_at, id).
CREATE INDEX idx_customers_merchant_created ON customers (merchant_id, created_at DESC, id DESC);

-- No foreign key to customers: projections are eventually consistent, and a payment event that
-- overtakes its customer must not become a message that can never be applied.
CREATE TABLE payment_history (
    customer_id UUID NOT NULL,
    invoice_id UUID NOT NULL,
    amount NUMERIC NOT NULL,  -- exact, at whatever scale its currency needs
    currency VARCHAR(10) NOT NULL,
    status VARCHAR(20) NOT NULL,
    paid_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, invoice_id)
);

CREATE INDEX idx_payment_history_customer_created
    ON payment_history (customer_id, created_at DESC, invoice_id DESC);
