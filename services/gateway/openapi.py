"""The OpenAPI 3.1 document of the gateway, kept as data.

`tests/gateway/test_openapi.py` checks that every route the app serves is described here, and
nothing else, so the document cannot drift from the routes.
"""

from __future__ import annotations

from typing import Any

from libs.common import apikeys

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
        "parameters": [{"$ref": "#/components/parameters/RequestId"}, *parameters],
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
        "properties": {
            "metric_date": _string(format="date"),
            "invoices_created": {"type": "integer"},
            "invoices_paid": {"type": "integer"},
            "amount_created": MONEY,
            "amount_paid": MONEY,
            "conversion_rate": MONEY,
        },
    },
    "DailyMetrics": {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": ref("DailyMetric")}},
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
        },
    },
    "Shards": {
        "type": "object",
        "properties": {
            "shards": {"type": "array", "items": ref("Shard")},
            "shard_map_version": {"type": "integer"},
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
            description="Needs analytics:read.",
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
        "are RFC 3339 UTC; every response carries X-Request-Id.",
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
