"""Views to and from their protobuf messages, field by field by name.

A service's application answers with views: frozen dataclasses with the field names of the API
message they stand for (services/invoice/views.py). So one rule maps every view: a timestamp from
a datetime, a Struct (or a map field) from a dict, a submessage from a nested view, a repeated
field from a tuple, a field left unset for None. Which rule a field takes is decided once per
view class, from its types, so an answer costs one constructor call per message. A service's
grpc_api.py maps its answers with `to_message`; its application keeps an idempotent command's
answer with a `Reply`, as the message's bytes (as answers stored before views existed are, so a
retry replays either).
"""

from __future__ import annotations

import datetime as dt
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Generic, TypeVar

from google.protobuf import json_format, message_factory
from google.protobuf.message import Message

from libs.common.protoconv import struct, timestamp

M = TypeVar("M", bound=Message)
V = TypeVar("V")


@dataclass(frozen=True)
class Page(Generic[V]):
    """A page of a list: its items, and the cursor of the next page (empty on the last)."""

    items: tuple[V, ...]
    next_cursor: str


def to_message(view: Any, message: type[M]) -> M:
    """The `message` that `view` holds, built in one constructor call."""
    values = vars(view)
    writers: tuple[tuple[str, Writer | None], ...] = _writers(
        typing.cast(Any, type(view)), typing.cast(Any, message)
    )
    return message(**{name: write(values[name]) if write else values[name] for name, write in writers})


Writer = Callable[[Any], Any]


@functools.cache
def _writers(view: Any, message: type[Message]) -> tuple[tuple[str, Writer | None], ...]:
    """How to write each field of `view` into `message`'s constructor (None: as it is), decided
    once from the field's type."""
    hints = typing.get_type_hints(view)
    return tuple((f.name, _writer(hints[f.name], message, f.name)) for f in fields(view))


def _writer(hint: Any, message: type[Message], name: str) -> Writer | None:
    kind = _without_none(hint)
    origin = typing.get_origin(kind)
    if kind is dt.datetime:
        return timestamp
    if origin is dict:
        return None if _is_map(message, name) else struct  # an empty Struct is still there, as `{}`
    if origin is tuple:
        item = typing.get_args(kind)[0]
        if isinstance(item, type) and is_dataclass(item):
            nested = _message_class(message, name)
            return lambda values: [to_message(v, nested) for v in values]
        return list
    if isinstance(kind, type) and is_dataclass(kind):
        nested = _message_class(message, name)
        return lambda value: to_message(value, nested)
    return None  # a scalar; None leaves an optional one unset


def _message_class(message: type[Message], name: str) -> type[Message]:
    descriptor = message.DESCRIPTOR.fields_by_name[name].message_type
    assert descriptor is not None  # the field of a nested view is a message field
    sub: type[Message] = message_factory.GetMessageClass(typing.cast(Any, descriptor))
    return sub


def _is_map(message: type[Message], name: str) -> bool:
    """A `map<…>` field, which takes a dict as it is (a dict of anything else is a Struct)."""
    descriptor = message.DESCRIPTOR.fields_by_name[name].message_type
    return descriptor is not None and descriptor.GetOptions().map_entry


def _without_none(hint: Any) -> Any:
    """`X` of `X | None` (and `X` itself)."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def from_message(message: Message, view: type[V]) -> V:
    """The view of type `view` that `message` holds (the inverse of `to_message`)."""
    readers: tuple[tuple[str, Reader], ...] = _readers(
        typing.cast(Any, view), typing.cast(Any, type(message))
    )
    return view(**{name: read(message, name) for name, read in readers})


Reader = Callable[[Message, str], Any]


@functools.cache
def _readers(view: Any, message: type[Message]) -> tuple[tuple[str, Reader], ...]:
    """How to read each field of `view` from its message, decided once from the field's type."""
    hints = typing.get_type_hints(view)
    return tuple((f.name, _reader(hints[f.name], message, f.name)) for f in fields(view))


def _reader(hint: Any, message: type[Message], field: str) -> Reader:
    kind = _without_none(hint)
    optional = kind is not hint
    origin = typing.get_origin(kind)
    if kind is dt.datetime:
        read: Reader = lambda m, name: getattr(m, name).ToDatetime(tzinfo=dt.UTC)  # noqa: E731
    elif origin is dict and _is_map(message, field):
        read = lambda m, name: dict(getattr(m, name))  # noqa: E731
    elif origin is dict:
        read = lambda m, name: json_format.MessageToDict(getattr(m, name))  # noqa: E731
    elif origin is tuple:
        item = typing.get_args(kind)[0]
        if isinstance(item, type) and is_dataclass(item):
            read = lambda m, name: tuple(from_message(i, item) for i in getattr(m, name))  # noqa: E731
        else:
            read = lambda m, name: tuple(getattr(m, name))  # noqa: E731
    elif isinstance(kind, type) and is_dataclass(kind):
        read = lambda m, name: from_message(getattr(m, name), kind)  # noqa: E731
    else:
        read = getattr
    if not optional:
        return read
    return lambda m, name: read(m, name) if m.HasField(name) else None


class Reply(Generic[V, M]):
    """An idempotent command's answer as it is kept: the bytes of its message.

    `message_of` hands the wire the message the last `encode` built when it is asked for that
    same answer, so a command's answer is built once for its record and its response (a create
    is the hot path); for any other answer it builds one."""

    def __init__(self, view: type[V], message: type[M]) -> None:
        self.view = view
        self.message = message
        self._last: tuple[object, M] | None = None

    def encode(self, answer: V) -> bytes:
        message = to_message(answer, self.message)
        self._last = (answer, message)
        return message.SerializeToString()

    def decode(self, data: bytes) -> V:
        return from_message(self.message.FromString(data), self.view)

    def message_of(self, answer: V) -> M:
        last = self._last
        if last is not None and last[0] is answer:
            return last[1]
        return to_message(answer, self.message)
