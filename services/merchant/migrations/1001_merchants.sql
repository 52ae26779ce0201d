-- Merchant service read models (seed: merchants, api_keys), kept inline with the event store.

CREATE TABLE merchants (
    id UUID PRIMARY KEY,
    business_name VARCHAR(200) NOT NULL,
    contact_email VARCHAR(254) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'active',
    plan_type VARCHAR(20) NOT NULL DEFAULT 'free',
    settings JSONB NOT NULL DEFAULT '{}',
    wallets JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Platform-wide uniqueness: merchants are placed by their email's slot (libs/common/ids.py),
-- so two sign-ups with one email always meet on the same shard and this index.
CREATE UNIQUE INDEX merchants_contact_email_key ON merchants (lower(contact_email));

CREATE TABLE api_keys (
    id UUID PRIMARY KEY,
    merchant_id UUID NOT NULL REFERENCES merchants (id),
    key_hash VARCHAR(64) NOT NULL UNIQUE,
    key_type VARCHAR(20) NOT NULL,
    permissions TEXT[] NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'active',
    name VARCHAR(100) NOT NULL,
    prefix VARCHAR(20) NOT NULL,
    last_used_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX idx_api_keys_merchant ON api_keys (merchant_id, created_at DESC);
