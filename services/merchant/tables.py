"""The merchant service's tables (schema `merchant` on every shard), declared once.

Read models of the merchant, API key, webhook endpoint and notification template aggregates,
and the delivery workers' operational state (what was sent, when, and what came back: an attempt
log is not a decision, so not events). The Alembic revisions in migrations/ are checked against
this metadata; composed queries are written on it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from libs.common.tables import TIMESTAMPTZ, service_metadata

metadata = service_metadata()

EMPTY_OBJECT = text("'{}'::jsonb")

merchants = Table(
    "merchants",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("business_name", String(200), nullable=False),
    Column("contact_email", String(254), nullable=False),
    Column("status", String(20), nullable=False, server_default=text("'active'::character varying")),
    Column("plan_type", String(20), nullable=False, server_default=text("'free'::character varying")),
    Column("settings", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("wallets", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
)
# Platform-wide uniqueness: merchants are placed by their email's slot (libs/common/ids.py), so
# two sign-ups with one email always meet on the same shard and this index.
Index("merchants_contact_email_key", func.lower(merchants.c.contact_email), unique=True)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("merchant_id", UUID(as_uuid=True), ForeignKey("merchants.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_type", String(20), nullable=False),
    Column("permissions", ARRAY(Text), nullable=False),
    Column("status", String(20), nullable=False, server_default=text("'active'::character varying")),
    Column("name", String(100), nullable=False),
    Column("prefix", String(20), nullable=False),
    Column("last_used_at", TIMESTAMPTZ),
    Column("expires_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ, nullable=False),
)
Index("idx_api_keys_merchant", api_keys.c.merchant_id, api_keys.c.created_at.desc())

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("merchant_id", UUID(as_uuid=True), ForeignKey("merchants.id"), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("events", ARRAY(Text), nullable=False),
    # The previous secret keeps signing (a second v1) until it expires after a rotation. The
    # secrets themselves are rows of webhook_secrets, named here by reference.
    Column("previous_secret_expires_at", TIMESTAMPTZ),
    Column("status", String(20), nullable=False, server_default=text("'active'::character varying")),
    Column("max_retries", Integer, nullable=False),
    Column("retry_backoff", String(20), nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("allowed_ips", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
    Column("secret_ref", UUID(as_uuid=True), nullable=False),
    Column("previous_secret_ref", UUID(as_uuid=True)),
    Index("idx_webhook_endpoints_merchant", "merchant_id", "created_at"),
)

# How the endpoint's recent attempts went; `failing` is consecutive_failures past a threshold.
webhook_endpoint_health = Table(
    "webhook_endpoint_health",
    metadata,
    Column(
        "endpoint_id",
        UUID(as_uuid=True),
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("last_failure_at", TIMESTAMPTZ),
    Column("last_success_at", TIMESTAMPTZ),
)

# The merchant service's copy of what it needs of each invoice, for templates and payloads.
invoice_summaries = Table(
    "invoice_summaries",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("title", Text, nullable=False, server_default=text("''::text")),
    Column("status", String(20), nullable=False, server_default=text("'pending'::character varying")),
    Column("total", Numeric),
    Column("currency", String(10)),
    Column("crypto_amount", Numeric),
    Column("crypto_currency", String(20)),
    Column("amount_paid", Numeric),
    Column("payment_address", Text),
    Column("customer_email", String(320)),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
)

# One row per invoice event sent to at least one endpoint: the exact body every attempt POSTs
# (text, not JSONB, so the bytes, and what the signature covers, never change).
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),  # Checkout-Event-Id, on every attempt
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("invoice_id", UUID(as_uuid=True)),
    Column("event_type", String(100), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column(
        "webhook_endpoint_id",
        UUID(as_uuid=True),
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("event_id", UUID(as_uuid=True), ForeignKey("webhook_events.id"), nullable=False),
    Column("invoice_id", UUID(as_uuid=True)),
    Column("event_type", String(100), nullable=False),
    # pending | succeeded | failed
    Column("status", String(20), nullable=False, server_default=text("'pending'::character varying")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("response_code", Integer),
    Column("response_body", Text),
    Column("last_error", Text),
    # Due time of the next attempt (the schedule survives a restart); while an attempt runs, its
    # lease: a worker that dies mid-attempt leaves the row due again later.
    Column("next_attempt_at", TIMESTAMPTZ),
    Column("lease", UUID(as_uuid=True)),
    Column("delivered_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
    UniqueConstraint("webhook_endpoint_id", "event_id"),
)
Index(
    "idx_webhook_deliveries_due",
    webhook_deliveries.c.next_attempt_at,
    postgresql_where=webhook_deliveries.c.status == "pending",
)
Index(
    "idx_webhook_deliveries_endpoint",
    webhook_deliveries.c.webhook_endpoint_id,
    webhook_deliveries.c.id.desc(),
)
Index(
    "idx_webhook_deliveries_status",
    webhook_deliveries.c.status,
    webhook_deliveries.c.created_at,
    postgresql_where=webhook_deliveries.c.status.in_(["failed", "pending"]),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column(
        "delivery_id",
        UUID(as_uuid=True),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("attempt", Integer, primary_key=True),
    Column("status", String(20), nullable=False),  # succeeded | failed
    Column("response_code", Integer),
    Column("response_body", Text),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
    Column("attempted_at", TIMESTAMPTZ, nullable=False),
)

notification_templates = Table(
    "notification_templates",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("merchant_id", UUID(as_uuid=True), ForeignKey("merchants.id"), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body_template", Text, nullable=False),
    # customer | merchant
    Column("recipient", String(20), nullable=False, server_default=text("'customer'::character varying")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("updated_at", TIMESTAMPTZ, nullable=False),
)
Index(
    "idx_notification_templates_merchant",
    notification_templates.c.merchant_id,
    notification_templates.c.event_type,
    postgresql_where=notification_templates.c.is_active,
)

notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column(
        "template_id",
        UUID(as_uuid=True),
        ForeignKey("notification_templates.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("invoice_id", UUID(as_uuid=True)),
    Column("event_type", String(100), nullable=False),
    Column("recipient", String(320), nullable=False),
    # Rendered when the event arrived, so a later template edit does not change a queued mail.
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    # pending | sent | failed | skipped
    Column("status", String(20), nullable=False, server_default=text("'pending'::character varying")),
    Column("delivery_method", String(20), nullable=False, server_default=text("'email'::character varying")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("next_attempt_at", TIMESTAMPTZ),
    Column("lease", UUID(as_uuid=True)),
    Column("delivered_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    UniqueConstraint("template_id", "event_id"),
)
Index(
    "idx_notification_deliveries_due",
    notification_deliveries.c.next_attempt_at,
    postgresql_where=notification_deliveries.c.status == "pending",
)
Index(
    "idx_notification_deliveries_merchant",
    notification_deliveries.c.merchant_id,
    notification_deliveries.c.id.desc(),
)

# Webhook signing secrets, encrypted with CHECKOUT_WEBHOOK_SECRET_KEYS (webhooks/vault.py). Not a
# read model: no event describes these rows, and a rebuild leaves them alone.
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),  # the secret_ref the endpoint's events name
    Column("endpoint_id", UUID(as_uuid=True), nullable=False),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),  # a Fernet token
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Index("idx_webhook_secrets_endpoint", "endpoint_id"),
)

# The event feed (GET /v1/events): the head row is updated (so locked) to take each merchant's
# next number in the recording transaction, so numbers are taken in commit order, without gaps
# that fill in later.
event_feed_heads = Table(
    "event_feed_heads",
    metadata,
    Column("merchant_id", UUID(as_uuid=True), primary_key=True),
    Column("last_sequence", BigInteger, nullable=False),
)

event_feed = Table(
    "event_feed",
    metadata,
    Column("merchant_id", UUID(as_uuid=True), primary_key=True),
    Column("sequence", BigInteger, primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("body", Text, nullable=False),  # the webhook body, byte for byte
    Column("recorded_at", TIMESTAMPTZ, nullable=False),
    UniqueConstraint("merchant_id", "event_id"),  # a redelivered or replayed event is recorded once
    Index("idx_event_feed_type", "merchant_id", "event_type", "sequence"),
    Index("idx_event_feed_recorded", "recorded_at"),
)

# Contact emails claimed by merchant ids (libs/common/placement.py): one row per email, on the
# shard of the email's slot, which keeps contact emails unique platform-wide also for merchants
# placed by tier on other shards. `slot` is the email's slot (what a slot move selects by).
email_claims = Table(
    "email_claims",
    metadata,
    Column("email", Text, primary_key=True),
    Column("merchant_id", UUID(as_uuid=True), nullable=False),
    Column("slot", Integer, CheckConstraint("slot >= 0 AND slot < 4096"), nullable=False),
    Column("claimed_at", TIMESTAMPTZ, nullable=False, server_default=func.now()),
)
