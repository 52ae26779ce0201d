-- Issue 9: webhook signing secrets leave the event store and the read models. Events carry a
-- reference; the secret is a row here, encrypted with CHECKOUT_WEBHOOK_SECRET_KEYS
-- (services/merchant/webhooks/vault.py). Not a read model: no event describes these rows, and a
-- rebuild leaves them alone.
CREATE TABLE webhook_secrets (
    id UUID PRIMARY KEY,  -- the secret_ref the endpoint's events name
    endpoint_id UUID NOT NULL,
    merchant_id UUID NOT NULL,
    ciphertext BYTEA NOT NULL,  -- a Fernet token
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_webhook_secrets_endpoint ON webhook_secrets (endpoint_id);

-- The endpoint read model names its secrets by reference. An endpoint made before this migration
-- has its secrets only in its events (they hold the plaintext): its references are those events'
-- ids, newest for the current secret, the one before it for the previous. The projection does the
-- same when it replays such events, so a rebuild gives these rows again.
ALTER TABLE webhook_endpoints ADD COLUMN secret_ref UUID, ADD COLUMN previous_secret_ref UUID;
UPDATE webhook_endpoints e SET
    secret_ref = (
        SELECT v.id FROM events v
        WHERE v.aggregate_id = e.id
          AND v.event_type IN ('webhook_endpoint.created', 'webhook_endpoint.secret_rotated')
        ORDER BY v.event_version DESC LIMIT 1),
    previous_secret_ref = CASE WHEN e.previous_secret IS NULL THEN NULL ELSE (
        SELECT v.id FROM events v
        WHERE v.aggregate_id = e.id
          AND v.event_type IN ('webhook_endpoint.created', 'webhook_endpoint.secret_rotated')
        ORDER BY v.event_version DESC LIMIT 1 OFFSET 1) END;
ALTER TABLE webhook_endpoints ALTER COLUMN secret_ref SET NOT NULL;
ALTER TABLE webhook_endpoints DROP COLUMN secret, DROP COLUMN previous_secret;
