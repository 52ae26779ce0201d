"""Request parsing: JSON bodies and query strings into typed values, or a 422 naming each field.

Every violation is collected with its path (`items[0].unit_price`) before failing, so a client
fixes a request in one round trip. Money and quantities must arrive as decimal *strings*: a JSON
number has already passed through a float in most client libraries, and that loss is silent.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import NoReturn, TypeVar

from starlette.datastructures import QueryParams
from starlette.requests import Request

from libs.common import ids
from libs.common.errors import FieldViolation
from services.gateway.errors import ApiError

T = TypeVar("T")

MAX_BODY_BYTES = 1 << 20
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Exactly what the services' Decimal parsing accepts without exponent or spaces.
_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
INT64_MAX = (1 << 63) - 1
# A Struct stores numbers as doubles; beyond this an integer changes silently.
_EXACT_FLOAT_INT = 1 << 53

JsonObject = dict[str, object]


class Problems:
    """Violations gathered while reading one request."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, reason: str) -> None:
        self.items.append(FieldViolation(field, reason))

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            more = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise ApiError("invalid_argument", f"{first.field}: {first.reason}{more}", self.items)


def _fail(field: str, reason: str) -> NoReturn:
    raise ApiError.invalid(field, reason)


async def json_body(request: Request, *, optional: bool = False) -> JsonObject:
    """The body as a JSON object; anything else is a 422 on `body`. With `optional`, an empty
    body reads as `{}` (e.g. a cancel with no reason)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            _fail("body", f"must be at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if optional and not raw.strip():
        return {}
    return parse_json_object(raw)


def parse_json_object(raw: bytes) -> JsonObject:
    if not raw.strip():
        _fail("body", "must be a JSON object")
    try:
        value: object = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError
        _fail("body", f"is not valid JSON: {error}")
    if not isinstance(value, dict):
        _fail("body", "must be a JSON object")
    try:
        # A lone surrogate (`"\ud800"`) is valid JSON but cannot become a protobuf string.
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        _fail("body", "contains a string that is not valid Unicode")
    return value


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


class _Reader:
    """Parsers shared by JSON bodies and query strings: each reads a string, then converts it or
    records one violation on the field's path."""

    problems: Problems

    def path(self, name: str) -> str:
        return name

    def string(self, name: str, *, required: bool = False, max_length: int = 1000) -> str | None:
        raise NotImplementedError

    def _parsed(self, name: str, required: bool, parse: Callable[[str], T | None], reason: str) -> T | None:
        value = self.string(name, required=required)
        if value is None:
            return None
        parsed = parse(value)
        if parsed is None:
            self.problems.add(self.path(name), reason)
        return parsed

    def choice(self, name: str, choices: Iterable[str], *, required: bool = False) -> str | None:
        options = tuple(choices)
        return self._parsed(
            name, required, lambda v: v if v in options else None, f"must be one of {', '.join(options)}"
        )

    def uuid(self, name: str, *, required: bool = False) -> uuid.UUID | None:
        return self._parsed(name, required, ids.parse_id, "must be an id (a lowercase UUID string)")

    def timestamp(self, name: str, *, required: bool = False) -> datetime | None:
        return self._parsed(name, required, parse_timestamp, "must be an RFC 3339 timestamp with a time zone")

    def date(self, name: str, *, required: bool = False) -> date | None:
        return self._parsed(name, required, parse_date, "must be a date as YYYY-MM-DD")


