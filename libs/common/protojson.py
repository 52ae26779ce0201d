"""Reading an event's JSON into its protobuf message, fast for the shapes events have.

`json_format.ParseDict` is generic Python: about 150 µs for an `invoice.created` on the shared
2-core machine, and every projection decodes every event it gets (the customer service's two
consumers spent a third of their time there under the lag load). Events are mostly strings,
bools, small ints, timestamps and nested or repeated messages of the same; those are set
directly here. Any other field (int64s as strings, enums, maps, oneofs, wrappers, ...), an
unexpected value or a key that is not a field name sends the whole message through ParseDict,
so the result, and every error, is ParseDict's own.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_STRING, _BOOL, _INT, _TIMESTAMP, _MESSAGE, _MESSAGES, _STRINGS = range(7)
_INT32 = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
    }
)
_kinds: dict[str, dict[str, int]] = {}
# The form json_format writes a Timestamp in (UTC, 0 to 9 fractional digits). Its own reader,
# `Timestamp.FromJsonString`, goes through `strptime`: 40 us an event on the shared machine, in
# every consumer of every event; anything else (an offset, a leap second) is still left to it.
_UTC_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")
_EPOCH = dt.datetime(1970, 1, 1)
_SECOND = dt.timedelta(seconds=1)


class _Generic(Exception):
    """This message needs ParseDict."""


def parse(data: dict[str, Any], message: Message) -> Message:
    """`json_format.ParseDict(data, message, ignore_unknown_fields=True)`, faster."""
    try:
        _fill(message, data)
    except (_Generic, TypeError, ValueError, AttributeError):
        message.Clear()
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    return message


def _fill(message: Message, data: Any) -> None:
    if not isinstance(data, dict):
        raise _Generic
    kinds = _kinds_of(message.DESCRIPTOR)
    for name, value in data.items():
        kind = kinds.get(name)
        if kind is None or value is None:
            raise _Generic
        if kind == _STRING:
            if not isinstance(value, str):
                raise _Generic
            setattr(message, name, value)
        elif kind == _BOOL:
            if not isinstance(value, bool):
                raise _Generic
            setattr(message, name, value)
        elif kind == _INT:
            if type(value) is not int:
                raise _Generic
            setattr(message, name, value)
        elif kind == _TIMESTAMP:
            if not isinstance(value, str):
                raise _Generic
            _timestamp(getattr(message, name), value)
        elif kind == _MESSAGE:
            child = getattr(message, name)
            child.SetInParent()
            _fill(child, value)
        elif not isinstance(value, list):
            raise _Generic
        elif kind == _MESSAGES:
            items = getattr(message, name)
            for item in value:
                _fill(items.add(), item)
        else:  # _STRINGS
            if not all(isinstance(item, str) for item in value):
                raise _Generic
            getattr(message, name).extend(value)


def _timestamp(message: Any, value: str) -> None:
    match = _UTC_TIMESTAMP.fullmatch(value)
    if match is None:
        message.FromJsonString(value)
        return
    year, month, day, hour, minute, second, fraction = match.groups()
    # An impossible date is a ValueError here, and ParseDict then gives its own error for it.
    at = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    message.seconds = (at - _EPOCH) // _SECOND
    message.nanos = int(fraction.ljust(9, "0")) if fraction else 0


def _kinds_of(descriptor: Any) -> dict[str, int]:  # a pure-Python or a upb Descriptor
    """The fields of a message type set directly, by name, with how (the rest: not listed)."""
    found = _kinds.get(descriptor.full_name)
    if found is None:
        kinds = {field.name: _kind(field) for field in descriptor.fields}
        found = _kinds[descriptor.full_name] = {n: k for n, k in kinds.items() if k is not None}
    return found


def _kind(field: FieldDescriptor) -> int | None:
    oneof = field.containing_oneof
    if oneof is not None and len(oneof.fields) > 1:
        return None  # ParseDict rejects two members of a oneof; leave that to it
    repeated = field.is_repeated
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        message_type = field.message_type
        if message_type is None or message_type.GetOptions().map_entry:
            return None
        if message_type.full_name == "google.protobuf.Timestamp":
            return None if repeated else _TIMESTAMP
        if message_type.full_name.startswith("google.protobuf."):
            return None  # the other well-known types have JSON forms of their own
        return _MESSAGES if repeated else _MESSAGE
    if field.type == FieldDescriptor.TYPE_STRING:
        return _STRINGS if repeated else _STRING
    if repeated:
        return None
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _BOOL
    if field.type in _INT32:
        return _INT
    return None
