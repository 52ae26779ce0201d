"""Field types shared by the request and response models, each with its JSON Schema.

Every constraint a field type enforces is stated in the schema it emits, so a request the
document allows is one this gateway accepts: strings refuse NUL (PostgreSQL cannot store it),
money is a decimal string (or, where exact, a JSON integer) whose pattern carries its bounds, and
ids are canonical lowercase UUIDs.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from pydantic import (
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from libs.common import limits

# PostgreSQL text and jsonb cannot hold U+0000; refusing it at the edge names the field.
NO_NUL = r"^[^\u0000]*$"
NO_NUL_REASON = "must not contain NUL (\\u0000) characters"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# A Struct keeps numbers as doubles: an integer beyond 2^53 would change on the way.
EXACT_INTEGER_MAX = 1 << 53
FREE_FORM_MAX_DEPTH = 32


def text(max_length: int, *, min_length: int = 0, description: str | None = None) -> Any:
    """Field metadata for a string of at most `max_length` characters, without NUL:
    `Annotated[str, text(200)]`."""
    return Field(min_length=min_length, max_length=max_length, pattern=NO_NUL, description=description)


@dataclass(frozen=True)
class Choice:
    """One of `values`, stated in the schema as an enum: `Annotated[str, Choice(("a", "b"))]`."""

    values: tuple[str, ...]

    def check(self, value: object) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise PydanticCustomError(
                "choice", "must be one of {choices}", {"choices": ", ".join(self.values)}
            )
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "enum": list(self.values)}


# -- decimal strings ------------------------------------------------------------------------------


def _integers_below(maximum: int, *, zero: bool) -> str:
    """A regex for the integers (no leading zeros) from 0 (or 1) to `maximum` - 1."""
    digits = str(maximum)
    shorter = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    same_length = []
    for i, digit in enumerate(digits):
        lowest = 1 if i == 0 else 0
        if int(digit) > lowest:
            rest = len(digits) - i - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            same_length.append(f"{digits[:i]}[{lowest}-{int(digit) - 1}]{tail}")
    branches = (["0"] if zero else []) + shorter + same_length
    return "(?:" + "|".join(branches) + ")" if branches else ""


@functools.cache  # built for every decimal field of every request otherwise
def decimal_pattern(maximum: Decimal, *, positive: bool, fraction_digits: int) -> str:
    """A regex matching exactly the plain decimals from 0 (or above 0) to `maximum` with at most
    `fraction_digits` places: no sign, exponent or leading zeros, so the pattern alone is the
    bound and a client can check a value without knowing Python's Decimal."""
    if maximum != maximum.to_integral_value() or maximum < 1:
        raise ValueError(f"decimal bounds are whole numbers of at least 1, got {maximum}")
    top, f = int(maximum), fraction_digits
    fraction = f"(?:\\.[0-9]{{1,{f}}})?" if f else ""
    exact_max = f"{top}" + (f"(?:\\.0{{1,{f}}})?" if f else "")
    below = _integers_below(top, zero=not positive)
    branches = [below + fraction] if below else []
    if positive and f:
        branches.append(f"0\\.(?=0{{0,{f - 1}}}[1-9])[0-9]{{1,{f}}}")
    return "^(?:" + "|".join([*branches, exact_max]) + ")$"


@dataclass(frozen=True)
class DecimalString:
    """An exact amount: `Annotated[str, DecimalString(limits.UNIT_PRICE_MAX)]`. A decimal string, or
    where `integers` a JSON integer (an exact value, whatever the client's JSON library does with
    numbers). A JSON float is refused: it has already been rounded to binary when it arrives."""

    maximum: Decimal
    positive: bool = False
    fraction_digits: int = limits.MONEY_MAX_FRACTION_DIGITS
    integers: bool = True
    example: str = "12.50"
    description: str | None = None

    @property
    def pattern(self) -> str:
        return decimal_pattern(self.maximum, positive=self.positive, fraction_digits=self.fraction_digits)

    def check(self, value: object) -> str:
        low, high = (1 if self.positive else 0), int(self.maximum)
        if isinstance(value, bool):
            raise PydanticCustomError("decimal_type", "must be a decimal string, not a JSON boolean")
        if isinstance(value, int):
            if not self.integers:
                raise PydanticCustomError(
                    "decimal_type", 'must be a decimal string such as "{example}"', {"example": self.example}
                )
            if not low <= value <= high:
                raise PydanticCustomError(
                    "decimal_range", "must be between {low} and {high}", {"low": low, "high": high}
                )
            return str(value)
        if isinstance(value, float) and value.is_integer() and self.integers:
            # JSON has one number type: 12.0 is the integer 12 (as JSON Schema reads it), exact.
            return self.check(int(value))
        if isinstance(value, float):
            sent = repr(value) if math.isfinite(value) else self.example
            raise PydanticCustomError(
                "decimal_float", 'must be a decimal string (send "{sent}"), not a JSON number', {"sent": sent}
            )
        if not isinstance(value, str):
            raise PydanticCustomError(
                "decimal_type", 'must be a decimal string such as "{example}"', {"example": self.example}
            )
        if not _compiled(self.pattern).match(value):
            raise PydanticCustomError(
                "decimal_format",
                'must be a plain decimal string {range} {high} with at most {places} decimal places (e.g. "{example}")',
                {
                    "range": "above 0 up to" if self.positive else "from 0 to",
                    "high": high,
                    "places": self.fraction_digits,
                    "example": self.example,
                },
            )
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        string: dict[str, Any] = {"type": "string", "pattern": self.pattern}
        low, high = (1 if self.positive else 0), int(self.maximum)
        out: dict[str, Any] = (
            {"anyOf": [string, {"type": "integer", "minimum": low, "maximum": high}]}
            if self.integers
            else string
        )
        out["examples"] = [self.example]
        if self.description:
            out["description"] = self.description
        return out


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _whole(value: object) -> object:
    # JSON has one number type, and JSON Schema's "integer" is any number without a fraction:
    # 7.0 is 7. A string or a boolean is still no integer.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer field of a JSON body: `Annotated[int, Field(ge=..., le=...), WHOLE]` (bounds first,