class Fields(_Reader):
    """Typed reads off one JSON object; unknown fields are violations too.

    A JSON `null` reads as absent, so optional fields may be sent as null.
    """

    def __init__(
        self,
        data: Mapping[str, object],
        problems: Problems,
        *,
        allowed: Iterable[str],
        prefix: str = "",
    ) -> None:
        self._data = data
        self.problems = problems
        self._prefix = prefix
        known = set(allowed)
        for name in data:
            if name not in known:
                problems.add(self.path(name), "is not a known field")

    def path(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def present(self, name: str) -> bool:
        return self._data.get(name) is not None

    def _get(self, name: str, required: bool) -> object:
        value = self._data.get(name)
        if value is None and required:
            self.problems.add(self.path(name), "is required")
        return value

    def string(self, name: str, *, required: bool = False, max_length: int = 1000) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problems.add(self.path(name), "must be a string")
            return None
        # Blank values go through: the service validates content and reports every problem at once.
        if len(value) > max_length:
            self.problems.add(self.path(name), f"must be at most {max_length} characters")
            return None
        return value

    def decimal(self, name: str, *, required: bool = False) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            kind = _kind(value)
            example = f' (e.g. "{value}")' if kind == "number" else ""
            self.problems.add(self.path(name), f"must be a decimal string{example}, not a JSON {kind}")
            return None
        if not _DECIMAL.match(value):
            self.problems.add(self.path(name), 'must be a decimal string like "12.50"')
            return None
        return value

    def integer(
        self, name: str, *, required: bool = False, minimum: int = 0, maximum: int = INT64_MAX
    ) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        # bool is an int in Python but `true` is not a number in JSON.
        if not isinstance(value, int) or isinstance(value, bool):
            self.problems.add(self.path(name), "must be a JSON integer")
            return None
        if not minimum <= value <= maximum:
            self.problems.add(self.path(name), f"must be between {minimum} and {maximum}")
            return None
        return value

    def object(self, name: str, *, required: bool = False) -> JsonObject | None:
        """A free-form object (settings, metadata) bound for a protobuf Struct."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.add(self.path(name), "must be a JSON object")
            return None
        if not _struct_safe(value, self.path(name), self.problems):
            return None
        return value

    def fields(self, name: str, *, allowed: Iterable[str], required: bool = False) -> Fields | None:
        """A nested object with its own known fields."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.add(self.path(name), "must be a JSON object")
            return None
        return Fields(value, self.problems, allowed=allowed, prefix=self.path(name))

    def string_map(self, name: str) -> dict[str, str] | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.add(self.path(name), "must be a JSON object of strings")
            return None
        ok = True
        for key, item in value.items():
            if not isinstance(item, str):
                self.problems.add(f"{self.path(name)}.{key}", "must be a string")
                ok = False
        return {str(k): str(v) for k, v in value.items()} if ok else None

    def string_list(self, name: str, *, choices: Iterable[str] | None = None) -> list[str] | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, list):
            self.problems.add(self.path(name), "must be a JSON array of strings")
            return None
        options = tuple(choices) if choices is not None else None
        ok = True
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.problems.add(f"{self.path(name)}[{i}]", "must be a string")
                ok = False
            elif options is not None and item not in options:
                self.problems.add(f"{self.path(name)}[{i}]", f"must be one of {', '.join(options)}")
                ok = False
        return [str(v) for v in value] if ok else None

    def list_of(
        self, name: str, *, allowed: Iterable[str], required: bool = False, max_items: int = 100
    ) -> list[Fields] | None:
        """An array of objects, each read with its own `Fields` at `name[i]`."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, list):
            self.problems.add(self.path(name), "must be a JSON array of objects")
            return None
        if required and not value:
            self.problems.add(self.path(name), "must not be empty")
            return None
        if len(value) > max_items:
            self.problems.add(self.path(name), f"must have at most {max_items} entries")
            return None
        known = tuple(allowed)
        out: list[Fields] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.problems.add(f"{self.path(name)}[{i}]", "must be a JSON object")
                continue
            out.append(Fields(item, self.problems, allowed=known, prefix=f"{self.path(name)}[{i}]"))
        return out


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else "value"


def _struct_safe(value: object, path: str, problems: Problems) -> bool:
    """Whether every number survives the trip through a Struct's doubles unchanged."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return True
    if isinstance(value, int):
        if abs(value) > _EXACT_FLOAT_INT:
            problems.add(path, "integers beyond 2^53 lose precision; send a string")
            return False
        return True
    if isinstance(value, dict):
        return all([_struct_safe(v, f"{path}.{k}", problems) for k, v in value.items()])
    if isinstance(value, list):
        return all([_struct_safe(v, f"{path}[{i}]", problems) for i, v in enumerate(value)])
    return True


def parse_timestamp(raw: str) -> datetime | None:
    """An RFC 3339 timestamp; a naive one is refused rather than guessed to be UTC."""
    if "T" not in raw.upper() and " " not in raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def parse_date(raw: str) -> date | None:
    if not _DATE.match(raw):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


class Query(_Reader):
    """Typed reads off the query string, with the same violation collecting as `Fields`."""

    def __init__(self, params: QueryParams, problems: Problems) -> None:
        self._params = params
        self.problems = problems

    def string(self, name: str, *, required: bool = False, max_length: int = 500) -> str | None:
        value = self._params.get(name)
        if value is None or value == "":
            if required:
                self.problems.add(name, "is required")
            return None
        if len(value) > max_length:
            self.problems.add(name, f"must be at most {max_length} characters")
            return None
        return value

    def limit(self) -> int:
        raw = self._params.get("limit")
        if raw is None or raw == "":
            return DEFAULT_LIMIT
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            self.problems.add("limit", f"must be an integer between 1 and {MAX_LIMIT}")
            return DEFAULT_LIMIT
        return int(raw)

    def cursor(self) -> str:
        """Opaque: the service that issued it is the one that reads it."""
        return self.string("cursor", max_length=1000) or ""


def limit_of(params: QueryParams) -> int:
    """The page size of a list request, or a 422 on `limit`."""
    problems = Problems()
    limit = Query(params, problems).limit()
    problems.raise_if_any()
    return limit


def path_id(request: Request, what: str, name: str = "id") -> uuid.UUID:
    """An id from the path; one that cannot exist is simply not found."""
    value = ids.parse_id(str(request.path_params.get(name, "")))
    if value is None:
        raise ApiError.not_found(what)
    return value
