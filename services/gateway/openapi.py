"""The OpenAPI 3.1 document of the gateway, kept as data.

`tests/gateway/test_openapi.py` checks that every route the app serves is described here, and
nothing else, so the document cannot drift from the routes.
"""

from __future__ import annotations

from typing import Any

from libs.common import apikeys
from libs.common.limits import CONSISTENCY_TOKEN_MAX_CHARS

Schema = dict[str, Any]

OPERATOR: list[dict[str, list[str]]] = [{"operatorToken": []}]
MERCHANT: list[dict[str, list[str]]] = [{"apiKey": []}]
EITHER = OPERATOR + MERCHANT
PUBLIC: list[dict[str, list[str]]] = []


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(description: str = "", **extra: Any) -> Schema:
    return {"type": "string", **({"description": description} if description else {}), **extra}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _page(item: str) -> Schema:
    return {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": ref(item)},
            "next_cursor": _nullable(_string("Pass as ?cursor= for the next page.")),
        },
    }


def _json(schema: Schema, description: str = "") -> Schema:
    return {"description": description or "OK", "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


MONEY = _string("A decimal string, never a JSON number.", pattern=r"^-?[0-9]+(\.[0-9]+)?$")
FIAT_MONEY = _string(
    "A decimal string in the row's currency, to at least its minor unit (12.50, 1500 for JPY).",
    pattern=r"^-?[0-9]+(\.[0-9]+)?$",
)
SINGLE_CURRENCY_MONEY = _string(
    "The sum in currency when the period has exactly one; 0.00 when it has none; null when it has "
    "several (see by_currency).",
    pattern=r"^-?[0-9]+(\.[0-9]+)?$",
)
CURRENCY = _string("ISO 4217 code of the invoices' fiat currency.", pattern="^[A-Z]{3}$")
RATE = _string(
    "invoices_paid / invoices_created x 100, 2 decimals; 0.00 when nothing was created.",
    pattern=r"^[0-9]+\.[0-9]{2}$",
)
TIMESTAMP = _string("RFC 3339 in UTC, e.g. 2026-11-25T02:24:21.123456Z.", format="date-time")
NULLABLE_TIMESTAMP = _nullable(TIMESTAMP)
UUID = _string(format="uuid")
FREE_FORM: Schema = {"type": "object", "additionalProperties": True}

ERROR_CODES = {
    "401": ("unauthenticated", "Missing or invalid bearer token."),
    "403": ("permission_denied", "The token lacks the permission this endpoint needs."),
    "404": ("not_found", "No such resource (or it belongs to another merchant)."),
    "405": ("method_not_allowed", "The path exists, the method does not."),
    "409": (
        "already_exists / conflict / failed_precondition",
        "A duplicate, a lost race, an idempotency key reused with another body, or a state "
        "that forbids the change.",
    ),
    "422": ("invalid_argument", "The request is malformed; details name each field."),
    "429": ("rate_limited", "Too many requests."),
    "500": ("internal", "An unexpected failure; quote the request_id."),
    "503": ("unavailable", "A backing service or shard is unavailable."),
    "504": ("deadline_exceeded", "A backing service did not answer in time."),
}


def _errors(*statuses: str) -> dict[str, Schema]:
    common = ("422", "500", "503", "504")
    return {s: {"$ref": f"#/components/responses/E{s}"} for s in (*statuses, *common)}


def _op(
    summary: str,
    operation_id: str,
    tag: str,
    security: list[dict[str, list[str]]],
    ok: tuple[str, Schema],
    *,
    parameters: tuple[Schema, ...] = (),
    body: str | None = None,
    errors: tuple[str, ...] = ("401", "403"),
    description: str = "",
    responses: dict[str, Schema] | None = None,
) -> Schema:
    operation: Schema = {
        "summary": summary,
        "operationId": operation_id,
        "tags": [tag],
        "security": security,
        "parameters": [
            {"$ref": "#/components/parameters/RequestId"},
            {"$ref": "#/components/parameters/ConsistencyToken"},
            *parameters,
        ],
        "responses": {ok[0]: ok[1], **_errors(*errors), **(responses or {})},
    }
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
        operation["parameters"].append({"$ref": "#/components/parameters/IdempotencyKey"})
    return operation


ID = {"$ref": "#/components/parameters/Id"}
LIMIT = {"$ref": "#/components/parameters/Limit"}
CURSOR = {"$ref": "#/components/parameters/Cursor"}
AUTHED = ("401", "403", "404")

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details", "request_id"],
                "properties": {
                    "code": _string(
                        enum=[
                            "invalid_argument",
                            "unauthenticated",
                            "permission_denied",
                            "not_found",
                            "method_not_allowed",
                            "already_exists",
                            "conflict",
                            "failed_precondition",
                            "rate_limited",
                            "unavailable",
                            "deadline_exceeded",
                            "internal",
                        ]
                    ),
                    "message": _string(),
                    "details": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "reason"],
                            "properties": {
                                "field": _string("A path into the request, e.g. items[0].unit_price."),
                                "reason": _string(),
                            },
                        },
                    },
                    "request_id": _string(),
                },
            }
        },
    },
    "Merchant": {
        "type": "object",
        "properties": {
            "id": UUID,
            "business_name": _string(),
            "contact_email": _string(format="email"),
            "status": _string(examples=["active"]),
            "plan_type": _string(enum=["free", "pro", "enterprise"]),
            "settings": FREE_FORM,
            "wallets": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Network (ethereum, bitcoin) to watch-only extended public key.",
            },
            "shard": {"type": "integer"},
            "created_at": NULLABLE_TIMESTAMP,
            "updated_at": NULLABLE_TIMESTAMP,
        },
    },
    "MerchantCreate": _object(
        {
            "business_name": _string(),
            "contact_email": _string("Unique platform-wide.", format="email"),
            "plan_type": _string(enum=["free", "pro", "enterprise"]),
            "settings": FREE_FORM,
            "wallets": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        ("business_name", "contact_email"),
    ),
    "MerchantUpdate": _object(
        {
            "business_name": _string(),
            "settings": {**FREE_FORM, "description": "Replaces the stored settings."},
            "wallets": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Replaces the stored wallets.",
            },
        }
    ),
    "ApiKey": {
        "type": "object",
        "properties": {
            "id": UUID,
            "merchant_id": UUID,
            "name": _string(),
            "key_type": _string(enum=["secret", "publishable"]),
            "permissions": {"type": "array", "items": _string()},
            "status": _string(examples=["active", "revoked"]),
            "prefix": _string("The first characters of the key, safe to show."),
            "expires_at": NULLABLE_TIMESTAMP,
            "created_at": NULLABLE_TIMESTAMP,
            "last_used_at": NULLABLE_TIMESTAMP,
        },
    },
    "ApiKeyCreated": {
        "allOf": [
            ref("ApiKey"),
            {
                "type": "object",
                "required": ["key"],
                "properties": {"key": _string("The plaintext key, shown this once.")},
            },
        ]
    },
    "ApiKeyCreate": _object(
        {
            "name": _string(),
            "key_type": _string(enum=["secret", "publishable"], default="secret"),
            "permissions": {
                "type": "array",
                "items": _string(enum=list(apikeys.PERMISSIONS)),
                "description": "Defaults to the key type's defaults; a merchant key may only "
                "grant permissions it holds.",
            },
            "expires_at": TIMESTAMP,
        },
        ("name",),
    ),
    "LineItem": _object(
        {"name": _string(), "quantity": MONEY, "unit_price": MONEY},
        ("name", "quantity", "unit_price"),
    ),
    "PaymentTolerance": _object({"underpaid_percent": MONEY}, ("underpaid_percent",)),
    "ExchangeRate": {
        "type": "object",
        "properties": {
            "rate": MONEY,
            "source": _string(),
            "pair": _nullable(_string()),
            "fetched_at": NULLABLE_TIMESTAMP,
        },
    },
    "InvoiceCreate": _object(
        {
            "title": _string(),
            "description": _string(),
            "items": {"type": "array", "items": ref("LineItem"), "minItems": 1},
            "tax": MONEY,
            "currency": _string(examples=["USD"]),
            "crypto_currency": _string(examples=["ETH", "BTC"]),
            "customer_email": _string(format="email"),
            "customer_id": UUID,
            "expires_in_seconds": {"type": "integer", "minimum": 1},
            "payment_tolerance": ref("PaymentTolerance"),
            "metadata": FREE_FORM,
        },
        ("title", "items", "currency", "crypto_currency"),
    ),
    "Invoice": {
        "type": "object",
        "properties": {
            "id": UUID,
            "merchant_id": UUID,
            "customer_id": _nullable(UUID),
            "customer_email": _nullable(_string()),
            "title": _string(),
            "description": _string(),
            "items": {"type": "array", "items": ref("LineItem")},
            "subtotal": MONEY,
            "tax": MONEY,
            "total": MONEY,
            "currency": _string(),
            "crypto_currency": _string(),
            "crypto_amount": MONEY,
            "amount_paid": MONEY,
            "network": _nullable(_string()),
            "payment_address": _string(),
            "payment_uri": _string("BIP21 / EIP-681 URI."),
            "status": _string(
                enum=["pending", "partial", "paid", "confirmed", "expired", "cancelled", "invalid"]
            ),
            "exchange_rate": _nullable(ref("ExchangeRate")),
            "payment_tolerance": _nullable(ref("PaymentTolerance")),
            "metadata": FREE_FORM,
            "expires_at": NULLABLE_TIMESTAMP,
            "created_at": NULLABLE_TIMESTAMP,
            "updated_at": NULLABLE_TIMESTAMP,
            "paid_at": NULLABLE_TIMESTAMP,
            "overpaid": {"type": "boolean", "description": "More than the amount due was paid (a flag)."},
            "paid_late": {
                "type": "boolean",
                "description": "A payment arrived after the invoice expired or was cancelled.",
            },
            "status_reason": _nullable(
                _string("Why the status is what it is, when that is not obvious (expired, invalid).")
            ),
        },
    },
    "InvoiceCancel": _object({"reason": _string("Kept in the audit trail.", maxLength=500)}),
    "Payment": {
        "type": "object",
        "properties": {
            "id": UUID,
            "invoice_id": UUID,
            "network": _string(),
            "tx_hash": _string(),
            "output_index": {
                "type": "integer",
                "description": "ERC-20: the log index; Bitcoin: the output; an EVM transaction's own value: -1.",
            },
            "asset": _string(examples=["ETH", "USDC", "BTC"]),
            "amount": MONEY,
            "from_address": _string(),
            "to_address": _string(),
            "status": _string(enum=["detected", "confirming", "confirmed", "failed", "reorged"]),
            "confirmations": {"type": "integer"},
            "required_confirmations": {"type": "integer"},
            "block_number": _nullable({"type": "integer", "description": "null while in the mempool."}),
            "block_hash": _nullable(_string()),
            "late": {"type": "boolean", "description": "Arrived after expiry or cancel; not counted."},
            "status_reason": _nullable(_string()),
            "detected_at": NULLABLE_TIMESTAMP,
            "confirmed_at": NULLABLE_TIMESTAMP,
        },
    },
    "Payments": {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": ref("Payment")}},
    },
    "AuditEntry": {
        "type": "object",
        "properties": {
            "id": UUID,
            "invoice_id": UUID,
            "event": _string(examples=["invoice.paid"]),
            "actor": _string(examples=["system:watcher", "merchant:<api key id>"]),
            "timestamp": NULLABLE_TIMESTAMP,
            "request_id": _nullable(_string()),
            "data": FREE_FORM,
        },
    },
    "Checkout": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id": UUID,
            "title": _string(),
            "status": _string(),
            "total": MONEY,
            "currency": _string(),
            "crypto_currency": _string(),
            "crypto_amount": MONEY,
            "amount_paid": MONEY,
            "payment_address": _string(),
            "payment_uri": _string(),
            "expires_at": NULLABLE_TIMESTAMP,
            "overpaid": {"type": "boolean"},
            "paid_late": {"type": "boolean"},
            "payments": {
                "type": "array",
                "items": _object(
                    {
                        "tx_hash": _string(),
                        "amount": MONEY,
                        "status": _string(),
                        "confirmations": {"type": "integer"},
                        "required_confirmations": {"type": "integer"},
                    }
                ),
            },
        },
    },
    "Customer": {
        "type": "object",
        "properties": {
            "id": UUID,
            "merchant_id": UUID,
            "email": _string(),
            "status": _string(),
            "metadata": FREE_FORM,
            "invoice_count": {"type": "integer"},
            "created_at": NULLABLE_TIMESTAMP,
            "updated_at": NULLABLE_TIMESTAMP,
            "last_seen_at": NULLABLE_TIMESTAMP,
        },
    },
    "CustomerPayment": {
        "type": "object",
        "properties": {
            "customer_id": UUID,
            "invoice_id": UUID,
            "amount": MONEY,
            "currency": _string(),
            "status": _string(),
            "paid_at": NULLABLE_TIMESTAMP,
            "created_at": NULLABLE_TIMESTAMP,
        },
    },
    "DailyMetric": {
        "type": "object",
        "description": "One UTC day in one fiat currency: a day with invoices in two currencies is two rows.",
        "properties": {
            "metric_date": _string(format="date"),
            "currency": CURRENCY,
            "invoices_created": {"type": "integer"},
            "invoices_paid": {"type": "integer"},
            "amount_created": FIAT_MONEY,
            "amount_paid": FIAT_MONEY,
            "conversion_rate": MONEY,
        },
    },
    "DailyMetrics": {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": ref("DailyMetric")}},
    },
    "AnalyticsSummary": {
        "type": "object",
        "required": [
            "period",
            "from",
            "to",
            "invoices_created",
            "invoices_paid",
            "amount_created",
            "amount_paid",
            "currency",
            "conversion_rate",
            "by_currency",
        ],
        "properties": {
            "period": _string(enum=["7d", "30d", "90d", "all"]),
            "from": _nullable(
                _string(
                    "First day covered; for all, the first day with metrics (null if none).", format="date"
                )
            ),
            "to": _string("Last day covered: today (UTC).", format="date"),
            "invoices_created": {"type": "integer", "description": "Across every currency."},
            "invoices_paid": {"type": "integer", "description": "Across every currency."},
            "amount_created": _nullable(SINGLE_CURRENCY_MONEY),
            "amount_paid": _nullable(SINGLE_CURRENCY_MONEY),
            "currency": _nullable(
                _string("The period's currency when it has exactly one; null with none or several.")
            ),
            "conversion_rate": RATE,
            "by_currency": {
                "type": "array",
                "description": "Each currency the period has invoices in, in code order.",
                "items": ref("CurrencyTotals"),
            },
        },
    },
    "CurrencyTotals": {
        "type": "object",
        "required": [
            "currency",
            "invoices_created",
            "invoices_paid",
            "amount_created",
            "amount_paid",
            "conversion_rate",
        ],
        "properties": {
            "currency": CURRENCY,
            "invoices_created": {"type": "integer"},
            "invoices_paid": {"type": "integer"},
            "amount_created": FIAT_MONEY,
            "amount_paid": FIAT_MONEY,
            "conversion_rate": RATE,
        },
    },
    "PlatformMetricSums": {
        "type": "object",
        "properties": {
            "invoices_created": {"type": "integer"},
            "invoices_paid": {"type": "integer"},
            "amount_created": MONEY,
            "amount_paid": MONEY,
            "conversion_rate": MONEY,
            "merchants_active": {
                "type": "integer",
                "description": "Merchants that created or were paid for an invoice (in totals: "
                "distinct over the range).",
            },
        },
    },
    "PlatformMetricDay": {
        "description": "One UTC day in one fiat currency, summed over every merchant.",
        "allOf": [
            ref("PlatformMetricSums"),
            {"type": "object", "properties": {"metric_date": _string(format="date"), "currency": CURRENCY}},
        ],
    },
    "PlatformMetricTotals": {
        "description": "The range across currencies: counts add up; amount_created and amount_paid "
        "are the sums in currency when the range has exactly one currency, null (and currency "
        "null) when it has several, 0.00 when it has none.",
        "type": "object",
        "properties": {
            "invoices_created": {"type": "integer"},
            "invoices_paid": {"type": "integer"},
            "amount_created": _nullable(MONEY),
            "amount_paid": _nullable(MONEY),
            "currency": _nullable(_string("The range's currency when it has exactly one.")),
            "conversion_rate": MONEY,
            "merchants_active": {"type": "integer", "description": "Distinct over the range."},
        },
    },
    "PlatformCurrencyTotals": {
        "description": "The range in one fiat currency.",
        "allOf": [
            ref("PlatformMetricSums"),
            {"type": "object", "properties": {"currency": CURRENCY}},
        ],
    },
    "ShardOutcome": {
        "type": "object",
        "required": ["id", "ok"],
        "properties": {
            "id": {"type": "integer"},
            "ok": {"type": "boolean"},
            "error": {
                "type": "object",
                "description": "Only when ok is false.",
                "properties": {"code": _string(), "message": _string()},
            },
        },
    },
    "PlatformMetrics": {
        "type": "object",
        "required": ["from", "to", "data", "totals", "totals_by_currency", "complete", "shards"],
        "properties": {
            "from": _string(format="date"),
            "to": _string(format="date"),
            "data": {
                "type": "array",
                "description": "In (metric_date, currency) order.",
                "items": ref("PlatformMetricDay"),
            },
            "totals": ref("PlatformMetricTotals"),
            "totals_by_currency": {
                "type": "array",
                "description": "Each currency the range has invoices in, in code order.",
                "items": ref("PlatformCurrencyTotals"),
            },
            "complete": {"type": "boolean", "description": "false when a shard failed: the sums lack it."},
            "shards": {"type": "array", "items": ref("ShardOutcome")},
        },
    },
    "Shard": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "slots": {"type": "integer"},
            "slot_ranges": {
                "type": "array",
                "description": "Half-open slot ranges [start, end).",
                "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
            },
            "merchants": _nullable({"type": "integer"}),
            "invoices": _nullable({"type": "integer"}),
            "healthy": {"type": "boolean"},
            "replicas": _nullable({"type": "array", "items": ref("Replica")}),
        },
    },
    "Replica": {
        "type": "object",
        "properties": {
            "name": _string("host:port/database of the replica (no credentials)."),
            "roles": {
                "type": "array",
                "items": _string(enum=["analytics", "archive", "customer", "read"]),
                "description": "The reads it may serve.",
            },
            "up": {"type": "boolean"},
            "lag_seconds": _nullable({"type": "number", "description": "How stale its reads may be."}),
            "lag_bytes": _nullable({"type": "integer", "description": "WAL not replayed yet."}),
            "lagging": {"type": "boolean", "description": "Down, or more than 1 s behind (the alert)."},
            "error": _string("Why it is down."),
        },
    },
    "Shards": {
        "type": "object",
        "properties": {
            "shards": {"type": "array", "items": ref("Shard")},
            "shard_map_version": {"type": "integer"},
        },
    },
    "WebhookEndpoint": {
        "type": "object",
        "properties": {
            "id": UUID,
            "merchant_id": UUID,
            "url": _string(format="uri"),
            "events": {"type": "array", "items": _string(examples=["invoice.paid", "*"])},
            "status": _string(
                "failing: active, but its last attempts failed (see last_error).",
                enum=["active", "disabled", "failing", "deleted"],
            ),
            "max_retries": {"type": "integer"},
            "retry_backoff": _string(enum=["exponential", "linear"]),
            "timeout_seconds": {"type": "integer"},
            "allowed_ips": {"type": "array", "items": _string()},
            "consecutive_failures": {"type": "integer"},
            "last_error": _nullable(_string()),
            "last_failure_at": NULLABLE_TIMESTAMP,
            "last_success_at": NULLABLE_TIMESTAMP,
            "created_at": NULLABLE_TIMESTAMP,
            "updated_at": NULLABLE_TIMESTAMP,
        },
    },
    "WebhookEndpointWithSecret": {
        "allOf": [
            ref("WebhookEndpoint"),
            {
                "type": "object",
                "required": ["secret"],
                "properties": {
                    "secret": _string(
                        "The signing secret (whsec_...), shown this once; a replayed create returns it empty."
                    )
                },
            },
        ]
    },
    "WebhookEndpointCreate": _object(
        {
            "url": _string(
                "http(s) URL; hosts resolving to private, loopback, link-local or metadata addresses are refused.",
                format="uri",
            ),
            "events": {
                "type": "array",
                "minItems": 1,
                "items": _string("An invoice event type, or * for all.", examples=["invoice.paid"]),
            },
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 20, "default": 8},
            "retry_backoff": _string(enum=["exponential", "linear"], default="exponential"),
            "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 30, "default": 10},
            "allowed_ips": {
                "type": "array",
                "items": _string("An IP or CIDR block."),
                "description": "When set, the URL must resolve inside these (it only narrows).",
            },
        },
        ("url", "events"),
    ),
    "WebhookEndpointUpdate": _object(
        {
            "url": _string(format="uri"),
            "events": {"type": "array", "minItems": 1, "items": _string()},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 20},
            "retry_backoff": _string(enum=["exponential", "linear"]),
            "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 30},
            "allowed_ips": {"type": "array", "items": _string()},
            "status": _string("Disable or re-enable the endpoint.", enum=["active", "disabled"]),
        }
    ),
    "WebhookAttempt": {
        "type": "object",
        "properties": {
            "attempt": {"type": "integer"},
            "status": _string(enum=["succeeded", "failed"]),
            "response_code": _nullable({"type": "integer"}),
            "response_body": _nullable(_string("The start of the response body.")),
            "error": _nullable(_string()),
            "duration_ms": {"type": "integer"},
            "attempted_at": NULLABLE_TIMESTAMP,
        },
    },
    "WebhookDelivery": {
        "type": "object",
        "properties": {
            "id": UUID,
            "endpoint_id": UUID,
            "event_id": _string("The Checkout-Event-Id header: the same on every attempt.", format="uuid"),
            "event_type": _string(),
            "invoice_id": _nullable(UUID),
            "status": _string(enum=["pending", "succeeded", "failed"]),
            "attempts": {"type": "integer"},
            "response_code": _nullable({"type": "integer"}),
            "response_body": _nullable(_string()),
            "last_error": _nullable(_string()),
            "next_attempt_at": NULLABLE_TIMESTAMP,
            "delivered_at": NULLABLE_TIMESTAMP,
            "created_at": NULLABLE_TIMESTAMP,
            "updated_at": NULLABLE_TIMESTAMP,
            "attempt_log": {"type": "array", "items": ref("WebhookAttempt")},
        },
    },
    "NotificationTemplate": {
        "type": "object",
        "properties": {
            "id": UUID,
            "merchant_id": UUID,
            "event_type": _string(examples=["invoice.paid"]),
            "subject": _string(),
            "body_template": _string(),
            "recipient": _string(enum=["customer", "merchant"]),
            "is_active": {"type": "boolean"},
            "created_at": NULLABLE_TIMESTAMP,
            "updated_at": NULLABLE_TIMESTAMP,
        },
    },
    "NotificationTemplateCreate": _object(
        {
            "event_type": _string("An invoice event type.", examples=["invoice.paid"]),
            "subject": _string("A template, like body_template.", maxLength=200),
            "body_template": _string(
                "Placeholders ${field} of: invoice_id, title, status, total, currency, crypto_amount, "
                "crypto_currency, amount_paid, payment_address, customer_email, merchant_name, event_type; "
                "$$ is a literal $. Anything else is refused when saved."
            ),
            "recipient": _string(
                "customer: the invoice's customer_email; merchant: the merchant's contact_email.",
                enum=["customer", "merchant"],
                default="customer",
            ),
            "is_active": {"type": "boolean", "default": True},
        },
        ("event_type", "subject", "body_template"),
    ),
    "NotificationTemplateUpdate": _object(
        {
            "event_type": _string(),
            "subject": _string(maxLength=200),
            "body_template": _string(),
            "recipient": _string(enum=["customer", "merchant"]),
            "is_active": {"type": "boolean"},
        }
    ),
    "NotificationDelivery": {
        "type": "object",
        "properties": {
            "id": UUID,
            "template_id": UUID,
            "event_id": UUID,
            "event_type": _string(),
            "invoice_id": _nullable(UUID),
            "recipient": _string(),
            "subject": _string(),
            "status": _string(enum=["pending", "sent", "failed", "skipped"]),
            "delivery_method": _string(enum=["email"]),
            "attempts": {"type": "integer"},
            "last_error": _nullable(_string()),
            "next_attempt_at": NULLABLE_TIMESTAMP,
            "delivered_at": NULLABLE_TIMESTAMP,
            "created_at": NULLABLE_TIMESTAMP,
        },
    },
    "Health": {"type": "object", "properties": {"status": _string(enum=["ok"])}},
    "Readiness": {
        "type": "object",
        "properties": {
            "status": _string(enum=["ready", "unavailable"]),
            "checks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "service": _string(),
                        "shard": {"type": "integer"},
                        "address": _string(),
                        "status": _string("SERVING, NOT_SERVING, or why it was not reached."),
                    },
                },
            },
            "down": {"type": "array", "items": {"type": "object"}},
        },
    },
}

