"""Each HTTP operation declared once: path, method, who may call it, the models of its query,
body and response, and the errors and rules it documents. From these declarations the gateway
builds its Starlette routes (validate -> handler -> render) and its OpenAPI document
(contract.py), so what is documented is what runs.

Why Starlette and not FastAPI: the contract needs the body read and checked by our rules before
any parsing (415 for non-JSON, a size bound, every violation of body, query and path in one 422
with API.md's paths), ids that are 422 when malformed, and responses rendered by pydantic's Rust
serializer straight to bytes. FastAPI would have us override each of those, and its per-request
dependency machinery is the overhead the speed budget (issue 10) does not have room for; a
hundred lines here keep the same single declaration with none of it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.common import ids, limits
from libs.common.errors import FieldViolation
from services.gateway import idempotency
from services.gateway.auth import (
    Caller,
    authenticate,
    limit_by_ip,
    require_merchant,
    require_operator,
)
from services.gateway.context import CallContext, Consistency, consistency_of, request_id_of
from services.gateway.errors import ApiError
from services.gateway.schemas.types import UUID_PATTERN
from services.gateway.violations import invalid, of_validation_error

# none: not limited, no credentials (health, docs); public: no credentials, limited per IP;
# merchant: a merchant key; operator: the operator token; either: one of those two.
Auth = Literal["none", "public", "merchant", "operator", "either"]
ANONYMOUS = Caller(actor="anonymous")
_PATH_PARAM = re.compile(r"{(\w+)}")
_UUID = re.compile(UUID_PATTERN)
JSON = "application/json"

B = TypeVar("B")
Q = TypeVar("Q")


@dataclass(frozen=True)
class Rule:
    """A refusal the JSON Schema cannot express (it depends on another field, on stored state or
    on the world, e.g. a URL's DNS): documented with the operation's 422, as regexes over the
    violation's field and reason."""

    field: str
    reason: str
    doc: str


@dataclass
class Args(Generic[B, Q]):
    request: Request
    caller: Caller
    ids: dict[str, uuid.UUID]
    body: B
    query: Q
    raw_body: bytes = b""

    @property
    def merchant_id(self) -> uuid.UUID:
        assert self.caller.merchant_id is not None  # set for auth="merchant"
        return self.caller.merchant_id

    def context(self) -> CallContext:
        return CallContext(request_id_of(self.request), self.caller.actor, consistency=self.consistency)

    @property
    def consistency(self) -> Consistency:
        """The request's consistency tokens: the one it sent, the ones its writes returned."""
        return consistency_of(self.request)

    def command_context(self) -> CallContext:
        """The context of a POST: with its Idempotency-Key and the body's fingerprint, if sent."""
        return idempotency.call_context(self.request, self.caller.actor, self.raw_body)


@dataclass(frozen=True)
class Reply:
    model: BaseModel
    status: int | None = None
    replayed: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Args[Any, Any]], Awaitable[BaseModel | Reply | Response]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth
    response: type[BaseModel] | None = None
    status: int = 200
    permission: str | None = None
    body: type[BaseModel] | None = None
    body_optional: bool = False
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    rules: tuple[Rule, ...] = ()
    idempotent: bool = False
    description: str = ""
    example: Mapping[str, Any] | None = None
    media_type: str = JSON
    documented: bool = True

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def limited(self) -> bool:
        return self.auth in ("public", "merchant", "either")

    def route(self) -> Route:
        return Route(self.path, _endpoint(self), methods=[self.method], name=self.operation_id)


def _endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        caller = await _caller(op, request)
        problems: list[FieldViolation] = []
        path_ids: dict[str, uuid.UUID] = {}
        for name in op.path_params:
            value = path_id(request.path_params.get(name, ""))
            if value is None:
                problems.append(FieldViolation(name, "must be an id (a lowercase UUID string)"))
            else:
                path_ids[name] = value
        query: BaseModel | None = None
        if op.query is not None:
            try:
                # The request is the validation context, for the few checks that need the
                # gateway's configuration (e.g. which shards exist).
                query = op.query.model_validate(dict(request.query_params), context={"request": request})
            except ValidationError as error:
                problems += of_validation_error(error)
        body: BaseModel | None = None
        raw = b""
        if op.body is not None:
            raw = await read_body(request)
            if raw.strip():
                try:
                    body = op.body.model_validate_json(raw, strict=True)
                except ValidationError as error:
                    problems += of_validation_error(error)
            elif not op.body_optional:
                problems.append(FieldViolation("body", "is required: a JSON object"))
        if problems:
            raise invalid(problems)
        result = await op.handler(Args(request, caller, path_ids, body, query, raw))
        if isinstance(result, Response):
            return result
        return render(result if isinstance(result, Reply) else Reply(result), op.status)

    endpoint.__name__ = op.operation_id
    return endpoint


def path_id(raw: str) -> uuid.UUID | None:
    """A path segment as an id, or None when it is not one (a lowercase UUID string)."""
    return ids.parse_id(raw) if _UUID.match(raw) else None


async def _caller(op: Operation, request: Request) -> Caller:
    if op.auth == "none":
        return ANONYMOUS
    if op.auth == "public":
        await limit_by_ip(request)
        return ANONYMOUS
    caller = await authenticate(request)
    if op.auth == "operator":
        require_operator(caller)
    elif op.auth == "merchant":
        assert op.permission is not None
        require_merchant(caller, op.permission)
    return caller


def to_json(model: BaseModel) -> bytes:
    """A response model as the API renders it (pydantic's serializer, straight to bytes)."""
    return model.__pydantic_serializer__.to_json(model, by_alias=True)


def json_body(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def render(reply: Reply, default_status: int = 200) -> Response:
    headers = dict(reply.headers)
    if reply.replayed:
        headers[idempotency.REPLAYED_HEADER] = "true"
    return Response(
        to_json(reply.model), status_code=reply.status or default_status, headers=headers, media_type=JSON
    )


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind, _, params = content_type.partition(";")
    kind = kind.strip().lower()
    charset = re.search(r"charset=\"?([\w-]+)", params, re.IGNORECASE)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        return False
    return kind == JSON or (kind.startswith("application/") and kind.endswith("+json"))


async def read_body(request: Request) -> bytes:
    """The body, at most REQUEST_BODY_MAX_BYTES, sent as JSON; an empty body reads as b""."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.REQUEST_BODY_MAX_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.REQUEST_BODY_MAX_BYTES:
            raise _too_large()
        chunks.append(chunk)
    raw = b"".join(chunks)
    if raw.strip() and not is_json(request.headers.get("content-type")):
        raise ApiError(
            "unsupported_media_type",
            "send the body as JSON, with Content-Type: application/json",
            [FieldViolation("Content-Type", "must be application/json")],
        )
    return raw


def _too_large() -> ApiError:
    return ApiError.invalid("body", f"must be at most {limits.REQUEST_BODY_MAX_BYTES} bytes")