# or pydantic leaves them out of the JSON Schema).
WHOLE = BeforeValidator(_whole)


# -- ids, times, free-form objects ----------------------------------------------------------------


def _id(value: object) -> str:
    if not isinstance(value, str) or not re.match(UUID_PATTERN, value):
        raise PydanticCustomError("id", "must be an id (a lowercase UUID string)")
    return value


Id = Annotated[
    str,
    PlainValidator(_id),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]


def _rfc3339(value: object) -> datetime:
    # Pydantic alone would also read numbers as Unix times and dates as midnight, and guess UTC
    # for a naive time; the contract says RFC 3339 with a zone.
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str) and "T" in value.upper():
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    raise PydanticCustomError("timestamp", "must be an RFC 3339 timestamp with a time zone")


Timestamp = Annotated[
    datetime,
    PlainValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-11-25T02:24:21Z"]}),
]

JsonValue = Any


def _free_form(max_bytes: int) -> Callable[[object], dict[str, Any]]:
    def check(value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise PydanticCustomError("object", "must be a JSON object")
        problem = _unstorable(value, 0)
        if problem:
            raise PydanticCustomError("free_form", problem)
        if len(orjson.dumps(value)) > max_bytes:
            raise PydanticCustomError(
                "free_form_size", "must be at most {max} bytes of JSON", {"max": max_bytes}
            )
        return value

    return check


def _unstorable(value: object, depth: int) -> str | None:
    """Why a free-form JSON value cannot be stored and given back exactly, or None."""
    if depth > FREE_FORM_MAX_DEPTH:
        return f"must nest at most {FREE_FORM_MAX_DEPTH} levels"
    if isinstance(value, str):
        return NO_NUL_REASON if "\x00" in value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        # A Struct keeps every number as a double: beyond 2^53 a value would come back changed.
        if math.isfinite(value) and abs(value) <= EXACT_INTEGER_MAX:
            return None
        return f"numbers must be finite and at most 2^53 in size ({EXACT_INTEGER_MAX}); send larger ones as strings"
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return "keys " + NO_NUL_REASON
            problem = _unstorable(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for item in value:
            problem = _unstorable(item, depth + 1)
            if problem:
                return problem
        return None
    return "must be JSON"


# Pydantic resolves every `$ref` it emits, so the recursive value schema is named by a marker
# that the document builder (contract.py) turns into a reference to its component.
REF_MARKER = "x-checkout-ref"
FREE_FORM_VALUE = "FreeFormValue"
FREE_FORM_VALUE_REF = {REF_MARKER: FREE_FORM_VALUE}


def free_form_value_schema() -> dict[str, Any]:
    """Any JSON value a free-form object may hold: what `_unstorable` lets through."""
    ref = {"$ref": f"#/components/schemas/{FREE_FORM_VALUE}"}
    return {
        "description": "Any JSON value without NUL characters, with numbers of at most 2^53 in size.",
        "anyOf": [
            {"type": "string", "pattern": NO_NUL},
            {"type": "number", "minimum": -EXACT_INTEGER_MAX, "maximum": EXACT_INTEGER_MAX},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": ref},
            {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": ref},
        ],
    }


def free_form_schema(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": FREE_FORM_VALUE_REF,
    }


@dataclass(frozen=True)
class FreeForm:
    """A free-form JSON object (settings, metadata), kept exactly as sent:
    `Annotated[dict[str, Any], FreeForm(limits.METADATA_MAX_BYTES, "...")]`."""

    max_bytes: int
    description: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(_free_form(self.max_bytes))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return free_form_schema(f"{self.description} At most {self.max_bytes} bytes as JSON.")


def check_free_form(value: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    return _free_form(max_bytes)(value)