PATHS: dict[str, Schema] = {
    "/healthz": {"get": _op("Liveness", "healthz", "meta", PUBLIC, ("200", _json(ref("Health"))), errors=())},
    "/readyz": {
        "get": _op(
            "Readiness: every shard of every service answers its gRPC health check",
            "readyz",
            "meta",
            PUBLIC,
            ("200", _json(ref("Readiness"))),
            errors=(),
            responses={"503": _json(ref("Readiness"), "Not ready; `down` lists what failed")},
        )
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics",
            "metrics",
            "meta",
            PUBLIC,
            ("200", {"description": "Prometheus text format", "content": {"text/plain": {}}}),
            errors=(),
        )
    },
    "/openapi.json": {
        "get": _op("This document", "openapi", "meta", PUBLIC, ("200", _json({"type": "object"})), errors=())
    },
    "/v1/merchants": {
        "post": _op(
            "Create a merchant",
            "createMerchant",
            "merchants",
            OPERATOR,
            ("201", _json(ref("Merchant"), "Created")),
            body="MerchantCreate",
            errors=("401", "403", "409"),
        ),
        "get": _op(
            "List merchants across all shards, newest first",
            "listMerchants",
            "merchants",
            OPERATOR,
            ("200", _json(_page("Merchant"))),
            parameters=(LIMIT, CURSOR),
            description="A shard that fails makes the whole list 503, naming the shard.",
        ),
    },
    "/v1/merchants/{id}": {
        "get": _op(
            "Get a merchant",
            "getMerchant",
            "merchants",
            EITHER,
            ("200", _json(ref("Merchant"))),
            parameters=(ID,),
            errors=AUTHED,
            description="With a merchant key (merchants:read), only its own merchant.",
        ),
        "patch": _op(
            "Update a merchant's name, settings or wallets",
            "updateMerchant",
            "merchants",
            EITHER,
            ("200", _json(ref("Merchant"))),
            parameters=(ID,),
            errors=AUTHED,
            description="With a merchant key: its own merchant, a secret key holding "
            "merchants:write. Present fields replace the stored ones.",
        )
        | {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("MerchantUpdate")}},
            }
        },
    },
    "/v1/merchants/{id}/api-keys": {
        "post": _op(
            "Issue an API key",
            "createApiKey",
            "api keys",
            EITHER,
            ("201", _json(ref("ApiKeyCreated"), "Created; the plaintext key is shown once")),
            parameters=(ID,),
            body="ApiKeyCreate",
            errors=AUTHED,
            description="With a merchant key: its own merchant, holding api_keys:write.",
        )
    },
    "/v1/api-keys": {
        "get": _op(
            "List the merchant's API keys",
            "listApiKeys",
            "api keys",
            MERCHANT,
            ("200", _json(_page("ApiKey"))),
            description="Needs api_keys:read. All keys in one page.",
        )
    },
    "/v1/api-keys/{id}": {
        "delete": _op(
            "Revoke an API key (takes effect at once)",
            "revokeApiKey",
            "api keys",
            MERCHANT,
            ("200", _json(ref("ApiKey"), "The revoked key")),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs api_keys:write.",
        )
    },
    "/v1/invoices": {
        "post": _op(
            "Create an invoice",
            "createInvoice",
            "invoices",
            MERCHANT,
            ("201", _json(ref("Invoice"), "Created")),
            body="InvoiceCreate",
            errors=("401", "403", "409"),
            description="Needs invoices:write. Money and quantities are decimal strings.",
        ),
        "get": _op(
            "List invoices, newest first",
            "listInvoices",
            "invoices",
            MERCHANT,
            ("200", _json(_page("Invoice"))),
            parameters=(
                _param(
                    "status",
                    "query",
                    _string(
                        enum=[
                            "pending",
                            "partial",
                            "paid",
                            "confirmed",
                            "expired",
                            "cancelled",
                            "invalid",
                        ]
                    ),
                    "Only invoices in this status.",
                ),
                _param("created_after", "query", TIMESTAMP, "RFC 3339."),
                _param("created_before", "query", TIMESTAMP, "RFC 3339."),
                _param("customer_id", "query", UUID, "Only this customer's invoices."),
                LIMIT,
                CURSOR,
            ),
            description="Needs invoices:read.",
        ),
    },
    "/v1/invoices/search": {
        "get": _op(
            "Full-text search over title and description",
            "searchInvoices",
            "invoices",
            MERCHANT,
            ("200", _json(_page("Invoice"))),
            parameters=(
                _param("q", "query", _string(minLength=1), "The search text.", required=True),
                LIMIT,
                CURSOR,
            ),
            description="Needs invoices:read.",
        )
    },
    "/v1/invoices/{id}": {
        "get": _op(
            "Get an invoice",
            "getInvoice",
            "invoices",
            MERCHANT,
            ("200", _json(ref("Invoice"))),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs invoices:read.",
        )
    },
    "/v1/invoices/{id}/cancel": {
        "post": _op(
            "Cancel an invoice",
            "cancelInvoice",
            "invoices",
            MERCHANT,
            ("200", _json(ref("Invoice"), "The cancelled invoice")),
            parameters=(ID, {"$ref": "#/components/parameters/IdempotencyKey"}),
            errors=("401", "403", "404", "409"),
            description="Needs invoices:cancel. Only while nothing has been paid; otherwise 409 "
            "failed_precondition. The body is optional.",
        )
        | {
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": ref("InvoiceCancel")}},
            }
        },
    },
    "/v1/invoices/{id}/payments": {
        "get": _op(
            "The invoice's on-chain payments",
            "listInvoicePayments",
            "invoices",
            MERCHANT,
            ("200", _json(ref("Payments"))),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs invoices:read. Every payment seen, late and reorged ones included.",
        )
    },
    "/v1/invoices/{id}/audit": {
        "get": _op(
            "The invoice's audit trail, oldest first",
            "listInvoiceAudit",
            "invoices",
            MERCHANT,
            ("200", _json(_page("AuditEntry"))),
            parameters=(ID, LIMIT, CURSOR),
            errors=AUTHED,
            description="Needs invoices:read. Every transition with its actor.",
        )
    },
    "/v1/customers": {
        "get": _op(
            "List customers",
            "listCustomers",
            "customers",
            MERCHANT,
            ("200", _json(_page("Customer"))),
            parameters=(
                _param("email", "query", _string(format="email"), "Only this email."),
                LIMIT,
                CURSOR,
            ),
            description="Needs customers:read.",
        )
    },
    "/v1/customers/{id}": {
        "get": _op(
            "Get a customer",
            "getCustomer",
            "customers",
            MERCHANT,
            ("200", _json(ref("Customer"))),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs customers:read.",
        )
    },
    "/v1/customers/{id}/payments": {
        "get": _op(
            "A customer's payment history",
            "listCustomerPayments",
            "customers",
            MERCHANT,
            ("200", _json(_page("CustomerPayment"))),
            parameters=(ID, LIMIT, CURSOR),
            errors=AUTHED,
            description="Needs customers:read.",
        )
    },
    "/v1/analytics/daily": {
        "get": _op(
            "Daily metrics",
            "dailyMetrics",
            "analytics",
            MERCHANT,
            ("200", _json(ref("DailyMetrics"))),
            parameters=(
                _param("from", "query", _string(format="date"), "YYYY-MM-DD, inclusive.", True),
                _param(
                    "to",
                    "query",
                    _string(format="date"),
                    "YYYY-MM-DD, inclusive; at most 366 days after from.",
                    True,
                ),
            ),
            description="Needs analytics:read. One row per day and fiat currency the merchant "
            "invoiced or was paid in.",
        )
    },
    "/v1/analytics/summary": {
        "get": _op(
            "Summary over a period",
            "analyticsSummary",
            "analytics",
            MERCHANT,
            ("200", _json(ref("AnalyticsSummary"))),
            parameters=(
                _param(
                    "period",
                    "query",
                    _string(enum=["7d", "30d", "90d", "all"]),
                    "The last 7, 30 or 90 UTC days including today, or all time.",
                    True,
                ),
            ),
            description="Needs analytics:read. Amounts are never added across fiat currencies: "
            "by_currency has each currency's sums, and the top-level amounts are those of the "
            "period's one currency (null when it has several).",
        )
    },
    "/v1/webhook-endpoints": {
        "post": _op(
            "Register a webhook endpoint",
            "createWebhookEndpoint",
            "webhooks",
            MERCHANT,
            ("201", _json(ref("WebhookEndpointWithSecret"), "Created; the signing secret is shown once")),
            body="WebhookEndpointCreate",
            errors=("401", "403", "404", "409"),
            description="Needs webhooks:write. Each delivery is a POST of {id, type, created_at, data} with "
            'Checkout-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")> and Checkout-Event-Id; '
            "see the README for verifying it.",
        ),
        "get": _op(
            "List the merchant's webhook endpoints",
            "listWebhookEndpoints",
            "webhooks",
            MERCHANT,
            ("200", _json(_page("WebhookEndpoint"))),
            description="Needs webhooks:read. All endpoints in one page.",
        ),
    },
    "/v1/webhook-endpoints/{id}": {
        "get": _op(
            "Get a webhook endpoint",
            "getWebhookEndpoint",
            "webhooks",
            MERCHANT,
            ("200", _json(ref("WebhookEndpoint"))),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs webhooks:read.",
        ),
        "patch": _op(
            "Update, disable or re-enable a webhook endpoint",
            "updateWebhookEndpoint",
            "webhooks",
            MERCHANT,
            ("200", _json(ref("WebhookEndpoint"))),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs webhooks:write. Present fields replace the stored ones.",
        )
        | {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("WebhookEndpointUpdate")}},
            }
        },
        "delete": _op(
            "Delete a webhook endpoint (and its delivery log)",
            "deleteWebhookEndpoint",
            "webhooks",
            MERCHANT,
            ("200", _json(ref("WebhookEndpoint"), "The deleted endpoint, status deleted")),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs webhooks:write.",
        ),
    },
    "/v1/webhook-endpoints/{id}/rotate-secret": {
        "post": _op(
            "Rotate the signing secret",
            "rotateWebhookSecret",
            "webhooks",
            MERCHANT,
            ("200", _json(ref("WebhookEndpointWithSecret"), "The new secret, shown once")),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs webhooks:write. For 24 hours deliveries carry a v1 signature for the old "
            "secret as well as the new one.",
        )
    },
    "/v1/webhook-endpoints/{id}/deliveries": {
        "get": _op(
            "An endpoint's deliveries, newest first, with every attempt",
            "listWebhookDeliveries",
            "webhooks",
            MERCHANT,
            ("200", _json(_page("WebhookDelivery"))),
            parameters=(
                ID,
                _param(
                    "status", "query", _string(enum=["pending", "succeeded", "failed"]), "Only this status."
                ),
                _param("event_type", "query", _string(examples=["invoice.paid"]), "Only this event type."),
                LIMIT,
                CURSOR,
            ),
            errors=AUTHED,
            description="Needs webhooks:read.",
        )
    },
    "/v1/webhook-deliveries/{id}": {
        "get": _op(
            "Get a webhook delivery with every attempt",
            "getWebhookDelivery",
            "webhooks",
            MERCHANT,
            ("200", _json(ref("WebhookDelivery"))),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs webhooks:read.",
        )
    },
    "/v1/webhook-deliveries/{id}/redeliver": {
        "post": _op(
            "Send a delivery again",
            "redeliverWebhook",
            "webhooks",
            MERCHANT,
            ("202", _json(ref("WebhookDelivery"), "Scheduled at once; the attempt joins attempt_log")),
            parameters=(ID,),
            errors=("401", "403", "404", "409"),
            description="Needs webhooks:write. The same event id and body, a fresh signature. 409 when "
            "the endpoint is disabled.",
        )
    },
    "/v1/notification-templates": {
        "post": _op(
            "Create a notification (email) template",
            "createNotificationTemplate",
            "notifications",
            MERCHANT,
            ("201", _json(ref("NotificationTemplate"), "Created")),
            body="NotificationTemplateCreate",
            errors=("401", "403", "409"),
            description="Needs webhooks:write. A template naming an unknown field is a 422 on that field.",
        ),
        "get": _op(
            "List notification templates",
            "listNotificationTemplates",
            "notifications",
            MERCHANT,
            ("200", _json(_page("NotificationTemplate"))),
            description="Needs webhooks:read. All templates in one page.",
        ),
    },
    "/v1/notification-templates/{id}": {
        "get": _op(
            "Get a notification template",
            "getNotificationTemplate",
            "notifications",
            MERCHANT,
            ("200", _json(ref("NotificationTemplate"))),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs webhooks:read.",
        ),
        "patch": _op(
            "Update a notification template",
            "updateNotificationTemplate",
            "notifications",
            MERCHANT,
            ("200", _json(ref("NotificationTemplate"))),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs webhooks:write.",
        )
        | {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("NotificationTemplateUpdate")}},
            }
        },
        "delete": _op(
            "Delete a notification template",
            "deleteNotificationTemplate",
            "notifications",
            MERCHANT,
            ("200", _json(ref("NotificationTemplate"), "The deleted template")),
            parameters=(ID,),
            errors=AUTHED,
            description="Needs webhooks:write.",
        ),
    },
    "/v1/notification-deliveries": {
        "get": _op(
            "Notification emails sent (or queued, failed, skipped), newest first",
            "listNotificationDeliveries",
            "notifications",
            MERCHANT,
            ("200", _json(_page("NotificationDelivery"))),
            parameters=(
                _param("template_id", "query", UUID, "Only this template's."),
                _param(
                    "status",
                    "query",
                    _string(enum=["pending", "sent", "failed", "skipped"]),
                    "Only this status.",
                ),
                LIMIT,
                CURSOR,
            ),
            description="Needs webhooks:read.",
        )
    },
    "/v1/admin/shards": {
        "get": _op(
            "Shard map and balance",
            "adminShards",
            "admin",
            OPERATOR,
            ("200", _json(ref("Shards"))),
            description="A shard whose calls fail is listed with healthy false and null counts.",
        )
    },
    "/v1/admin/platform-metrics": {
        "get": _op(
            "Metrics across every merchant and shard",
            "adminPlatformMetrics",
            "admin",
            OPERATOR,
            ("200", _json(ref("PlatformMetrics"))),
            parameters=(
                _param("from", "query", _string(format="date"), "YYYY-MM-DD, inclusive.", True),
                _param(
                    "to",
                    "query",
                    _string(format="date"),
                    "YYYY-MM-DD, inclusive; at most 366 days after from.",
                    True,
                ),
            ),
            description="Every shard is asked concurrently with a deadline. A shard that fails is "
            "listed in shards with ok false, the sums leave it out and complete is false; the "
            "response is still 200. Only when no shard answers is it a 503 naming each. Amounts "
            "are summed per fiat currency, never across currencies.",
        )
    },
    "/v1/checkout/{invoice_id}": {
        "get": _op(
            "The payer's view of an invoice",
            "getCheckout",
            "checkout",
            PUBLIC,
            ("200", _json(ref("Checkout"))),
            parameters=(_param("invoice_id", "path", UUID, "The invoice id.", required=True),),
            errors=("404",),
        )
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Checkout gateway",
        "version": "1.0.0",
        "description": "Non-custodial crypto checkout. Money is a decimal string; timestamps "
        "are RFC 3339 UTC; every response carries X-Request-Id, and every write's response a "
        "Checkout-Consistency-Token to send with the reads that must see it.",
    },
    "servers": [{"url": "/"}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "operatorToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "The platform operator token (CHECKOUT_ADMIN_TOKEN).",
            },
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "ck_<sk|pk>_<key id>_<secret>",
                "description": "A merchant API key; each endpoint names the permission it needs.",
            },
        },
        "parameters": {
            "Id": _param("id", "path", UUID, "The resource id.", required=True),
            "Limit": _param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                "Page size.",
            ),
            "Cursor": _param("cursor", "query", _string(), "next_cursor of the previous page."),
            "IdempotencyKey": _param(
                "Idempotency-Key",
                "header",
                _string(maxLength=255),
                "The same key with the same body returns the first response; with another body, 409.",
            ),
            "RequestId": _param(
                "X-Request-Id", "header", _string(maxLength=128), "Echoed; generated if absent."
            ),
            "ConsistencyToken": _param(
                "Checkout-Consistency-Token",
                "header",
                _string(maxLength=CONSISTENCY_TOKEN_MAX_CHARS),
                "The token a write answered with (opaque): this read is at least as new as that "
                "write, served by a replica only once it has replayed it, else by the primary.",
            ),
        },
        "responses": {
            f"E{status}": {
                "description": f"{code}: {meaning}",
                "content": {"application/json": {"schema": ref("Error")}},
            }
            for status, (code, meaning) in ERROR_CODES.items()
        },
    },
}
