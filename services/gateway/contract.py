"""/openapi.json, generated from the operations (operations.py) and their pydantic models.

Nothing here describes a resource by hand: request and response schemas are the models' own
JSON Schema, parameters come from the query models, the errors each operation can answer follow
from what it declares (credentials, body, ids, rate limit), and the webhook payloads are derived
from the event messages in protos/.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from libs.common import consistency, events, limits
from services.gateway import idempotency
from services.gateway.operations import Operation
from services.gateway.schemas.base import ErrorBody
from services.gateway.schemas.types import (
    FREE_FORM_VALUE,
    REF_MARKER,
    UUID_PATTERN,
    free_form_value_schema,
)

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
SECURITY_OF: dict[str, list[dict[str, list[str]]]] = {
    "merchant": [{"merchantKey": []}],
    "operator": [{"operatorToken": []}],
    "either": [{"merchantKey": []}, {"operatorToken": []}],
    "public": [],
    "none": [],
}
ERRORS: dict[int, tuple[str, str, str]] = {
    # status: (component name, description, example code)
    401: ("Unauthenticated", "No valid credentials.", "unauthenticated"),
    403: ("PermissionDenied", "The credentials may not do this.", "permission_denied"),
    404: ("NotFound", "No such resource (another merchant's is not found too).", "not_found"),
    409: (
        "Conflict",
        "The state forbids it, it exists already, or the Idempotency-Key was used with another body.",
        "conflict",
    ),
    415: ("UnsupportedMediaType", "The body is not sent as application/json.", "unsupported_media_type"),
    422: (
        "InvalidArgument",
        "The request is malformed: every violation, each with its field.",
        "invalid_argument",
    ),
    429: ("RateLimited", "Over a rate limit; `Retry-After` says when to come back.", "rate_limited"),
    503: ("Unavailable", "A backing service or store is down; retry after `Retry-After`.", "unavailable"),
    504: ("DeadlineExceeded", "A backing service did not answer in time.", "deadline_exceeded"),
}
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
DESCRIPTION = f"""The HTTP API of a non-custodial crypto checkout platform.

**Credentials.** `Authorization: Bearer <token>`: a merchant API key (`ck_sk_…` secret or
`ck_pk_…` publishable), or the operator token. Use *Authorize* above to try calls from this page.

**Money** is a decimal string (`"12.50"`); quantities and whole amounts may also be JSON
integers. A JSON float is refused: it was rounded before it arrived.

**Errors** have one body: `{{"error": {{"code", "message", "details": [{{"field", "reason"}}],
"request_id"}}}}`, with every violation of a request at once. Strings may not contain NUL.

**Idempotency.** Send `Idempotency-Key` on a POST: a retry with the same body returns the first
answer with `Idempotent-Replayed: true` and does nothing else (a credential shown once is then
`null`); with another body it is 409.

**Consistency tokens.** A write answers with `Checkout-Consistency-Token` (opaque). Send it back
on a read that must see the write: reads may be served by replicas, and one answers it only once
it has replayed that far (else the primary does); no cache answers it with anything older.

**Rate limits** per API key by the merchant's plan, per client IP for failed authentication
and on the public checkout: `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
(seconds) on every limited response, 429 `rate_limited` with `Retry-After` beyond it.

**Lists** take `limit` (1 to {limits.PAGE_LIMIT_MAX}, default {limits.PAGE_LIMIT_DEFAULT}) and
`cursor`, and answer `{{"data": [...], "next_cursor"}}`.

**Webhooks** are POSTed with `Checkout-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
and `Checkout-Event-Id`; see `webhooks` for each event's payload."""


def document(operations: Iterable[Operation]) -> dict[str, Any]:
    ops = [op for op in operations if op.documented]
    models: list[tuple[type[BaseModel], Any]] = [(ErrorBody, "serialization")]
    for op in ops:
        if op.body is not None:
            models.append((op.body, "validation"))
        if op.response is not None:
            models.append((op.response, "serialization"))
    names, schema = models_json_schema(models, ref_template=REF)
    components: dict[str, Any] = dict(schema.get("$defs", {}))
    components[FREE_FORM_VALUE] = free_form_value_schema()

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        found: dict[str, Any] = copy.deepcopy(names[(model, mode)])  # type: ignore[index]
        return found

    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, ref, components)
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Checkout platform API", "version": "1", "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in ops)],
        "paths": paths,
        "webhooks": _webhooks(components),
        "components": {
            "schemas": components,
            "responses": {
                name: _error_response(description, code) for name, description, code in ERRORS.values()
            },
            "headers": _headers(),
            "securitySchemes": {
                "merchantKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "ck_sk_<key id>_<secret>",
                    "description": "A merchant API key: `ck_sk_…` (secret) or `ck_pk_…` (publishable, "
                    "for web pages: it may create invoices only).",
                },
                "operatorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The operator token (CHECKOUT_ADMIN_TOKEN).",
                },
            },
        },
    }
    resolved: dict[str, Any] = _resolve_markers(doc)
    return resolved


