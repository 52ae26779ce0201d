"""The fast event decoder gives what `json_format.ParseDict` gives: the same message for every
event type with every field set, and the same error for input ParseDict rejects."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from libs.common import events, ids
from libs.common.protoconv import timestamp
from tests.common.eventsource import invoice_created

SCALARS: dict[int, Any] = {
    FieldDescriptor.TYPE_STRING: "text ü",
    FieldDescriptor.TYPE_BOOL: True,
    FieldDescriptor.TYPE_INT32: -7,
    FieldDescriptor.TYPE_UINT32: 7,
    FieldDescriptor.TYPE_SINT32: -3,
    FieldDescriptor.TYPE_INT64: 1 << 40,
    FieldDescriptor.TYPE_UINT64: 1 << 41,
    FieldDescriptor.TYPE_DOUBLE: 1.5,
    FieldDescriptor.TYPE_BYTES: b"\x00\x01",
}


def filled(message: Message, depth: int = 0) -> Message:
    """Every field of `message` set (repeated ones twice), nested messages too."""
    for field in message.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and len(oneof.fields) > 1 and oneof.fields[0] is not field:
            continue  # one member of a real oneof
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            message_type = field.message_type
            assert message_type is not None
            if message_type.GetOptions().map_entry:
                getattr(message, field.name).update({"ethereum": "xpub-a", "bitcoin": "xpub-b"})
            elif message_type.full_name == "google.protobuf.Timestamp":
                at = timestamp(dt.datetime(2026, 12, 3, 10, 11, 12, 345678, tzinfo=dt.UTC))
                target = getattr(message, field.name)
                (target.add() if field.is_repeated else target).CopyFrom(at)
            elif message_type.full_name == "google.protobuf.Struct":
                getattr(message, field.name).update({"a": 1, "b": ["x"]})
            elif depth < 3:
                target = getattr(message, field.name)
                for _ in range(2 if field.is_repeated else 1):
                    filled(target.add() if field.is_repeated else target, depth + 1)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            value = field.enum_type.values[-1].number
            target = getattr(message, field.name)
            target.extend([value, value]) if field.is_repeated else setattr(message, field.name, value)
        else:
            value = SCALARS.get(field.type, 1)
            if field.is_repeated:
                getattr(message, field.name).extend([value, value])
            else:
                setattr(message, field.name, value)
    return message


@pytest.mark.parametrize("event_type", sorted(events.EVENT_TYPES))
def test_every_event_type_with_every_field_set_decodes_as_parsedict_decodes_it(event_type: str) -> None:
    kind = events.EVENT_TYPES[event_type]
    data = events.encode(filled(kind()))
    expected = json_format.ParseDict(data, kind(), ignore_unknown_fields=True)
    assert events.decode(event_type, data) == expected
    assert events.decode(event_type, {}) == kind()


@pytest.mark.parametrize(
    "data",
    [
        {"invoice_id": 7},
        {"created_at": "yesterday"},
        {"items": [None]},
        {"items": [{"name": ["x"]}]},
        {"overpaid": "yes"},
    ],
)
def test_input_parsedict_rejects_is_rejected_with_its_error(data: dict[str, Any]) -> None:
    event_type = "invoice.paid" if "overpaid" in data else "invoice.created"
    kind = events.EVENT_TYPES[event_type]
    with pytest.raises(json_format.ParseError) as expected:
        json_format.ParseDict(data, kind(), ignore_unknown_fields=True)
    with pytest.raises(json_format.ParseError) as got:
        events.decode(event_type, data)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-03T10:11:12Z",
        "2026-12-03T10:11:12.345Z",
        "2026-12-03T10:11:12.345678Z",
        "2026-12-03T10:11:12.000000001Z",
        "1969-07-20T20:17:40.5Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "2026-12-03T10:11:12.345+01:00",
    ],
)
def test_timestamps_decode_as_parsedict_decodes_them(text: str) -> None:
    data = {"created_at": text}
    expected = json_format.ParseDict(
        data, events.EVENT_TYPES["invoice.created"](), ignore_unknown_fields=True
    )
    assert events.decode("invoice.created", data) == expected


@pytest.mark.parametrize(
    "text",
    ["2026-02-30T10:11:12Z", "0000-01-01T00:00:00Z", "2026-12-03T24:00:00Z", "2016-12-31T23:59:60Z"],
)
def test_an_impossible_timestamp_is_rejected_with_parsedicts_error(text: str) -> None:
    kind = events.EVENT_TYPES["invoice.created"]
    with pytest.raises(json_format.ParseError) as expected:
        json_format.ParseDict({"created_at": text}, kind(), ignore_unknown_fields=True)
    with pytest.raises(json_format.ParseError) as got:
        events.decode("invoice.created", {"created_at": text})
    assert str(got.value) == str(expected.value)


def test_unknown_fields_are_ignored_and_known_ones_kept() -> None:
    data = {"invoice_id": "inv-1", "a_field_from_a_later_release": {"x": 1}, "total": "9.99"}
    decoded = events.decode("invoice.created", data)
    assert decoded == json_format.ParseDict(
        data, events.EVENT_TYPES["invoice.created"](), ignore_unknown_fields=True
    )
    assert (decoded.invoice_id, decoded.total) == ("inv-1", "9.99")  # type: ignore[attr-defined]


def test_the_events_the_services_write_need_no_generic_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    merchant = ids.new_id(7)
    _, created = invoice_created(merchant, total="25.00", at=dt.datetime.now(dt.UTC), email="a@b.test")
    data = events.encode(created)
    expected = json_format.ParseDict(data, type(created)(), ignore_unknown_fields=True)

    def generic(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fast path fell back to ParseDict")

    monkeypatch.setattr(json_format, "ParseDict", generic)
    assert events.decode("invoice.created", data) == expected == created
