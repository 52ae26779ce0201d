"""The event catalogue read from the protos' `event_type` options, and the JSON it must keep:
stored events, the NATS stream and merchants' webhook bodies hold today's JSON of the seven
invoice status events (one flat object each), whatever message the code reads them with."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from checkout.invoice.v1 import events_pb2 as ev
from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common import events, ids
from libs.common.config import Config
from libs.common.db import ShardPools, migrate_shard, migrations_for
from libs.common.eventstore import EventStore, Repository
from libs.common.messaging import Envelope
from libs.common.partitions import PartitionedTable, ensure_partitions
from libs.common.protoconv import timestamp
from services.invoice.domain import Invoice
from services.invoice.inputs import Sighting
from services.merchant.webhooks.projections import payload

INVOICE_ID = uuid.UUID("0194f3a0-0000-7000-8000-000000000001")
MERCHANT_ID = "0194f3a0-0000-7000-8000-0000000000aa"
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)

# event_data of each status type as the store holds it today (written before StatusChange):
# the status it moves to, the one it left, and whether it leaves the invoice counted as paid.
STORED_STATUS_EVENTS = {
    "invoice.partially_paid": ("partial", "pending"),
    "invoice.paid": ("paid", "partial"),
    "invoice.confirmed": ("confirmed", "paid"),
    "invoice.expired": ("expired", "partial"),
    "invoice.cancelled": ("cancelled", "pending"),
    "invoice.invalid": ("invalid", "expired"),
    "invoice.reopened": ("pending", "paid"),
}


def stored(status: str, previous: str, invoice_id: uuid.UUID = INVOICE_ID) -> dict[str, Any]:
    return {
        "invoice_id": str(invoice_id),
        "merchant_id": MERCHANT_ID,
        "customer_id": "0194f3a0-0000-7000-8000-0000000000c1",
        "status": status,
        "previous_status": previous,
        "crypto_amount": "0.050000000000000000",
        "amount_paid": "0.020000000000000000",
        "crypto_currency": "ETH",
        "total": "150.00",
        "currency": "USD",
        "paid_late": True,
        "reason": "payment 0xab:-1 was reorged away",
        "at": "2026-03-01T12:00:05Z",
    }


def test_the_status_event_types_are_declared_once_and_each_names_its_status() -> None:
    assert {t: status for t, (status, _) in STORED_STATUS_EVENTS.items()} == events.STATUS_EVENTS
    assert all(events.EVENT_TYPES[t] is ev.StatusChange for t in events.STATUS_EVENTS)
    assert set(events.STATUS_EVENTS) <= set(events.WEBHOOK_EVENT_TYPES)


def test_every_event_message_is_in_the_catalogue_and_names_its_own_type() -> None:
    """A message in an events.proto without an `event_type` option could be emitted but never stored."""
    from checkout.merchant.v1 import events_pb2 as merchant_ev

    for module in (ev, merchant_ev):
        for name in module.DESCRIPTOR.message_types_by_name:
            assert getattr(module, name) in events.EVENT_TYPES.values(), f"{name} has no event_type"
    for event_type, cls in events.EVENT_TYPES.items():
        if cls is not ev.StatusChange:
            assert events.type_of(cls()) == event_type


@pytest.mark.parametrize("event_type", sorted(STORED_STATUS_EVENTS))
def test_a_stored_status_event_of_todays_json_decodes_and_encodes_back_unchanged(event_type: str) -> None:
    status, previous = STORED_STATUS_EVENTS[event_type]
    data = stored(status, previous)
    message = events.decode(event_type, data)
    assert isinstance(message, ev.StatusChange)
    assert (message.status, message.previous_status, message.total, message.paid_late) == (
        status,
        previous,
        "150.00",
        True,
    )
    # What the store and the stream get back is the same flat object, and the type follows.
    assert events.encode(message) == data
    assert events.type_of(message) == event_type


@pytest.fixture
async def pool(config: Config, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    await migrate_shard(config.shard_dsn(0), "evtest", migrations_for(tmp_path))
    pools = ShardPools(config, "evtest")
    await pools.open([0])
    async with pools[0].acquire() as conn:
        await ensure_partitions(conn, PartitionedTable("events", "month"), ahead=1, behind=2)
    yield pools[0]
    await pools.close()


async def test_status_events_stored_as_todays_json_load_from_postgresql(pool: asyncpg.Pool) -> None:
    """Rows written as the code before StatusChange wrote them (one per status type, in JSONB)
    read back as StatusChange, say their own type, and replay the invoice to its last status."""
    invoice_id = ids.new_id(0)
    rows: list[tuple[str, dict[str, Any]]] = [("invoice.created", events.encode(invoice_created(invoice_id)))]
    rows += [
        (t, stored(status, previous, invoice_id)) for t, (status, previous) in STORED_STATUS_EVENTS.items()
    ]
    now = dt.datetime.now(dt.UTC)
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO events (id, aggregate_id, aggregate_type, event_type, event_version, event_data, "
            "metadata, created_at) VALUES ($1, $2, 'Invoice', $3, $4, $5::text::jsonb, '{}', $6)",
            [
                (uuid.uuid4(), invoice_id, event_type, n, json.dumps(data), now)
                for n, (event_type, data) in enumerate(rows, start=1)
            ],
        )
        loaded = await EventStore("evtest_events").load(conn, invoice_id)
        invoice = await Repository(EventStore("evtest_events"), Invoice, snapshot_every=100).get(
            conn, invoice_id
        )
    assert [(e.event_type, e.data) for e in loaded] == rows
    for event in loaded[1:]:
        message = event.message()
        assert isinstance(message, ev.StatusChange) and events.type_of(message) == event.event_type
        assert events.encode(message) == event.data
    assert invoice is not None and (invoice.status, invoice.version) == (rows[-1][1]["status"], len(rows))


def test_an_invoice_replays_stored_status_events_of_todays_json() -> None:
    invoice = created_invoice()
    for version, event_type in enumerate(["invoice.paid", "invoice.reopened", "invoice.expired"], start=2):
        status, previous = STORED_STATUS_EVENTS[event_type]
        invoice.replay(events.decode(event_type, stored(status, previous)), version)
        assert invoice.status == status
    assert invoice.version == 4


def test_a_status_event_webhook_body_is_todays_byte_for_byte() -> None:
    """Built as the platform builds it (the aggregate emits, the store encodes, webhooks wrap it);
    the expected body is what the code before StatusChange sent for the same invoice.paid."""
    invoice = created_invoice()
    invoice.observe(
        Sighting(
            network="ethereum",
            tx_hash="0xaa",
            output_index=-1,
            asset="ETH",
            amount=Decimal("0.051"),
            from_address="0x" + "1" * 40,
            to_address="0x" + "2" * 40,
            block_number=10,
            block_hash="0xb",
            confirmations=1,
            required_confirmations=3,
        ),
        T0 + dt.timedelta(seconds=5),
    )
    paid = invoice.pending[-1]
    assert events.type_of(paid) == "invoice.paid"
    envelope = Envelope(
        id=uuid.UUID("0194f3a0-0000-7000-8000-0000000000e1"),
        type=events.type_of(paid),
        aggregate_id=INVOICE_ID,
        aggregate_type="Invoice",
        version=3,
        shard=0,
        occurred_at=T0 + dt.timedelta(seconds=5, microseconds=250_000),
        data=json.loads(json.dumps(events.encode(paid))),  # as JSONB gives it back
        metadata={},
    )
    assert payload(envelope) == (
        '{"id":"0194f3a0-0000-7000-8000-0000000000e1","type":"invoice.paid",'
        '"created_at":"2026-03-01T12:00:05.250000Z","data":{'
        '"invoice_id":"0194f3a0-0000-7000-8000-000000000001",'
        '"merchant_id":"0194f3a0-0000-7000-8000-0000000000aa","status":"paid",'
        '"previous_status":"pending","crypto_amount":"0.050000000000000000",'
        '"amount_paid":"0.051000000000000000","crypto_currency":"ETH","total":"150.00",'
        '"currency":"USD","overpaid":true,'
        '"reason":"payments cover the amount due; waiting for confirmations",'
        '"at":"2026-03-01T12:00:05Z"}}'
    )


def created_invoice() -> Invoice:
    invoice = Invoice(INVOICE_ID)
    invoice.replay(invoice_created(INVOICE_ID), 1)
    return invoice


def invoice_created(invoice_id: uuid.UUID) -> ev.InvoiceCreated:
    return ev.InvoiceCreated(
        invoice_id=str(invoice_id),
        merchant_id=MERCHANT_ID,
        title="t",
        total="150.00",
        currency="USD",
        crypto_currency="ETH",
        crypto_amount="0.050000000000000000",
        network="ethereum",
        payment_address="0x" + "2" * 40,
        exchange_rate=pb.ExchangeRate(rate="3000", source="fixed"),
        payment_tolerance=pb.PaymentTolerance(underpaid_percent="0"),
        expires_at=timestamp(T0 + dt.timedelta(minutes=15)),
        created_at=timestamp(T0),
    )
