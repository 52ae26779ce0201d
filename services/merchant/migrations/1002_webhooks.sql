-- Webhooks and notifications (seed: webhook_endpoints, webhook_deliveries, notification_templates,
-- notification_deliveries).
--
-- webhook_endpoints and notification_templates are read models of their aggregates' events,
-- kept inline. Everything else here is operational state written by the delivery worker --
-- what was sent, when, and what came back -- not events: an attempt log is not a decision.

CREATE TABLE webhook_endpoints (
    id UUID PRIMARY KEY,
    merchant_id UUID NOT NULL REFERENCES merchants (id),
    url VARCHAR(2048) NOT NULL,
    events TEXT[] NOT NULL,
    secret VARCHAR(100) NOT NULL,
    -- After a rotation the previous secret keeps signing (a second v1) until it expires.
    previous_secret VARCHAR(100),
    previous_secret_expires_at TIMESTAMPTZ,
    status VARCHAR(20) NOT NULL DEFAULT 'active',  -- active | disabled (failing is derived)
    max_retries INTEGER NOT NULL,
    retry_backoff VARCHAR(20) NOT NULL,
    timeout_seconds INTEGER NOT NULL,
    allowed_ips TEXT[] NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX idx_webhook_endpoints_merchant ON webhook_endpoints (merchant_id, created_at);

-- How the endpoint's recent attempts went; `failing` is consecutive_failures past a threshold.
CREATE TABLE webhook_endpoint_health (
    endpoint_id UUID PRIMARY KEY REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_failure_at TIMESTAMPTZ,
    last_success_at TIMESTAMPTZ
);

-- The merchant service's copy of what it needs of each invoice, for templates and payloads.
CREATE TABLE invoice_summaries (
    id UUID PRIMARY KEY,
    merchant_id UUID NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    total NUMERIC,
    currency VARCHAR(10),
    crypto_amount NUMERIC,
    crypto_currency VARCHAR(20),
    amount_paid NUMERIC,
    payment_address TEXT,
    customer_email VARCHAR(320),
    updated_at TIMESTAMPTZ NOT NULL
);

-- One row per invoice event sent to at least one endpoint: the exact body every attempt POSTs
-- (text, not JSONB, so the bytes -- and what the signature covers -- never change).
CREATE TABLE webhook_events (
    id UUID PRIMARY KEY,  -- the event id: Checkout-Event-Id, the same on every attempt
    merchant_id UUID NOT NULL,
    invoice_id UUID,
    event_type VARCHAR(100) NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE webhook_deliveries (
    id UUID PRIMARY KEY,
    webhook_endpoint_id UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    merchant_id UUID NOT NULL,
    event_id UUID NOT NULL REFERENCES webhook_events (id),
    invoice_id UUID,
    event_type VARCHAR(100) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',  -- pending | succeeded | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    response_code INTEGER,
    response_body TEXT,
    last_error TEXT,
    -- Due time of the next attempt (the schedule lives here, so it survives a restart); while an
    -- attempt runs, its lease: a worker that dies mid-attempt leaves the row due again later.
    next_attempt_at TIMESTAMPTZ,
    lease UUID,
    delivered_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (webhook_endpoint_id, event_id)
);

CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX idx_webhook_deliveries_endpoint ON webhook_deliveries (webhook_endpoint_id, id DESC);
CREATE INDEX idx_webhook_deliveries_status ON webhook_deliveries (status, created_at)
    WHERE status IN ('failed', 'pending');

CREATE TABLE webhook_attempts (
    delivery_id UUID NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    status VARCHAR(20) NOT NULL,  -- succeeded | failed
    response_code INTEGER,
    response_body TEXT,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE notification_templates (
    id UUID PRIMARY KEY,
    merchant_id UUID NOT NULL REFERENCES merchants (id),
    event_type VARCHAR(100) NOT NULL,
    subject VARCHAR(200) NOT NULL,
    body_template TEXT NOT NULL,
    recipient VARCHAR(20) NOT NULL DEFAULT 'customer',  -- customer | merchant
    is_active BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX idx_notification_templates_merchant ON notification_templates (merchant_id, event_type)
    WHERE is_active;

CREATE TABLE notification_deliveries (
    id UUID PRIMARY KEY,
    template_id UUID NOT NULL REFERENCES notification_templates (id) ON DELETE CASCADE,
    merchant_id UUID NOT NULL,
    event_id UUID NOT NULL,
    invoice_id UUID,
    event_type VARCHAR(100) NOT NULL,
    recipient VARCHAR(320) NOT NULL,
    -- Rendered when the event arrived, so a later template edit does not change a queued mail.
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',  -- pending | sent | failed | skipped
    delivery_method VARCHAR(20) NOT NULL DEFAULT 'email',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TIMESTAMPTZ,
    lease UUID,
    delivered_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (template_id, event_id)
);

CREATE INDEX idx_notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX idx_notification_deliveries_merchant ON notification_deliveries (merchant_id, id DESC);
