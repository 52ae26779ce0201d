"""Pydantic's validation errors as API.md's field violations: `items[0].unit_price` paths and
reasons in the API's words, every one of them in one 422."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from libs.common.errors import FieldViolation
from services.gateway.errors import ApiError
from services.gateway.schemas.types import NO_NUL, NO_NUL_REASON


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or "body"


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "string_type":
        return "must be a string"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters"
    if kind == "string_too_short":
        return (
            "must not be empty"
            if ctx.get("min_length") == 1
            else f"must be at least {ctx['min_length']} characters"
        )
    if kind == "string_pattern_mismatch":
        return NO_NUL_REASON if ctx.get("pattern") == NO_NUL else _pattern_reason(str(ctx.get("pattern")))
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be an integer"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind == "list_type":
        return "must be a JSON array"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    if kind == "too_short":
        return (
            "must not be empty"
            if ctx.get("min_length") == 1
            else f"must have at least {ctx['min_length']} entries"
        )
    if kind == "too_long":
        return f"must have at most {ctx['max_length']} entries"
    if kind == "json_invalid":
        return f"is not valid JSON: {ctx.get('error', 'malformed')}"
    if kind in ("datetime_type", "datetime_parsing", "datetime_from_date_parsing"):
        return "must be an RFC 3339 timestamp with a time zone"
    if kind in ("date_type", "date_parsing", "date_from_datetime_parsing"):
        return "must be a date as YYYY-MM-DD"
    if kind == "none_required":
        return "must be null"
    message = error["msg"]
    return message[:1].lower() + message[1:]


def _pattern_reason(pattern: str) -> str:
    if "@" in pattern:
        return "must be an email address"
    return f"must match {pattern}"


def violations(errors: Iterable[ErrorDetails], prefix: str = "") -> list[FieldViolation]:
    out: list[FieldViolation] = []
    seen: set[tuple[str, str]] = set()
    for error in errors:
        loc = list(error["loc"])
        # `anyOf` with null (an optional field) reports the field's own type under a tag.
        loc = [
            part for part in loc if not (isinstance(part, str) and part.startswith(("function-", "nullable")))
        ]
        if error["type"] == "json_invalid":
            loc = []
        item = FieldViolation(field_path(loc, prefix), _reason(error))
        if (item.field, item.reason) not in seen:
            seen.add((item.field, item.reason))
            out.append(item)
    return out


def of_validation_error(error: ValidationError, prefix: str = "") -> list[FieldViolation]:
    return violations(error.errors(include_url=False, include_input=False), prefix)


def invalid(problems: Sequence[FieldViolation]) -> ApiError:
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApiError("invalid_argument", f"{first.field}: {first.reason}{more}", problems)