def _operation(op: Operation, ref: Any, components: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": SECURITY_OF[op.auth],
    }
    if op.description:
        out["description"] = op.description
    if op.permission and op.auth in ("merchant", "either"):
        out["description"] = (op.description + "\n\n" if op.description else "") + (
            f"A merchant key needs the `{op.permission}` permission."
        )
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": "An id (lowercase UUID).",
            "schema": {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
        }
        for name in op.path_params
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query, components)
    if op.idempotent:
        parameters.append(
            {
                "name": idempotency.HEADER,
                "in": "header",
                "required": False,
                "description": "Makes a retry safe: the same key and body return the first answer.",
                "schema": {"type": "string", "pattern": idempotency.KEY_PATTERN},
            }
        )
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        content: dict[str, Any] = {"schema": ref(op.body, "validation")}
        if op.example is not None:
            content["example"] = op.example
        out["requestBody"] = {"required": not op.body_optional, "content": {"application/json": content}}
    out["responses"] = _responses(op, ref)
    return out


def _query_parameters(model: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF, by_alias=True)
    components.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        # Optional parameters are simply left out of the query string; null is no query value.
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            prop.pop("anyOf")
            prop = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **prop}
            if prop.get("default", 0) is None:
                prop.pop("default")
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _responses(op: Operation, ref: Any) -> dict[str, Any]:
    headers = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    limited = {name: {"$ref": f"#/components/headers/{name}"} for name in RATE_HEADERS} if op.limited else {}
    success: dict[str, Any] = {"description": op.summary, "headers": {**headers, **limited}}
    if op.idempotent:
        success["headers"][idempotency.REPLAYED_HEADER] = {
            "$ref": f"#/components/headers/{idempotency.REPLAYED_HEADER}"
        }
    if op.method != "GET":
        success["headers"][consistency.HEADER] = {"$ref": f"#/components/headers/{consistency.HEADER}"}
    if op.response is not None:
        success["content"] = {op.media_type: {"schema": ref(op.response, "serialization")}}
    else:
        success["content"] = {op.media_type: {"schema": {}}}
    responses: dict[str, Any] = {str(op.status): success}
    statuses = set(op.errors)
    if op.auth in ("merchant", "operator", "either"):
        # A wrong token counts against the caller's address, the operator's included.
        statuses |= {401, 403, 429}
    if op.limited:
        statuses |= {429}
    if op.auth != "none":
        statuses |= {503, 504}
    if op.path_params:
        statuses |= {404, 422}
    if op.query is not None:
        statuses |= {422}
    if op.body is not None:
        statuses |= {415, 422}
    if op.idempotent:
        statuses |= {409, 422}
    for status in sorted(statuses):
        name = ERRORS[status][0]
        if status == 422 and op.rules:
            responses["422"] = _invalid_with_rules(op)
        elif status == 503 and op.response is not None and op.operation_id == "readyz":
            responses["503"] = {
                "description": "Something is down.",
                "content": {"application/json": {"schema": ref(op.response, "serialization")}},
            }
        else:
            responses[str(status)] = {"$ref": f"#/components/responses/{name}"}
        if op.limited and status in (401, 403, 404, 409, 422) and "$ref" not in responses[str(status)]:
            responses[str(status)].setdefault("headers", {}).update(limited)
    return responses


def _invalid_with_rules(op: Operation) -> dict[str, Any]:
    lines = "\n".join(f"- {rule.doc}" for rule in op.rules)
    response = _error_response(
        f"{ERRORS[422][1]} Beyond this schema, the platform checks:\n{lines}", "invalid_argument"
    )
    response["x-rules"] = [{"field": f"^(?:{r.field})$", "reason": f"^(?:{r.reason})$"} for r in op.rules]
    return response


def _error_response(description: str, code: str) -> dict[str, Any]:
    example = {
        "error": {
            "code": code,
            "message": 'items[0].unit_price: must be a decimal string (send "12.5"), not a JSON number'
            if code == "invalid_argument"
            else code.replace("_", " "),
            "details": [
                {
                    "field": "items[0].unit_price",
                    "reason": 'must be a decimal string (send "12.5"), not a JSON number',
                }
            ]
            if code == "invalid_argument"
            else [],
            "request_id": "3f1c9a2e-6a7b-4f55-9d0e-2b8c1d4e5f60",
        }
    }
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if code in ("rate_limited", "unavailable"):
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if code == "rate_limited":
        headers.update({name: {"$ref": f"#/components/headers/{name}"} for name in RATE_HEADERS})
    return {
        "description": description,
        "headers": headers,
        "content": {
            "application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}, "example": example}
        },
    }


