"""What no service can store, refused before any handler runs: a request message's strings are
walked (nested messages, repeated fields, maps and their keys, Struct/Value/ListValue trees) and
every NUL character is reported as a field violation.

PostgreSQL text, varchar and jsonb cannot hold U+0000; without this check a NUL reached a query
and the RPC failed as an internal error (500) instead of INVALID_ARGUMENT naming the field. Every
other code point is storable (protobuf already refuses strings that are not valid UTF-8).
Field paths use the HTTP API's spelling: `items[0].name`, `metadata.note`, `wallets.ethereum`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from libs.common.errors import FieldViolation, InvalidArgument

REASON = "must not contain the NUL character (\\u0000)"
# A request is refused on its first few problems; listing thousands would help nobody and could
# overflow the status trailers.
MAX_VIOLATIONS = 20
_STRUCT_TYPES = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})


def _unstorable(text: str) -> bool:
    return "\x00" in text


def _key(path: str, key: object) -> str:
    shown = str(key).replace("\x00", "\\u0000")
    return f"{path}.{shown}" if path else shown


def _json(value: Any, path: str) -> Iterator[str]:
    """A Struct/Value/ListValue tree, read as the plain JSON it stands for."""
    if isinstance(value, str):
        if _unstorable(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            if _unstorable(key):
                yield _key(path, key)
            else:
                yield from _json(item, _key(path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json(item, f"{path}[{i}]")


def _value(field: FieldDescriptor, value: Any, path: str) -> Iterator[str]:
    if field.type == FieldDescriptor.TYPE_STRING:
        if _unstorable(value):
            yield path
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        yield from _paths(value, path)


def _paths(message: Message, prefix: str = "") -> Iterator[str]:
    if message.DESCRIPTOR.full_name in _STRUCT_TYPES:
        yield from _json(json_format.MessageToDict(message), prefix)
        return
    for field, value in message.ListFields():
        path = f"{prefix}.{field.name}" if prefix else field.name
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
            for key, item in value.items():
                if key_field.type == FieldDescriptor.TYPE_STRING and _unstorable(key):
                    yield _key(path, key)
                else:
                    yield from _value(value_field, item, _key(path, key))
        elif field.is_repeated:
            for i, item in enumerate(value):
                yield from _value(field, item, f"{path}[{i}]")
        else:
            yield from _value(field, value, path)


def violations(message: Message) -> list[FieldViolation]:
    """The fields of `message` holding a character no service can store (at most MAX_VIOLATIONS)."""
    found: list[FieldViolation] = []
    for path in _paths(message):
        found.append(FieldViolation(path, REASON))
        if len(found) == MAX_VIOLATIONS:
            break
    return found


def check(message: Any) -> None:
    """Raises InvalidArgument naming every field of the request that cannot be stored."""
    if not isinstance(message, Message):
        return
    problems = violations(message)
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
