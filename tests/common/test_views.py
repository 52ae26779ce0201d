"""libs/common/views.py: views become their messages field by field, and come back unchanged."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from checkout.invoice.v1 import invoice_pb2 as invoice_pb
from checkout.merchant.v1 import merchant_pb2 as merchant_pb

from libs.common.views import Reply, from_message, to_message

AT = dt.datetime(2026, 12, 3, 10, 30, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Merchant:
    id: str
    settings: dict[str, Any]
    wallets: dict[str, str]
    shard: int
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclass(frozen=True)
class Item:
    name: str
    quantity: str
    unit_price: str


@dataclass(frozen=True)
class Payment:
    tx_hash: str
    block_number: int | None
    detected_at: dt.datetime | None


def test_a_view_becomes_the_message_written_by_hand() -> None:
    view = Merchant("m1", {"rate_spread_percent": "1.5"}, {"ethereum": "xpub"}, 3, AT, None)
    by_hand = merchant_pb.Merchant(id="m1", wallets={"ethereum": "xpub"}, shard=3)
    by_hand.settings.update({"rate_spread_percent": "1.5"})
    by_hand.created_at.FromDatetime(AT)
    assert to_message(view, merchant_pb.Merchant) == by_hand
    assert not by_hand.HasField("updated_at")


def test_an_empty_struct_is_sent_but_an_empty_map_is_nothing() -> None:
    message = to_message(Merchant("m1", {}, {}, 0, None, None), merchant_pb.Merchant)
    assert message.HasField("settings")
    assert dict(message.wallets) == {}


def test_none_leaves_an_optional_scalar_unset_and_zero_sets_it() -> None:
    unmined = to_message(Payment("0xaa", None, AT), invoice_pb.Payment)
    genesis = to_message(Payment("0xaa", 0, AT), invoice_pb.Payment)
    assert (unmined.HasField("block_number"), genesis.HasField("block_number")) == (False, True)
    assert from_message(unmined, Payment).block_number is None
    assert from_message(genesis, Payment).block_number == 0


def test_a_reply_comes_back_as_the_view_it_was() -> None:
    reply = Reply(Merchant, merchant_pb.Merchant)
    view = Merchant("m1", {"tags": ["a", "b"], "nested": {"k": "v"}}, {"bitcoin": "zpub"}, 1, AT, AT)
    assert reply.decode(reply.encode(view)) == view


def test_repeated_nested_views_are_repeated_messages() -> None:
    @dataclass(frozen=True)
    class Invoice:
        id: str
        items: tuple[Item, ...]

    message = to_message(Invoice("i1", (Item("a", "1", "2.00"), Item("b", "3", "4.00"))), invoice_pb.Invoice)
    assert [(i.name, i.quantity, i.unit_price) for i in message.items] == [
        ("a", "1", "2.00"),
        ("b", "3", "4.00"),
    ]


def test_the_wire_gets_the_message_the_record_was_encoded_from_or_an_equal_one() -> None:
    reply = Reply(Merchant, merchant_pb.Merchant)
    answer = Merchant("m1", {}, {"ethereum": "xpub"}, 1, AT, AT)
    record = reply.encode(answer)
    assert reply.message_of(answer).SerializeToString() == record
    other = Merchant("m2", {}, {}, 2, AT, None)
    assert reply.message_of(other) == to_message(other, merchant_pb.Merchant)