def _headers() -> dict[str, Any]:
    integer = {"type": "integer", "minimum": 0}
    return {
        "X-Request-Id": {"description": "The request's id (yours, when you sent a safe one).", "schema": {"type": "string"}},
        "RateLimit-Limit": {"description": "Requests allowed in the window.", "schema": integer},
        "RateLimit-Remaining": {"description": "Requests left in the window.", "schema": integer},
        "RateLimit-Reset": {"description": "Seconds until the window frees up.", "schema": integer},
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": integer},
        consistency.HEADER: {
            "description": "On a write that changed data: send it back with the reads that must see it "
            "(opaque; see the API's description).",
            "schema": {"type": "string"},
        },
        idempotency.REPLAYED_HEADER: {
            "description": "`true` when this is the stored answer to an earlier request with the same "
            "Idempotency-Key: nothing was done now, and a credential shown once is `null`.",
            "schema": {"type": "string", "enum": ["true"]},
        },
    }  # fmt: skip


# -- webhooks: each delivery's payload, from the event's protobuf message ---------------------------


def _webhooks(components: dict[str, Any]) -> dict[str, Any]:
    hooks: dict[str, Any] = {}
    for event_type in events.WEBHOOK_EVENT_TYPES:
        message = events.EVENT_TYPES[event_type].DESCRIPTOR
        name = "Event_" + message.name
        components.setdefault(name, _message_schema(message, components))
        hooks[event_type] = {
            "post": {
                "summary": f"`{event_type}` delivered to a subscribed endpoint",
                "description": "Verify `Checkout-Signature` before trusting the body, and de-duplicate on "
                "`Checkout-Event-Id`: a delivery may arrive more than once. Answer 2xx within the "
                "endpoint's timeout, or it is retried.",
                "parameters": [
                    {
                        "name": "Checkout-Signature",
                        "in": "header",
                        "required": True,
                        "description": '`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`; '
                        "a second `v1` follows for 24 h after a secret rotation.",
                        "schema": {"type": "string", "pattern": r"^t=[0-9]+(,v1=[0-9a-f]{64})+$"},
                    },
                    {
                        "name": "Checkout-Event-Id",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                    {
                        "name": "Checkout-Event-Type",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "enum": [event_type]},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["id", "type", "created_at", "data"],
                                "properties": {
                                    "id": {
                                        "type": "string",
                                        "format": "uuid",
                                        "description": "The event id.",
                                    },
                                    "type": {"type": "string", "const": event_type},
                                    "created_at": {"type": "string", "format": "date-time"},
                                    "data": {"$ref": REF.format(model=name)},
                                },
                            }
                        }
                    },
                },
                "responses": {"2XX": {"description": "Received; anything else is retried."}},
            }
        }
    return hooks


_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_INT32: {"type": "integer"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0},
    # protobuf's JSON mapping writes 64-bit integers as strings.
    FieldDescriptor.TYPE_INT64: {"type": "string", "pattern": "^-?[0-9]+$"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "pattern": "^[0-9]+$"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldDescriptor.TYPE_ENUM: {"type": "string"},
}
_WELL_KNOWN = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Struct": {"type": "object"},
}


def _message_schema(message: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of a message as `events.encode` writes it: proto field names, and fields at
    their default value left out (so none is required)."""
    properties: dict[str, Any] = {}
    for field in message.fields:
        properties[field.name] = _field_schema(field, components)
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _field_schema(field: FieldDescriptor, components: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value, components)}
    single = _single(field, components)
    return {"type": "array", "items": single} if field.is_repeated else single


def _single(field: FieldDescriptor, components: dict[str, Any]) -> dict[str, Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        full = field.message_type.full_name
        if full in _WELL_KNOWN:
            return dict(_WELL_KNOWN[full])
        name = "Event_" + field.message_type.name
        if name not in components:
            components[name] = {}  # reserved first: messages may refer to themselves
            components[name] = _message_schema(field.message_type, components)
        return {"$ref": REF.format(model=name)}
    return dict(_SCALARS[field.type])


def _resolve_markers(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {REF_MARKER}:
            return {"$ref": REF.format(model=value[REF_MARKER])}
        return {k: _resolve_markers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_markers(v) for v in value]
    return value
